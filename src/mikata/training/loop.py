"""``train``: fine-tune a pretrained classifier on a folder of labeled images (transfer learning).

The classifier head is replaced by one for the folder's classes, the layers before
``freeze_until`` keep their pretrained weights, the new head learns ``head_lr_factor`` times
faster than the rest. Each epoch shuffles with a seeded ``torch.Generator``, reports validation
loss and accuracy, and writes a checkpoint plus a ``.state.pt`` sidecar (optimizer, epoch,
history, generator state) so Ctrl-C or a crash loses at most one epoch: ``resume=True``
continues. At the end the best-validation weights are saved as a mikata ``.safetensors``
checkpoint that every command accepts as a model.

Example:
    >>> result = train("fashion/", "efficientnet-lite0", "fashion.safetensors",
    ...                epochs=4, input_size=64, freeze_until="blocks.9")            # doctest: +SKIP
    >>> result.test_accuracy                                                         # doctest: +SKIP
    0.87
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn
from torch.nn import functional as F

from mikata.errors import Interrupted, signals_deferred
from mikata.data.datasets import DatasetError, ImageDataset, load_dataset, split_dataset
from mikata.models.handle import ModelHandle
from mikata.models.loading import load_model, replace_head, save_checkpoint
from mikata.training.augment import augment_batch
from mikata.training.depthwise import faster_depthwise_grads
from mikata.progress import Progress, one_line
from mikata.training.frozen_features import boundary_inputs, check_shortcut, started_at
from mikata.training.freeze import freeze_until, set_training_mode, trainable_parameters
from mikata.training.options import TrainingError, TrainOptions, parse_augment
from mikata.training.plot import plot_history
from mikata.training.tensors import DecodedSplit, all_gray, decode_split

if TYPE_CHECKING:
    from mikata.training.corrections import Corrections

log = logging.getLogger(__name__)
STATE_FORMAT = "mikata-train-state/1"
GRAY_CHECK_IMAGES = 512  # the training images whose grayness decides how feature visualizations render
HISTORY_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds")


@dataclass
class TrainResult:
    checkpoint: Path
    plot: Path
    history: dict[str, list[float]]
    classes: list[str]
    best_epoch: int  # 1-based epoch whose weights were kept
    val_accuracy: float
    test_accuracy: float | None
    epochs_run: int
    stopped_early: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    corrections: dict | None = None  # training.corrections.apply_corrections's summary, when labels were corrected

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["checkpoint"], d["plot"] = str(self.checkpoint), str(self.plot)
        d["skipped"] = [list(s) for s in self.skipped]
        return d

    def figure(self):
        """The training curves (loss and accuracy per epoch, the kept epoch marked), shown as a PNG in Jupyter."""
        from mikata.training.plot import history_figure

        return history_figure(self.history, f"{self.checkpoint.name}: training progress", self.best_epoch)

    def _repr_html_(self) -> str:
        """The numbers in a table, and the training curve under it."""
        from mikata.notebook import STYLE, esc, figure_png, img_tag, table_html

        rows = [["checkpoint", str(self.checkpoint)], ["classes", ", ".join(self.classes[:20])
                                                        + (" ..." if len(self.classes) > 20 else "")],
                ["epochs run", f"{self.epochs_run}{' (stopped early)' if self.stopped_early else ''}"],
                ["kept epoch", self.best_epoch], ["validation accuracy", self.val_accuracy]]
        if self.test_accuracy is not None:
            rows.append(["test accuracy", self.test_accuracy])
        if self.corrections:
            from mikata.training.corrections import describe

            rows.append(["label corrections", describe(self.corrections)])
        rows += [["skipped files", len(self.skipped)], ["seconds", round(self.seconds, 1)]]
        return (f"<div>{STYLE}<div><b>TrainResult</b> {esc(self.checkpoint.name)}</div>{table_html(['', ''], rows)}"
                f"{img_tag(figure_png(self.figure()), alt='training curves')}</div>")


def state_path(out: str | os.PathLike) -> Path:
    """The resume sidecar next to a checkpoint: ``model.safetensors.state.pt``."""
    return Path(str(out) + ".state.pt")


def plot_path(out: str | os.PathLike) -> Path:
    """The training-progress figure next to a checkpoint: ``model.training.png``."""
    return Path(out).with_suffix(".training.png")


@one_line  # in a notebook, every step of the call on one line
def train(
    data: "str | os.PathLike | ImageDataset",
    model: str | ModelHandle,
    out: str | os.PathLike,
    *,
    options: TrainOptions | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    device: str | torch.device | None = "cpu",
    corrections: "Corrections | None" = None,
    **overrides,
) -> TrainResult:
    """Fine-tune ``model`` (a spec or a handle, which is copied, never changed) on ``data``.

    ``overrides`` are ``TrainOptions`` fields (``epochs=5, augment="flip,translate=4"``).
    ``device``: where the training runs ("auto", "cpu", "cuda:N", "mps"); decoded images stay in
    CPU memory and each batch is augmented there (the same seeded draws on every device), then moved.
    ``on_epoch_end(epoch, history)`` runs after each epoch's checkpoint is written.
    ``corrections`` (``training.corrections``: a run's label review or a CSV) relabels or leaves out
    images after the split is made from the folder's labels; the checkpoint records what changed.

    Example:
        >>> result = mikata.train("photos", "efficientnet-lite0", "pets.safetensors", epochs=1, batch_size=4,
        ...                       input_size=64, workers=0, progress=False)
        >>> result.classes, result.epochs_run, result.checkpoint.name
        (['daisy', 'espresso', 'palace', 'tiger cat'], 1, 'pets.safetensors')
        >>> mikata.load_model("pets.safetensors").num_classes
        4
    """
    if isinstance(overrides.get("augment"), str) or overrides.get("augment") is None and "augment" in overrides:
        overrides["augment"] = parse_augment(overrides["augment"])
    if "split" in overrides:
        overrides["split"] = tuple(overrides["split"])
    try:
        opts = dataclasses.replace(options or TrainOptions(), **overrides)
    except TypeError as e:
        raise TrainingError(f"unknown training option: {e}") from None
    opts.check()
    from mikata.devices import resolve_device

    target = resolve_device(device)
    threads_before = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _train(data, model, Path(out), opts, resume, progress, on_epoch_end, target, corrections)
    finally:
        torch.set_num_threads(threads_before)


def _train(data: "str | os.PathLike | ImageDataset", model: str | ModelHandle, out: Path, opts: TrainOptions, resume: bool,
           progress: bool, on_epoch_end: Callable[[int, dict], None] | None,
           device: torch.device = torch.device("cpu"), corrections: "Corrections | None" = None) -> TrainResult:
    start_time = time.perf_counter()
    if out.suffix != ".safetensors":
        raise TrainingError(f"--out {out}: the checkpoint must be a .safetensors file")
    if resume:
        check_resume_options(out, opts)  # before any data or model is read

    # an ImageDataset (e.g. the training folds of a cross-validation) is a subset, never "the folder"
    ds = data if isinstance(data, ImageDataset) else load_dataset(data)
    if len(ds.classes) < 2:
        raise DatasetError(f"{ds.root} has only the class {ds.classes}; a classifier needs at least two class "
                           "subfolders, each holding that class's images")
    parts = split_dataset(ds, opts.split, seed=opts.seed)
    from mikata.data.splits import record_split

    source = None if isinstance(data, ImageDataset) else data
    split_record = record_split(source, ds, parts, opts.split, opts.seed, max(1, opts.workers)).to_dict()
    corrected = None
    if corrections is not None:  # after the split: the record describes the folder as mikata scan reads it
        from mikata.training.corrections import apply_corrections, describe

        parts, corrected = apply_corrections(ds, parts, corrections)
        log.info("%s", describe(corrected))
    if resume:
        _check_resume_corrections(out, corrected)
    handle = _new_handle(model, ds.classes, opts, out).to(device)
    net = handle.net

    frozen = freeze_until(net, opts.freeze_until)
    head_params = list(net.get_submodule(handle.metadata["head"]).parameters())
    head_ids = {id(p) for p in head_params}
    body_params = [p for p in net.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head_params, "lr": opts.lr * opts.head_lr_factor, "base_lr": opts.lr * opts.head_lr_factor}]
    if body_params:
        groups.append({"params": body_params, "lr": opts.lr, "base_lr": opts.lr})
    if opts.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
    else:
        optimizer = torch.optim.Adam(groups, lr=opts.lr, weight_decay=opts.weight_decay)

    generator = torch.Generator().manual_seed(opts.seed)
    history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
    start_epoch, best = 0, {"epoch": 0, "accuracy": -1.0, "loss": math.inf, "state": None, "bad_epochs": 0}
    if resume:
        start_epoch, history, best = _restore(out, handle, optimizer, generator)
        log.info("resuming %s after epoch %d of %d", out, start_epoch, opts.epochs)
    memory_format = torch.channels_last if opts.channels_last else torch.contiguous_format

    # The first training images decide whether the frozen layers' output can be cached and time one batch;
    # then each split is decoded, and when caching, each run of decoded images goes through the frozen layers
    # while the worker threads decode the next ones (only the features are kept).
    with warnings.catch_warnings():  # an unreadable file is reported once, by the full decode below
        warnings.simplefilter("ignore")
        probe = decode_split(parts["train"].subset(parts["train"].samples[:max(4, opts.batch_size)]), handle,
                             opts.workers, "train", progress=False)
    cache = len(probe) > 0 and _can_cache(handle, opts, probe)
    sizes = [len(parts["train"]), len(parts["val"]), len(parts["test"]) if "test" in parts else 0]
    if progress and start_epoch < opts.epochs and len(probe):
        _announce_cost(handle, opts, probe, sizes, cache, opts.epochs - start_epoch)
    if cache:
        log.info("computing the frozen layers' output once (input of %s)", opts.freeze_until)
    first_images: list[torch.Tensor] = []  # the first training images, for the gray check

    def decoded(split: str) -> DecodedSplit:
        def features(xb: torch.Tensor) -> torch.Tensor:  # (n, C, H, W) images -> (n, ...) frozen layers' output
            if split == "train" and sum(map(len, first_images)) < GRAY_CHECK_IMAGES:
                first_images.append(xb[:GRAY_CHECK_IMAGES - sum(map(len, first_images))])
            f = boundary_inputs(handle, opts.freeze_until, xb, len(xb))
            return f.contiguous(memory_format=memory_format) if f.dim() == 4 else f

        if not cache:
            return decode_split(parts[split], handle, opts.workers, split, progress)
        s = decode_split(parts[split], handle, opts.workers, split, progress, then=features,
                         chunk=opts.batch_size * 2, desc=f"train: decode, cache the frozen layers' output ({split})")
        x = s.x.contiguous(memory_format=memory_format) if s.x.dim() == 4 else s.x
        return DecodedSplit(x, s.y, s.skipped)

    train_set, val_set = decoded("train"), decoded("val")
    test_set = decoded("test") if "test" in parts else None
    # ``is not None``: a split whose every file was skipped has len 0, and its skipped files still count
    skipped = train_set.skipped + val_set.skipped + (test_set.skipped if test_set is not None else [])
    _check_decoded(train_set, val_set, ds.classes)
    # a 3-channel model fed only gray images: its feature visualizations are rendered gray
    gray_source = train_set.x if not cache else torch.cat(first_images) if first_images else probe.x
    handle.metadata["grayscale_data"] = all_gray(gray_source, handle, GRAY_CHECK_IMAGES)
    log.info("training %s parameters of %s; %d train / %d val / %d test images, %d classes",
             f"{trainable_parameters(net):,}", handle.metadata["architecture"], len(train_set), len(val_set),
             len(test_set) if test_set else 0, len(ds.classes))

    # The hook feeding precomputed features lives only inside this block (removed on any error).
    with contextlib.ExitStack() as stack:
        forward: Callable[[torch.Tensor], torch.Tensor] = handle.model
        if cache:
            # The frozen part is the same every epoch: it ran once per image above; train the rest only.
            feed = stack.enter_context(started_at(net, opts.freeze_until))
            forward = lambda x: feed(handle.model, x)  # noqa: E731
        net.to(memory_format=memory_format)
        # 5x5 depthwise weight gradients on small maps: a tap sum instead of oneDNN's slow path (CPU only)
        stack.enter_context(faster_depthwise_grads(net))

        epoch, epoch_generator_state, stopped_early = start_epoch, generator.get_state(), False
        plotted: tuple[int, int] | None = None  # (epochs, kept epoch) of the figure this call last wrote
        # finished: epochs whose results are complete in memory; saved: those on disk (None: nothing yet).
        # An interruption keeps the state of the last finished epoch, never a half-trained one.
        finished, saved = start_epoch, start_epoch if resume else None
        epochs_bar = Progress(opts.epochs - start_epoch, f"train: {len(train_set):,} images", "epoch", progress,
                              plan=f"{opts.epochs - start_epoch} epoch(s) of {len(train_set):,} images",
                              first="first epoch")
        try:
            if saved is None:  # the untrained start, so an interruption during the first epoch also resumes
                _save_progress(handle, out, optimizer, 0, history, best, epoch_generator_state, opts, split_record,
                               corrected)
                saved = 0
            for epoch in range(start_epoch, opts.epochs):
                epoch_generator_state = generator.get_state()
                _set_learning_rates(optimizer, opts, epoch)
                t0 = time.perf_counter()
                train_loss, train_acc = _train_epoch(net, forward, frozen, optimizer, train_set, opts, generator,
                                                     memory_format, f"train: epoch {epoch + 1}/{opts.epochs}", progress)
                val_loss, val_acc = evaluate_split(handle, val_set, opts.batch_size * 2, memory_format, forward)
                took = time.perf_counter() - t0
                for key, value in zip(HISTORY_KEYS, (train_loss, train_acc, val_loss, val_acc, took)):
                    history[key].append(float(value))
                if val_acc > best["accuracy"] or (val_acc == best["accuracy"] and val_loss < best["loss"]):
                    best.update(epoch=epoch + 1, accuracy=val_acc, loss=val_loss, bad_epochs=0,
                                state={k: v.detach().clone() for k, v in net.state_dict().items()})
                else:
                    best["bad_epochs"] += 1
                epoch_generator_state = generator.get_state()
                finished = epoch + 1
                log.info("epoch %d/%d: train loss %.4f acc %.3f | val loss %.4f acc %.3f (%.1f s)", epoch + 1,
                         opts.epochs, train_loss, train_acc, val_loss, val_acc, history["epoch_seconds"][-1])
                _save_progress(handle, out, optimizer, epoch + 1, history, best, epoch_generator_state, opts,
                               split_record, corrected)
                saved = epoch + 1
                plot_history(history, plot_path(out), title=f"{out.stem}: training progress",
                             best_epoch=best["epoch"])
                plotted = (epoch + 1, best["epoch"])
                epochs_bar.set_postfix(f"val acc {val_acc:.3f}")  # before update: the line it prints is this epoch's
                epochs_bar.update(1)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, history)
                if opts.early_stop and best["bad_epochs"] >= opts.early_stop:
                    log.info("early stop: validation accuracy has not improved for %d epochs", opts.early_stop)
                    stopped_early = True
                    break
        except KeyboardInterrupt as e:
            if saved != finished:  # stopped while the finished epoch was being written: write it again
                _save_progress(handle, out, optimizer, finished, history, best, epoch_generator_state, opts,
                               split_record, corrected)
            net.to(memory_format=torch.contiguous_format)
            signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            raise Interrupted(signum, f"{finished} of {opts.epochs} epoch(s) done and saved in {out} (+ "
                                      f"{state_path(out).name}); continue with the same command and --resume") from None
        finally:
            epochs_bar.close()

        if best["state"] is not None:
            net.load_state_dict(best["state"])
        net.eval()
        test_acc = None
        if test_set is not None and len(test_set):
            test_acc = evaluate_split(handle, test_set, opts.batch_size * 2, memory_format, forward)[1]
    net.to(memory_format=torch.contiguous_format)
    seconds = time.perf_counter() - start_time
    plot = plot_path(out)
    if plotted != (len(history["val_accuracy"]), int(best["epoch"])):  # else the last epoch's figure is this one
        plot_history(history, plot, title=f"{out.stem}: training progress", best_epoch=int(best["epoch"]))
    result = TrainResult(out, plot, history, list(ds.classes), int(best["epoch"]), float(best["accuracy"]),
                         None if test_acc is None else float(test_acc), len(history["val_accuracy"]), stopped_early,
                         skipped, seconds, corrected)
    handle.metadata["training"] = {
        "options": opts.to_dict(), "history": history, "data": str(ds.root), "counts": ds.counts(),
        "split_sizes": {k: len(v) for k, v in parts.items()}, "skipped_files": len(skipped),
        "best_epoch": result.best_epoch, "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
        "seconds": round(seconds, 2), "plot": plot.name, "complete": True, "split_record": split_record,
        "corrections": corrected,
    }
    save_checkpoint(handle, out)
    state_path(out).unlink(missing_ok=True)
    return result


# ----------------------------------------------------------------------------------------- pieces
def _new_handle(model: str | ModelHandle, classes: list[str], opts: TrainOptions, out: Path) -> ModelHandle:
    """The base model with a fresh, seeded head for ``classes``; ``model`` itself is left untouched."""
    if isinstance(model, ModelHandle):
        base = dataclasses.replace(model, net=copy.deepcopy(model.net), metadata=copy.deepcopy(model.metadata))
    else:
        base = load_model(model, input_size=opts.input_size)
    size = (opts.input_size, opts.input_size) if opts.input_size else base.input_size
    if not base.metadata.get("architecture"):
        raise TrainingError(f"{base.spec}: mikata cannot rebuild this model's architecture, so it cannot save "
                            "a checkpoint of it; train a built-in, torchvision:, timm: or package.module:factory model")
    net = base.net
    with torch.random.fork_rng(devices=[]):  # nn.Linear initializes from the global RNG: seed it locally
        torch.manual_seed(opts.seed)
        head = replace_head(net, len(classes), base.head_layer)
    metadata = {k: v for k, v in base.metadata.items() if k != "training"}
    metadata["head"] = head
    pre = dataclasses.replace(base.preprocessing, input_size=tuple(size), crop_fraction=float(opts.crop),
                              resize=opts.resize)
    log.info("preprocessing: %s", pre.describe())
    return ModelHandle(net=net, class_names=list(classes), default_layer=base.default_layer, spec=str(out),
                       metadata=metadata, preprocessing=pre)


def cached_split(handle: ModelHandle, opts: TrainOptions, s: DecodedSplit, memory_format: torch.memory_format,
                 progress: bool = False, name: str = "train") -> DecodedSplit:
    """``s`` with each image replaced by the frozen layers' output (the input of ``opts.freeze_until``).

    The features ``(N, C', h, w)`` are stored once in the training memory format: a batch gathered
    from them keeps that format, so no training step converts its batch again.
    """
    x = boundary_inputs(handle, opts.freeze_until, s.x, opts.batch_size * 2, progress=progress,
                        desc=f"train: cache the frozen layers' output ({name})")
    x = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
    return DecodedSplit(x, s.y, s.skipped)


def _set_learning_rates(optimizer: torch.optim.Optimizer, opts: TrainOptions, epoch: int) -> None:
    """Cosine decay from each group's base rate to 0 over ``opts.epochs`` (stateless, so resume-safe)."""
    factor = 0.5 * (1 + math.cos(math.pi * epoch / opts.epochs)) if opts.schedule == "cosine" else 1.0
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def _announce_cost(handle: ModelHandle, opts: TrainOptions, train_set: DecodedSplit, sizes: list[int], cache: bool,
                   epochs: int) -> None:
    """Time one batch of ``train_set`` (the first training images) before the long passes (the frozen layers'
    forward when their output is cached, one training step of the rest) and print the run's estimate
    (``training.costs``) for ``sizes`` (train, val, test images), with cheaper settings when it is long.
    The probe leaves the model as it was: eval mode, gradients cleared."""
    from mikata.hooks import preserved
    from mikata.progress import note
    from mikata.training.costs import later_layers, train_cost, train_message, train_suggestions

    b = max(2, min(len(train_set), opts.batch_size))
    xb = train_set.x[:b].float().to(handle.device)  # (B, C, H, W)
    yb = train_set.y[:b].to(handle.device)
    net = handle.net
    with preserved(net):
        net.eval()  # batch-norm statistics stay as they are
        cache_per_image = 0.0
        if cache:
            boundary_inputs(handle, opts.freeze_until, xb[:2], 2)  # warm-up: the first call of a shape is slow
            t = time.perf_counter()
            feats = boundary_inputs(handle, opts.freeze_until, xb, b)
            cache_per_image = (time.perf_counter() - t) / b
            with started_at(net, opts.freeze_until) as feed:
                step = _timed_step(lambda: feed(handle.model, feats), yb, net)
        else:
            step = _timed_step(lambda: handle.model(xb), yb, net)
    n_cached = sum(sizes)
    cost = train_cost(n_cached if cache else 0, cache_per_image, sizes[0], step / b, sizes[1], epochs)
    tips = train_suggestions(cost, max(handle.input_size), epochs, opts.freeze_until,
                             later_layers(net, opts.freeze_until))
    note(train_message(cost, n_cached, b, tips))


def _timed_step(forward: Callable[[], torch.Tensor], y: torch.Tensor, net: nn.Module) -> float:
    """Seconds of one forward + backward (after a warm-up one); the gradients are cleared afterwards."""
    took = 0.0
    for _ in range(2):
        t = time.perf_counter()
        with torch.enable_grad():
            F.cross_entropy(forward(), y).backward()
        took = time.perf_counter() - t
    for p in net.parameters():
        p.grad = None
    return took


def _can_cache(handle: ModelHandle, opts: TrainOptions, train_set: DecodedSplit) -> bool:
    if not (opts.cache_frozen and opts.freeze_until) or opts.augment.active:
        return False
    if check_shortcut(handle, opts.freeze_until, train_set.x[:4]):
        return True
    log.info("the layers after %s also read earlier layers directly: running the full network each step",
             opts.freeze_until)
    return False


def _check_decoded(train_set: DecodedSplit, val_set: DecodedSplit, classes: list[str]) -> None:
    present = set(train_set.y.tolist())
    missing = [c for i, c in enumerate(classes) if i not in present]
    if missing:
        raise DatasetError(f"no readable training images for classes {missing[:10]}: add images (at least 2 per "
                           "class so that the split leaves one for training) or remove those folders")
    if len(val_set) == 0:
        raise DatasetError("the validation split is empty: add images or raise the validation fraction (--split)")


def _train_epoch(net: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], frozen: list[str],
                 optimizer: torch.optim.Optimizer,
                 data: DecodedSplit, opts: TrainOptions, generator: torch.Generator,
                 memory_format: torch.memory_format, desc: str, progress: bool) -> tuple[float, float]:
    from mikata.devices import module_device

    device = module_device(net)
    set_training_mode(net, frozen)
    order = torch.randperm(len(data), generator=generator)
    batches = [order[i:i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on a batch of one
        batches.pop()
    # Dropout draws from the global RNG: fork it and seed it from our generator.
    dropout_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    total_loss, correct, seen = 0.0, 0, 0
    with torch.random.fork_rng(devices=[]), Progress(len(batches), desc, "batch", progress,
                                                     first="first batch") as bar:
        torch.manual_seed(dropout_seed)
        for idx in batches:
            x = augment_batch(data.x[idx].float(), opts.augment, generator)  # (B, C, H, W), on the CPU
            x = x.to(device, non_blocking=True)
            x = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
            y = data.y[idx].to(device, non_blocking=True)
            logits = forward(x)  # (B, K)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(f"loss {total_loss / seen:.3f}, acc {correct / seen:.3f}")
    net.eval()
    return total_loss / max(seen, 1), correct / max(seen, 1)


def evaluate_split(handle: ModelHandle, data: DecodedSplit, batch_size: int = 128,
             memory_format: torch.memory_format = torch.contiguous_format,
             forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``handle`` on a decoded split (eval mode, no gradients).

    ``forward`` replaces ``handle.model`` (e.g. a feed of precomputed frozen-layer features).
    """
    forward = forward or handle.model
    device = handle.device
    if len(data) == 0:
        return math.nan, math.nan
    was_training = handle.net.training
    handle.net.eval()
    total_loss, correct = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            x = data.x[i:i + batch_size].to(device, non_blocking=True).float()  # (B, C, H, W) or features
            x = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
            y = data.y[i:i + batch_size].to(device, non_blocking=True)
            logits = forward(x)  # (B, K)
            total_loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    handle.net.train(was_training)
    return total_loss / len(data), correct / len(data)


def _save_progress(handle: ModelHandle, out: Path, optimizer: torch.optim.Optimizer, epochs_done: int,
                   history: dict, best: dict, generator_state: torch.Tensor, opts: TrainOptions,
                   split_record: dict | None = None, corrections: dict | None = None) -> None:
    """Current weights to ``out`` (loadable at once), everything else needed to resume to the sidecar."""
    handle.metadata["training"] = {"options": opts.to_dict(), "history": history, "complete": False,
                                   "epochs_done": epochs_done, "split_record": split_record,
                                   "corrections": corrections}
    state = {
        "format": STATE_FORMAT, "epoch": epochs_done, "optimizer": optimizer.state_dict(),
        "history": history, "generator": generator_state, "classes": list(handle.class_names),
        "best": {"epoch": best["epoch"], "accuracy": best["accuracy"], "loss": best["loss"],
                 "bad_epochs": best["bad_epochs"], "state": best["state"]},
    }
    # Both files are written whole before either replaces its old version, and a signal waits until both
    # are in place; a kill -9 between the two replaces is caught by ``_restore`` (epochs_done differ).
    with signals_deferred():
        weights_tmp, state_tmp = out.with_name(out.name + ".tmp"), state_path(out).with_suffix(".tmp")
        save_checkpoint(handle, weights_tmp)
        torch.save(state, state_tmp)
        os.replace(weights_tmp, out)
        os.replace(state_tmp, state_path(out))


# options that may change between an interrupted run and its --resume (more epochs, other threads)
RESUMABLE_CHANGES = ("epochs", "workers", "threads", "early_stop", "cache_frozen", "channels_last")


def check_resume_options(out: Path, opts: TrainOptions) -> None:
    """Refuse a ``--resume`` whose options differ from the interrupted run's, naming each one (instead of
    a shape mismatch deep in PyTorch, or a silently different run). Nothing to check without a checkpoint:
    ``_restore`` then says there is nothing to resume."""
    from mikata.models.loading import read_checkpoint_metadata

    if not out.is_file():
        return
    meta = read_checkpoint_metadata(out)
    old = dict(meta.get("training", {}).get("options") or {})
    # what the model saw is the checkpoint's own preprocessing (older runs did not store crop/resize options)
    old.update(crop=meta["crop_fraction"], resize=meta["resize"])
    if old.get("input_size") is None and "input_size" in old:
        old["input_size"] = None if opts.input_size is None else meta["input_size"][0]
    new = opts.to_dict()
    changed = [k for k in new if k in old and k not in RESUMABLE_CHANGES and old[k] != new[k]
               and not (isinstance(new[k], float) and isinstance(old[k], (int, float)) and
                        math.isclose(new[k], old[k], rel_tol=1e-9))]
    if changed:
        said = ", ".join(f"--{k.replace('_', '-')} {_shown(new[k])} (was {_shown(old[k])})" for k in changed)
        raise TrainingError(f"cannot resume {out}: options differ from the interrupted run: {said}; rerun with "
                            "the same options (only --epochs, --early-stop, --workers and --threads may change), "
                            "or without --resume to start over")


def _check_resume_corrections(out: Path, corrected: dict | None) -> None:
    """A ``--resume`` must use the same corrections as the interrupted run (or both none)."""
    from mikata.models.loading import read_checkpoint_metadata

    if not out.is_file():
        return
    old = (read_checkpoint_metadata(out).get("training") or {}).get("corrections")
    if old != corrected:
        raise TrainingError(f"cannot resume {out}: the label corrections differ from the interrupted run's "
                            f"({'none' if old is None else old.get('run') or old.get('file')}); rerun with the same "
                            "--reviews/--corrections, or without --resume to start over")


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _restore(out: Path, handle: ModelHandle, optimizer: torch.optim.Optimizer,
             generator: torch.Generator) -> tuple[int, dict, dict]:
    from safetensors.torch import load_file

    from mikata.models.loading import read_checkpoint_metadata

    sidecar = state_path(out)
    if not sidecar.is_file() or not out.is_file():
        raise TrainingError(f"nothing to resume: {sidecar if out.is_file() else out} does not exist (the sidecar "
                            "is removed when training completes); run without --resume to start over")
    state = torch.load(sidecar, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{sidecar}: unknown training-state format {state.get('format')!r}")
    meta = read_checkpoint_metadata(out)
    arch = meta.get("architecture")
    weights_epoch = (meta.get("training") or {}).get("epochs_done")
    if weights_epoch is not None and weights_epoch != state.get("epoch"):
        raise TrainingError(f"cannot resume {out}: its weights are from epoch {weights_epoch} but {sidecar.name} "
                            f"is from epoch {state.get('epoch')} (the run was killed while saving); run without "
                            "--resume to start over")
    if arch != handle.metadata.get("architecture"):
        raise TrainingError(f"cannot resume {out}: it was fine-tuned from {arch}, but --model now gives "
                            f"{handle.metadata.get('architecture')}; pass the same --model, or run without --resume")
    if state["classes"] != handle.class_names:
        raise TrainingError(f"{sidecar}: it was trained on classes {state['classes'][:10]}, but the dataset now has "
                            f"{handle.class_names[:10]}; run without --resume to start over")
    try:
        handle.net.load_state_dict(load_file(str(out)))
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise TrainingError(f"cannot resume from {out}: it does not match this model and options ({e}); "
                            "run without --resume to start over") from e
    generator.set_state(state["generator"])
    history = {k: list(state["history"].get(k, [])) for k in HISTORY_KEYS}
    return int(state["epoch"]), history, dict(state["best"])
