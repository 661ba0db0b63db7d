"""Does ``mikata concepts`` find shortcuts nobody told it about? Planted cases on Fashion-MNIST.

For each kind in ``planted.KINDS`` (a mark at a fixed place, a border, a texture patch, a brightness and
contrast shift, a background change) this script

1. writes the planted dataset and its clean twin (``planted.write_case``; same images and file names);
2. fine-tunes efficientnet-lite0 on each as the demo does, small and fast (64 px, frozen before
   ``blocks.9``, ``--epochs`` epochs, one thread) with ``mikata train``;
3. scans the held-out split with ``mikata scan``: the planted model on the planted images (run
   ``KIND-planted``), the planted model on the same images without the artefact (``KIND-removed``: the
   check that the model USES the artefact: the target class's accuracy drops), the clean model on the
   clean images (``KIND-clean``: the twin that must raise no shortcut);
4. runs ``mikata concepts RUN --json`` on the planted and the clean runs and scores the target class:
   is a top concept on the artefact (its exemplar boxes hold the planted pixels; its heatmap's mass sits
   on them), is it flagged ``shortcut``, its deletion flip rate; and on the clean twin, any concept of that
   class flagged ``shortcut`` is a false alarm.
5. scores the class-level tests (``class_findings``: context, photometric) of the target class. One counts
   as finding the artefact when it is flagged AND the edit its test makes acts on the artefact, the same rule
   for every kind (``ACTS``): for the context test, at least half of the artefact's pixels lie in the filled
   context or at least half of the context is artefact; for the photometric test, the artefact moves the
   image's 1% / 99% intensity quantile by at least a tenth of its clean range on at least half of the
   planted files. A flagged class-level test on the clean twin's target class is a false alarm, and one on
   any other class is counted with the other classes' flags.

A kind is found when a concept is found (as in 4) or a class-level test is (as in 5).

Everything is written under ``--out`` (default /tmp/planted) and reused on a second call (delete a
folder to redo it). Usage:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_concepts_shortcuts.py [--kinds mark,border]
        [--stage data|train|scan|concepts|all] [--epochs 4] [--json table.json] [--tcav]

Training takes about 45 s per model on this 2-core machine (10 models), a scan 3 s, concepts see the
concepts notes. Numbers from the last full run are in the concepts-eval notes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted import KINDS, PlantedCase, artefact_mask, write_case

SEEDS = {kind: n + 1 for n, kind in enumerate(KINDS)}


def _mikata(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "mikata", *args]
    out = subprocess.run(cmd, env=env, text=True, capture_output=capture, check=False)
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {(out.stderr or '')[-2000:]}")
    return out


def case_for(out: Path, kind: str) -> PlantedCase:
    root = out / "data" / kind
    if (root / "truth.json").is_file():
        truth = json.loads((root / "truth.json").read_text())
        return PlantedCase(kind, truth["target"], root, tuple(truth["classes"]))
    return write_case(root, kind, seed=SEEDS[kind])


def train(out: Path, case: PlantedCase, epochs: int) -> dict[str, Path]:
    models = {}
    for twin, data in (("planted", case.planted), ("clean", case.clean)):
        ckpt = out / "models" / f"{case.kind}-{twin}.safetensors"
        if not ckpt.is_file():
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            _mikata("train", str(data), "--model", "efficientnet-lite0", "--out", str(ckpt), "--input-size", "64",
                    "--freeze-until", "blocks.9", "--epochs", str(epochs), "--augment", "none", "--threads", "1",
                    "--device", "cpu", "--json", capture=True)
            print(f"trained {ckpt.name} in {time.perf_counter() - start:.0f} s", flush=True)
        models[twin] = ckpt
    return models


RUNS = {"planted": ("planted", "planted"), "removed": ("planted", "clean"), "clean": ("clean", "clean")}


def scan(out: Path, case: PlantedCase, models: dict[str, Path]) -> dict[str, Path]:
    runs = {}
    for name, (model, data) in RUNS.items():
        run = out / "runs" / f"{case.kind}-{name}"
        if not (run / "manifest.json").exists():
            _mikata("scan", str(models[model]), str(case.root / data), "--run", str(run), "--device", "cpu",
                    "--workers", "0", "--json", capture=True)
        runs[name] = run
    return runs


def _rel(path: str) -> str:
    return "/".join(Path(path).parts[-2:])


def usage(case: PlantedCase, runs: dict[str, Path]) -> dict:
    """The target class's accuracy on its planted held-out images, with and without the artefact."""
    from mikata.analysis.run import open_run

    boxes = case.truth()["boxes"]
    acc = {}
    for name in ("planted", "removed", "clean"):
        df = open_run(runs[name]).to_pandas(dataset_issues=False)
        planted_rows = df[(df.label == case.target) & df.path.map(lambda p: _rel(p) in boxes)]
        acc[name] = float(planted_rows.correct.mean())
        acc[f"{name}_all"] = float(df.correct.mean())
        acc["images"] = len(planted_rows)
    return acc


# ---------------------------------------------------------------- scoring the concepts of one run

TOP = 3  # the artefact must be among the class's TOP concepts by importance
GLOBAL_KINDS = ("brightness",)  # the artefact changes every pixel: no place for a box or a heatmap to match


def _image(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


def artefact_of(case: PlantedCase, rel: str) -> np.ndarray | None:
    """(28, 28) bool mask of the planted pixels of one file, None when the file carries no artefact."""
    if rel not in case.truth()["boxes"]:
        return None
    return artefact_mask(_image(case.planted / rel), _image(case.clean / rel))


def box_hit(mask: np.ndarray | None, box: list[float]) -> bool:
    """The exemplar box sits on the artefact: it holds most of a small artefact while being at most half
    the image, or it is mostly artefact (big artefacts: a border, a background)."""
    if mask is None or not mask.any():
        return False
    h, w = mask.shape
    x0, y0, x1, y1 = (round(v) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))
    inside = mask[y0:y1, x0:x1]
    if inside.size == 0:
        return False
    base = float(mask.mean())
    holds = inside.sum() / mask.sum() >= 0.5 and inside.size <= 0.5 * mask.size
    mostly = inside.mean() >= base + 0.5 * (1 - base)
    return bool(holds or mostly)


def heat_share(case: PlantedCase, run: Path, ids_rels: list[tuple[int, str]], concept: str
               ) -> tuple[float, float] | None:
    """Over the planted exemplars: the mean share of the concept heatmap's mass on the artefact's pixels,
    and the mean share a uniform map would put there (the artefact's fraction of the image)."""
    from mikata.concepts import concept_heatmap

    shares, bases = [], []
    for image_id, rel in ids_rels:
        mask = artefact_of(case, rel)
        if mask is None:
            continue
        heat = np.clip(np.asarray(concept_heatmap(run, image_id, concept), np.float64), 0, None)
        if heat.shape != mask.shape or heat.sum() <= 0:
            from PIL import Image

            heat = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize(mask.shape[::-1]))
            heat = np.clip(heat, 0, None)
        if heat.sum() <= 0:
            continue
        shares.append(float((heat * mask).sum() / heat.sum()))
        bases.append(float(mask.mean()))
    return (float(np.mean(shares)), float(np.mean(bases))) if shares else None


def direction_deletion(run: Path, ckpt: Path, cls: str, concept: str, images: int = 32) -> dict:
    """An independent deletion check that also reaches distributed and global artefacts: on up to ``images``
    of the class's sampled images that have the concept and are predicted as the class, subtract the
    concept's part ``U_k(s) W_k`` from the layer's activations at EVERY position and finish the forward;
    the flip rate and mean drop of P(class). (The library fills one region with the mean colour instead.)"""
    import torch

    from mikata.runs.store import RunStore
    from mikata.concepts import load_atlas
    from mikata.hooks import attached, get_layer
    from mikata.models.loading import load_model

    atlas = load_atlas(run)
    c, k, _ = atlas.concept(concept)
    a = atlas.arrays(c)
    has = atlas.present(c)[:, k] & (a["preds"] == c)
    rows = np.flatnonzero(has)[:images]
    if rows.size == 0:
        return {"flip_rate": 0.0, "mean_drop": 0.0, "images": 0}
    handle = load_model(str(ckpt))
    with RunStore.open(run) as store:
        paths = store.paths([int(i) for i in a["ids"][rows]])
    x = handle.preprocessing.load([paths[int(i)] for i in a["ids"][rows]])
    W = torch.from_numpy(a["W"][k]).float()  # (C,) or (2C,) when the class was factorized sign-split
    U = torch.from_numpy(a["U"][rows][..., k]).float()  # (n, h, w)

    def remove(module, args, out):
        C = out.shape[1]
        w = W[:C] - W[C:] if W.numel() == 2 * C else W
        return out - U[:, None] * w[None, :, None, None]  # (n, C, h, w)

    net = handle.net.eval()
    with torch.no_grad():
        before = torch.softmax(net(x), 1)[:, c]
        with attached([(get_layer(net, atlas.layer), "forward", remove)]):
            after_logits = net(x)
    after = torch.softmax(after_logits, 1)
    flips = (after.argmax(1) != c).float().mean().item()
    return {"flip_rate": flips, "mean_drop": float((before - after[:, c]).mean()), "images": int(rows.size)}


# A class-level finding (``class_findings``: no concept, the whole class tested) counts as finding the artefact
# when the edit its test makes acts on the artefact, the same rule for every kind:
# - context: at least half of the artefact's pixels lie in the filled context, or at least half of the context's
#   pixels are artefact (the artefact IS the context: a background);
# - photometric: the artefact moves the image's low or high intensity quantile (the statistics the test maps) by
#   at least a tenth of the clean image's range, on at least half of the planted files.
ACTS = 0.5
QUANTILE_SHIFT = 0.1


def _planted_masks(case: PlantedCase, limit: int = 100) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(artefact mask, planted image, clean image) of up to ``limit`` planted files, in name order."""
    out = []
    for rel in sorted(case.truth()["boxes"])[:limit]:
        planted, clean = _image(case.planted / rel), _image(case.clean / rel)
        out.append((artefact_mask(planted, clean), planted, clean))
    return out


def context_acts(case: PlantedCase, run: Path) -> dict:
    """How the class's context (the mask the library filled, stored with its arrays) meets the artefact."""
    from PIL import Image

    from mikata.concepts import load_atlas

    context = load_atlas(run).arrays(case.target).get("context")
    if context is None:
        return {"artefact_in_context": 0.0, "context_is_artefact": 0.0, "acts": False}
    small = np.asarray(Image.fromarray((context * 255).astype(np.uint8)).resize((28, 28), Image.NEAREST)) > 127
    inside, mostly = [], []
    for mask, _, _ in _planted_masks(case):
        if mask.any():
            inside.append(float((mask & small).sum() / mask.sum()))
            mostly.append(float((mask & small).sum() / max(1, small.sum())))
    a, b = float(np.mean(inside)), float(np.mean(mostly))
    return {"artefact_in_context": a, "context_is_artefact": b, "acts": bool(a >= ACTS or b >= ACTS)}


def photometric_acts(case: PlantedCase) -> dict:
    from mikata.concepts.classtests import QUANTILE

    moved = []
    for _, planted, clean in _planted_masks(case):
        qp = np.quantile(planted.astype(np.float64), [QUANTILE, 1 - QUANTILE])
        qc = np.quantile(clean.astype(np.float64), [QUANTILE, 1 - QUANTILE])
        moved.append(float(np.abs(qp - qc).max() / max(qc[1] - qc[0], 1.0)))
    share = float(np.mean(np.array(moved) >= QUANTILE_SHIFT))
    return {"files_moved": share, "acts": bool(share >= ACTS)}


def class_level(case: PlantedCase, atlas: dict, run: Path) -> list[dict]:
    """The target class's class-level findings, each with whether its test acts on the artefact."""
    rows = []
    for f in atlas.get("class_findings", {}).get(case.target, []):
        acts = context_acts(case, run) if f["test"] == "context" else photometric_acts(case)
        rows.append({"test": f["test"], "shortcut": bool(f["shortcut"]), "flip_rate": f["deletion"]["flip_rate"],
                     "mean_drop": f["deletion"]["mean_drop"], "images": f["deletion"]["images"],
                     "concepts": f.get("concepts", []), "acts_on_artefact": acts, "evidence": f["evidence"]})
    return rows


def _class_flags(atlas: dict, skip: str | None = None) -> list[str]:
    return [f"{cls}:{f['test']}" for cls, found in atlas.get("class_findings", {}).items() if cls != skip
            for f in found if f["shortcut"]]


def concepts_json(run: Path, args: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    out = _mikata("concepts", str(run), "--json", "--device", "cpu", *args, capture=True)
    seconds = time.perf_counter() - start
    try:
        return json.loads(out.stdout), seconds
    except json.JSONDecodeError:
        raise SystemExit(f"mikata concepts {run} printed no JSON: {out.stdout[-500:]} {out.stderr[-1500:]}")


def score(case: PlantedCase, runs: dict[str, Path], concept_args: list[str], ckpt: Path) -> dict:
    """Found, rank, flag, boxes, flip rate on the planted run; shortcut flags on the clean twin."""
    atlas, seconds = concepts_json(runs["planted"], concept_args)
    twin, twin_seconds = concepts_json(runs["clean"], concept_args)
    located = case.kind not in GLOBAL_KINDS
    rows = []
    concepts = sorted(atlas["classes"].get(case.target, []), key=lambda c: -c["importance"])
    for rank, c in enumerate(concepts, 1):
        ex = [(int(e["id"]), _rel(e["path"]), e["box"]) for e in c["exemplars"]]
        hits = [box_hit(artefact_of(case, rel), box) for _, rel, box in ex]
        heat = heat_share(case, runs["planted"], [(i, r) for i, r, _ in ex], c["concept"]) if located else None
        rows.append({"concept": c["concept"], "rank": rank, "importance": c["importance"],
                     "presence": c["presence"], "shortcut": bool(c["shortcut"]),
                     "box_hits": float(np.mean(hits)) if hits else 0.0,
                     "heat_share": heat[0] if heat else None, "heat_base": heat[1] if heat else None,
                     "direction_deletion": direction_deletion(runs["planted"], ckpt, case.target, c["concept"]),
                     "flip_rate": c["deletion"]["flip_rate"], "mean_drop": c["deletion"]["mean_drop"],
                     "deleted_on": c["deletion"]["images"], "location": c["location"], "area": c["area"],
                     "evidence": c["evidence"]})
    for r in rows:  # on the artefact: its exemplar boxes, or its heatmap's mass (big artefacts: border, background)
        mostly = r["heat_share"] is not None and r["heat_share"] >= r["heat_base"] + 0.5 * (1 - r["heat_base"])
        r["on_artefact"] = bool(r["box_hits"] >= 0.5 or mostly) if located else None
    candidates = [r for r in rows[:TOP] if r["on_artefact"] in (True, None)]
    # the artefact's concept: on it (located kinds) or, for a global artefact, the one whose direction deletion
    # flips the most; a flagged one first
    candidates.sort(key=lambda r: (not r["shortcut"], -r["direction_deletion"]["flip_rate"] if not located else r["rank"]))
    best = candidates[0] if candidates else None
    used = bool(best and (best["flip_rate"] >= 0.3 or best["mean_drop"] >= 0.3))
    found_concept = bool(best and best["shortcut"] and used)
    classwide = class_level(case, atlas, runs["planted"])
    found_class = [f["test"] for f in classwide if f["shortcut"] and f["acts_on_artefact"]["acts"]]
    found = found_concept or bool(found_class)
    alarms = [c["concept"] for c in twin["classes"].get(case.target, []) if c["shortcut"]]
    alarms += [f"{case.target}:{f['test']}" for f in twin.get("class_findings", {}).get(case.target, []) if f["shortcut"]]
    other_planted = [c["concept"] for k, cs in atlas["classes"].items() if k != case.target for c in cs
                     if c["shortcut"]] + _class_flags(atlas, case.target)
    other_clean = [c["concept"] for k, cs in twin["classes"].items() if k != case.target for c in cs
                   if c["shortcut"]] + _class_flags(twin, case.target)
    return {"found": found, "found_by_concept": found_concept, "found_by_class_test": found_class,
            "class_findings": classwide,
            "twin_class_findings": twin.get("class_findings", {}).get(case.target, []),
            "named_and_flagged": bool(best and best["shortcut"]), "best": best, "concepts": rows, "twin_alarms": alarms,
            "other_class_flags_planted": other_planted, "other_class_flags_clean": other_clean,
            "layer": atlas.get("layer"), "seconds": seconds, "twin_seconds": twin_seconds}


OTHER_LABELS = (1, 3, 5, 7, 8, 9)  # Trouser, Dress, Sandal, Sneaker, Bag, Ankle_boot: no planted class


def define_folder(out: Path, kind: str, n: int = 40, seed: int = 5) -> Path:
    """``n`` Fashion-MNIST test images of classes outside the benchmark, carrying the artefact: the examples a
    person would give ``mikata concepts --define KIND=DIR`` to test a suspicion."""
    from PIL import Image
    from planted import PLANTERS

    from mikata.data.idx import load_fashion_mnist

    folder = out / "define" / kind
    if folder.is_dir() and len(list(folder.glob("*.png"))) >= n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    x, y = load_fashion_mnist("test")
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.flatnonzero(np.isin(y, OTHER_LABELS)), n, replace=False):
        img, _ = PLANTERS[kind](x[i], rng)
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    return folder


def tcav(out: Path, case: PlantedCase, runs: dict[str, Path]) -> dict:
    """TCAV score of the user-defined artefact concept for the planted class, planted run vs clean twin."""
    folder = define_folder(out, case.kind)
    got = {}
    for name in ("planted", "clean"):
        atlas, _ = concepts_json(runs[name], ["--classes", case.target, "--define", f"{case.kind}={folder}"])
        got[name] = atlas["tcav"][case.kind]["classes"][case.target]
    return got


def print_table(table: list[dict]) -> None:
    print(f"\n{'kind':<11} {'class':<12} {'uses it':>11} {'found':>5} {'rank':>4} {'flag':>5} {'boxes':>5} "
          f"{'heat':>9} {'flip':>5} {'drop':>5} {'dir flip':>8} {'twin alarms':>11} {'other flags p/c':>15}  "
          f"class tests (flip/drop, flagged, acts on artefact)")
    for row in table:
        u, s = row["usage"], row.get("score")
        uses = f"{u['planted']:.2f}->{u['removed']:.2f}"
        if not s:
            print(f"{row['kind']:<11} {row['target']:<12} {uses:>14}")
            continue
        b = s["best"] or {}
        heat = f"{b['heat_share']:.2f}/{b['heat_base']:.2f}" if b.get("heat_share") is not None else "n/a"
        dflip = b["direction_deletion"]["flip_rate"] if b else 0.0
        print(f"{row['kind']:<11} {row['target']:<12} {uses:>11} {'yes' if s['found'] else 'no':>5} "
              f"{b.get('rank', '-'):>4} {b.get('shortcut', '-')!s:>5} {b.get('box_hits', 0):>5.2f} {heat:>9} "
              f"{b.get('flip_rate', 0):>5.2f} {b.get('mean_drop', 0):>5.2f} {dflip:>8.2f} {len(s['twin_alarms']):>11} "
              f"{len(s['other_class_flags_planted']):>7}/{len(s['other_class_flags_clean'])}  "
              + "; ".join(f"{f['test']} {f['flip_rate']:.2f}/{f['mean_drop']:.2f} {'FLAG' if f['shortcut'] else '-'} "
                          f"{'acts' if f['acts_on_artefact']['acts'] else 'off'}" for f in s.get("class_findings", [])))
    for row in table:
        if row.get("tcav"):
            p, c = row["tcav"]["planted"], row["tcav"]["clean"]
            print(f"TCAV {row['kind']:<11} planted {p['score']:.2f} (random {p['random_mean']:.2f}, p {p['p_value']:.1g})"
                  f"  clean twin {c['score']:.2f} (random {c['random_mean']:.2f}, p {c['p_value']:.1g})")
    scored = [r for r in table if r.get("score")]
    if scored:
        found = sum(r["score"]["found"] for r in scored)
        alarms = sum(len(r["score"]["twin_alarms"]) for r in scored)
        print(f"found {found}/{len(scored)} kinds; clean-twin false alarms on the planted class: {alarms}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/planted"))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--stage", choices=("data", "train", "scan", "concepts", "all"), default="all")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the table here as JSON")
    parser.add_argument("--tcav", action="store_true", help="also test each artefact as a user-defined (TCAV) concept")
    parser.add_argument("--concept-args", default="", help="extra arguments for mikata concepts, e.g. '--per-class 6'")
    args = parser.parse_args()
    table = []
    for kind in args.kinds.split(","):
        case = case_for(args.out, kind)
        if args.stage == "data":
            continue
        models = train(args.out, case, args.epochs)
        if args.stage == "train":
            continue
        runs = scan(args.out, case, models)
        row = {"kind": kind, "target": case.target, "usage": usage(case, runs)}
        if args.stage in ("concepts", "all"):
            row["score"] = score(case, runs, args.concept_args.split(), models["planted"])
            if args.tcav:
                row["tcav"] = tcav(args.out, case, runs)
        print(json.dumps(row, default=str), flush=True)
        table.append(row)
    print_table(table)
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
