"""The steps of a scan that run per batch, shared by the local scan and the Ray actors.

``decode_file`` reads, hashes and preprocesses one file (a decode failure becomes a value, never an
exception); ``compute_columns`` runs one batch through the model (probabilities, embeddings,
channel means, the pixel statistics of dataset issues, optionally Grad-CAM) into fixed-width
columns; ``commit`` turns the columns into stored rows and vectors with the RunStore's commit
protocol. ``scanning.scan`` drives them with a DataLoader, ``scanning.ray_scan`` with Ray actors, so
both produce the same rows.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from mikata.runs.store import RunStore, Row
from mikata.data.datasets import Sample
from mikata.data.files import UnreadableFileError, file_digest
from mikata.data.image_stats import image_stats, thumbnails
from mikata.data.images import load_image
from mikata.data.preprocessing import Preprocessing
from mikata.devices import split_on_oom
from mikata.errors import ImageDecodeError, MikataError
from mikata.hooks import capture
from mikata.models.handle import ModelHandle

TOP_K = 5


# ------------------------------------------------------------------------------------ the model side


class _Outputs:
    """Everything one batch yields, on the CPU: probabilities, embeddings, channel means, optional maps."""

    def __init__(self, probs, embed, channels, cams):
        self.probs, self.embed, self.channels, self.cams = probs, embed, channels, cams

    @staticmethod
    def cat(parts: Sequence["_Outputs"]) -> "_Outputs":
        """One batch's outputs from its halves (a batch split after running out of device memory)."""
        cams = None if parts[0].cams is None else torch.cat([p.cams for p in parts])
        return _Outputs(*(torch.cat([getattr(p, k) for p in parts]) for k in ("probs", "embed", "channels")), cams)


def run_batch(handle: ModelHandle, x: torch.Tensor, layer: str, embed_layer: str | None,
              gradcam: bool) -> _Outputs:
    """One forward (and with ``gradcam`` one backward down to ``layer``) for a batch ``(N, C, H, W)``.

    The Grad-CAM is ``explain``'s own: ``attribution.passes.gradient_pass`` (a forward that records
    the graph only from ``layer`` on, one backward down to it, no weight gradients) and
    ``attribution.cam.gradcam``, for each image's predicted class.

    Runs on ``handle.device`` (``x`` is moved there if it is not already); the plain forward at
    ``handle.precision`` (bf16 autocast on a capable GPU under "auto"), the Grad-CAM pass in fp32.
    The outputs come back to the CPU, as fp32.
    """
    x = x.to(handle.device, non_blocking=True)
    if not gradcam:
        layers = [layer] + ([embed_layer] if embed_layer else [])
        with torch.inference_mode(), handle.autocast(), capture(handle.net, layers, inputs=True,
                                                                        layouts=handle.layouts_for([layer])) as rec:
            logits = handle.model(x)  # (N, K)
        act = rec.activations[layer].detach()
        cams = None
    else:
        from mikata.attribution.cam import gradcam as gradcam_map
        from mikata.attribution.passes import gradient_pass

        def top1(logits: torch.Tensor) -> tuple[list[str], torch.Tensor]:
            return ["top1"], logits.argmax(1, keepdim=True)  # (N, 1)

        with capture(handle.net, [embed_layer] if embed_layer else [], inputs=True) as rec:
            p = gradient_pass(handle, x, top1, layer, {"plain": ("layer",)})
        act = p.activation  # (N, C, h, w)
        if act is None or act.dim() != 4:
            shape = "no single tensor" if act is None else f"shape {tuple(act.shape)}"
            raise MikataError(f"--gradcam needs a spatial layer that outputs one tensor; {layer!r} gives {shape}. "
                              "Pick a conv layer with --layer (see `mikata layers MODEL`)")
        cams = gradcam_map(act, p.layer_grads["plain"][0]).detach().float().cpu()  # (N, h, w)
        logits = p.logits
    act = act.float()
    channels = act.mean(dim=tuple(range(2, act.dim()))) if act.dim() > 2 else act  # (N, C)
    embed = rec.inputs[embed_layer].detach() if embed_layer else channels
    embed = embed.mean(dim=(2, 3)) if embed.dim() == 4 else embed.flatten(1)  # (N, D): a conv head's input pooled
    embed = embed.float()
    probs = torch.softmax(logits.float(), dim=1)  # (N, K)
    return _Outputs(probs.cpu(), embed.cpu(), channels.cpu(), cams)


# ------------------------------------------------------------------- one scan step: compute, commit
VECTOR_COLUMNS = ("probs", "embed", "channels", "stats", "thumbs")  # the columns that go to the vector files


def compute_columns(handle: ModelHandle, x: torch.Tensor | None, items: Sequence[tuple], layer: str,
                    embed_layer: str | None, gradcam: bool, with_stats: bool = False) -> dict[str, np.ndarray]:
    """One batch's results as fixed-width numpy columns, one row per item (skipped items: zeros).

    ``x`` is the stacked ``(n_ok, C, H, W)`` batch of the decoded items, ``items`` the
    ``(index, decoded, sha1, size, mtime_ns, reason, (width, height))`` of every item; ``with_stats``
    adds the pixel statistics and thumbnails of dataset issues (``data.image_stats``). The local scan and each Ray
    actor call this; ``commit`` stores what it returns, so both write the same rows and vectors.
    Vectors are already float16 where the run stores float16 (half the bytes to ship).
    """
    n = len(items)
    ok = np.array([bool(it[1]) for it in items], bool)
    cols: dict[str, np.ndarray] = {
        "index": np.array([it[0] for it in items], np.int64), "ok": ok,
        "hash": np.array([it[2] or "" for it in items], dtype=object),
        "size": np.array([it[3] for it in items], np.int64), "mtime": np.array([it[4] for it in items], np.int64),
        "reason": np.array([it[5] or "" for it in items], dtype=object)}
    if x is None:
        return cols
    device = handle.device
    # a batch that does not fit in device memory runs as halves (recursively) instead of failing
    out = split_on_oom(lambda xb: run_batch(handle, xb, layer, embed_layer, gradcam),
                       x.to(device, non_blocking=True), _Outputs.cat, device, desc="scan batch")
    probs = out.probs.float()  # (n_ok, K)
    top = torch.topk(probs, min(TOP_K, probs.shape[1]), dim=1)

    def full(a: np.ndarray) -> np.ndarray:  # (n_ok, ...) -> (n, ...), zeros where skipped
        z = np.zeros((n,) + a.shape[1:], a.dtype)
        z[ok] = a
        return z

    def f16(t: torch.Tensor) -> np.ndarray:
        return np.clip(t.detach().float().cpu().numpy(), -65504, 65504).astype(np.float16)

    cols.update(probs=full(probs.cpu().numpy()), top_i=full(top.indices.cpu().numpy()),
                top_v=full(top.values.cpu().numpy()), embed=full(f16(out.embed)), channels=full(f16(out.channels)))
    if with_stats:  # pixel statistics of the batch already decoded (dataset issues)
        sizes = [it[6] for it in items if it[1]]
        x01 = handle.preprocessing.denormalize(x)
        cols.update(stats=full(f16(image_stats(x01, sizes))), thumbs=full(f16(thumbnails(x01))))
    if out.cams is not None:
        cols["cam"] = full(np.clip(out.cams.float().cpu().numpy(), 0, 65000).astype(np.float16))  # (n, h, w)
    return cols


def commit(store: RunStore, cols: Mapping[str, np.ndarray], todo: Sequence[tuple[Sample, str]],
           replace: bool) -> tuple[int, list[tuple[str, str]]]:
    """Store one batch of ``compute_columns`` through ``RunStore.append`` (one transaction).

    ``todo[index]`` is the (sample, split) each column row belongs to. Returns the number of images
    stored as ok and the (path, reason) of the skipped ones.
    """
    rows: list[Row] = []
    skipped: list[tuple[str, str]] = []
    ok = np.asarray(cols["ok"], bool)
    have = "probs" in cols and ok.any()
    if have:
        top_i, top_v, probs = cols["top_i"].tolist(), cols["top_v"].tolist(), cols["probs"]
    cam = cols.get("cam")
    for r, i in enumerate(np.asarray(cols["index"]).tolist()):
        sample, split_name = todo[i]
        digest = cols["hash"][r] or None
        size, mtime = int(cols["size"][r]), int(cols["mtime"][r])
        if not ok[r]:
            reason = str(cols["reason"][r])
            rows.append(Row(sample.path, digest, size, mtime, sample.label, split_name, "skipped", reason))
            skipped.append((sample.path, reason))
            continue
        rows.append(Row(sample.path, digest, size, mtime, sample.label, split_name, "ok", None,
                        top_i[r][0], top_v[r][0], float(probs[r, sample.label]),
                        [[c, round(v, 6)] for c, v in zip(top_i[r], top_v[r])],
                        cam[r] if cam is not None else None))
    vectors = {k: cols[k][ok] for k in VECTOR_COLUMNS if k in cols} if have else None
    store.append(rows, vectors, replace)
    return int(ok.sum()), skipped


# ------------------------------------------------------------------------------------- the data side
class _Files(torch.utils.data.Dataset):
    """Reads, hashes and preprocesses one file; a decode failure becomes a value, not an exception."""

    def __init__(self, handle: ModelHandle, samples: Sequence[Sample]):
        # only the pixels travel to the loader's worker processes, not the network
        self.preprocessing, self.samples = handle.preprocessing, list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return (i, *decode_file(self.preprocessing, self.samples[i].path))


def decode_file(preprocessing: Preprocessing, path: str
                ) -> tuple[torch.Tensor | None, str | None, int, int, str | None, tuple[int, int] | None]:
    """``(x (C, H, W) or None, sha1, size, mtime_ns, reason, decoded (width, height))`` of one file:
    mikata's decoder, and a failure as a value (the reason it is skipped), never an exception that
    stops a scan. The local scan's loader workers and the Ray scan's decode tasks both call it."""
    try:  # regular files only, under a size limit, hashed in chunks (a FIFO or /dev/zero is a skip)
        digest, size, mtime = file_digest(path)
    except UnreadableFileError as e:
        return None, None, 0, 0, e.reason, None
    try:
        img = load_image(path, preprocessing.mode)
        x = preprocessing.preprocess([img])[0]  # (C, H, W)
    except ImageDecodeError as e:
        return None, digest, size, mtime, e.reason, None
    except Exception as e:  # noqa: BLE001 - a file must never stop a scan; record why
        return None, digest, size, mtime, f"cannot preprocess: {type(e).__name__}: {e}", None
    return x, digest, size, mtime, None, img.size  # the decoded (width, height), for image_stats


def _collate(items):
    """One stacked ``(n_ok, C, H, W)`` tensor plus per-item metadata without tensors.

    Keeping the per-item tensors out of the metadata matters: each tensor a worker returns is
    passed through its own shared-memory file descriptor.
    """
    xs = [it[1] for it in items if it[1] is not None]
    return (torch.stack(xs) if xs else None), [(i, x is not None, *rest) for i, x, *rest in items]
