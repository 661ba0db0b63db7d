"""``mikata demo``: the whole job on real data and a real pretrained model, end to end.

Each step is a call into the library, the same one the corresponding command makes, so the demo
doubles as a tour of the API. Outputs go under ``out_dir`` and are listed at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from mikata.runs.layout import EVALUATE, FEATUREVIS, PARTS, RunLayout

log = logging.getLogger("mikata.demo")


@dataclass
class DemoResult:
    outputs: list[tuple[str, Path]] = field(default_factory=list)  # (what, path)
    facts: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0


def shipped_photos(folder: Path) -> dict[str, Path]:
    """Real photos that installed packages ship (scikit-image, scikit-learn), saved as PNG files."""
    import importlib.util

    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"chelsea": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket()}
    out = {}
    for name, arr in arrays.items():
        out[name] = folder / f"{name}.png"
        if not out[name].exists():
            Image.fromarray(arr).save(out[name])
    # found, not imported: importing sklearn.datasets (scipy and most of scikit-learn) costs more CPU than
    # the rest of this step
    sklearn = importlib.util.find_spec("sklearn")
    if sklearn is None or not sklearn.submodule_search_locations:
        raise ModuleNotFoundError("the demo's photo china.jpg comes with scikit-learn: pip install scikit-learn")
    china = Path(list(sklearn.submodule_search_locations)[0]) / "datasets" / "images" / "china.jpg"
    out["china"] = china
    return out


def run_demo(out_dir: str | Path = "mikata-demo", quick: bool = False, device: str | None = "cpu") -> DemoResult:
    """Run every step on ``device``; ``quick`` uses tiny sizes (a smoke test, not a meaningful model)."""
    from mikata.analysis.audit_summary import audit, format_audit
    from mikata.scanning.scan import scan
    from mikata.attribution.files import explain_files
    from mikata.demo.training import DEMO_SETTINGS, demo_paths, train_demo_model
    from mikata.featurevis import RenderOptions, visualize_channels, visualize_classes
    from mikata.models import load_model
    from mikata.prediction import predict
    from mikata.report import write_report
    from mikata.training.loop import plot_path

    start = time.perf_counter()
    out = Path(out_dir)
    result = DemoResult()
    photos = shipped_photos(out / "photos")

    step("1/8 The built-in ImageNet model (EfficientNet-Lite0, real weights) on shipped photos")
    imagenet = load_model("efficientnet-lite0", device=device)
    for pred in predict(imagenet, list(photos.values()), top=3):
        log.info("  %-12s %s", Path(pred.path).stem, ", ".join(f"{name} {p:.0%}" for name, _, p in pred.top))
        result.facts[f"top1:{Path(pred.path).stem}"] = pred.top[0][0]

    step("2/8 Where does it look? Grad-CAM, Guided Grad-CAM and SmoothGrad with the top-5 bars")
    chosen = [photos["chelsea"]] if quick else [photos["chelsea"], photos["coffee"]]
    explain_files(imagenet, chosen, ["gradcam", "guided-gradcam", "smoothgrad"], targets="top1",
                  out_dir=out / "explain", options={"smoothgrad": {"samples": 4 if quick else 16}})
    result.outputs.append(("explanations (figures, .npy)", out / "explain"))

    step("3/8 What do units respond to? Class logits and first-layer channels, rendered")
    # The defaults (224 px, 48 steps) are the tested ones: the model reads each image as its class.
    classes = visualize_classes(imagenet, ["zebra", "strawberry", "castle"],
                                RenderOptions(size=64, steps=8) if quick else RenderOptions(seed=0))
    classes.save(out / "visualize-classes")
    channels = visualize_channels(imagenet, "stem.conv", range(4 if quick else 16), rectify=True,
                                  options=RenderOptions(size=48 if quick else 64, steps=4 if quick else 32,
                                                        param="pixel", seed=0))
    channels.save(out / "visualize-stem")
    result.outputs += [("class-logit images", out / "visualize-classes" / "grid.png"),
                       ("first-layer channel images", out / "visualize-stem" / "grid.png")]

    step("4/8 Transfer learning: EfficientNet-Lite0 fine-tuned on Fashion-MNIST (Debian dataset-fashion-mnist)")
    overrides = {"epochs": 1, "input_size": 32} if quick else {}
    ckpt, test_acc, seconds = train_demo_model(out, per_class=20 if quick else 500, device=device, **overrides)
    data_dir, _ = demo_paths(out)
    log.info("  test accuracy %.1f%% (%.0f s)", 100 * test_acc, seconds)
    result.facts["test_accuracy"] = test_acc
    result.outputs += [("fine-tuned model", ckpt), ("Fashion-MNIST class folders", data_dir)]
    plot = plot_path(ckpt)
    if plot.exists():
        result.outputs.append(("training curves", plot))

    step("5/8 Where and why does it fail? Scan the held-out test split, then audit it")
    run_dir = out / "run"
    fine_tuned = load_model(str(ckpt), device=device)
    scan(fine_tuned, data_dir, run_dir, split="test", fractions=DEMO_SETTINGS["split"],
         seed=DEMO_SETTINGS["seed"], gradcam=True, batch_size=64, workers=0 if quick else 2)
    summary = audit(run_dir, n=2, top_issues=5)
    print(format_audit(summary, max_listed=5), flush=True)
    result.facts["scan_accuracy"] = summary["accuracy"]
    result.outputs.append(("scanned run", run_dir))
    # what each fine-tuned class's logit responds to, where the report and the web app's gallery find it
    visualize_classes(fine_tuned, fine_tuned.class_names,
                      RenderOptions(size=32 if quick else 64, steps=4 if quick else 48, seed=0)).save(
        RunLayout(run_dir).writable_folder(f"{FEATUREVIS}/classes"))
    result.outputs.append(("fine-tuned class images", RunLayout(run_dir).featurevis / "classes" / "grid.png"))
    # `mikata units`: channels of the scan's layer beside the test images that drive them (report + web app)
    from mikata.analysis.units import unit_examples
    from mikata.models.layers import cam_layer_size, describe_cam_layer

    units = unit_examples(run_dir, range(2 if quick else 8), k=3 if quick else 6, handle=fine_tuned,
                          options=RenderOptions(size=32 if quick else 64, steps=4 if quick else 48, seed=0))
    result.outputs.append(("units beside their test images", units.save().parent / "units.png"))
    log.info("  %s", describe_cam_layer(fine_tuned.default_layer, cam_layer_size(
        fine_tuned.net, fine_tuned.in_channels, fine_tuned.input_size, fine_tuned.default_layer)))

    step("6/8 Why is a class recognised? Each class's concepts, its strategies and suspected shortcuts")
    concepts_step(run_dir, fine_tuned, result, quick=quick, device=device)

    step("7/8 Which map to believe? Faithfulness and sanity checks of three methods on a sample of test images")
    # Fashion-MNIST is 28 px: a blurred copy still shows the garment (p 0.7-0.95), so blur-filled curves
    # cannot tell a good order from a random one. Deletion fills with ROAD's imputation (no off-distribution
    # holes for a random order to win by) and insertion starts from the mean colour (no evidence at all).
    card = evaluate_run(run_dir, fine_tuned, ["gradcam", "saliency", "guided-backprop"], 4 if quick else 8,
                        steps=10 if quick else 50, stages=3 if quick else 8, samples=2 if quick else 8,
                        fill="deletion=road,insertion=mean")
    result.outputs.append(("attribution scorecard", RunLayout(run_dir).scorecard))
    result.facts["passes"] = card["passes"]

    step("8/8 The report: one HTML file that opens offline (and `mikata serve` for the web app)")
    report = write_report(run_dir, RunLayout(run_dir).report, handle=fine_tuned)
    log.info("  %d images, %.1f MB, written in %.0f s", report.images, report.bytes / 1e6, report.timings["total"])
    result.outputs.append(("HTML report (opens offline)", RunLayout(run_dir).report))
    log.info("\nExplore further: mikata serve %s  (the web app: every image, any map, label review)\n"
             "                 mikata explain %s IMAGE --methods gradcam", run_dir, ckpt)

    result.seconds = time.perf_counter() - start
    return result


def concepts_step(run_dir: Path, handle, result: DemoResult, quick: bool = False, device: str | None = "cpu") -> None:
    """``mikata concepts RUN_DIR --per-class 4``: each class's activations at the scan's layer factorized into
    four concepts, ranked, with strategies, error slices and suspected shortcuts checked by deletion; stored
    in ``RUN_DIR/concepts/`` where the report and the web app find them."""
    from mikata.concepts import compute_atlas
    from mikata.concepts.surface import shape_atlas

    atlas = compute_atlas(run_dir, per_class=4, sample=16 if quick else 200, device=device, model=handle,
                          progress=True)
    view = shape_atlas(atlas.to_json(), handle.class_names)
    log.info("  %d classes x 4 concepts at %s; %d suspected shortcuts", len(view["classes"]), view["layer"],
             len(view["shortcuts"]))
    for s in view["shortcuts"][:5]:
        log.info("  shortcut? %s: %s", s["concept"], s["evidence"])
    for s in view["slices"][:3]:
        log.info("  %s images %s %s: %d images, %.0f%% accurate", s["class"], "with" if s["present"] else "without",
                 s["concept"], s["images"], 100 * (s["accuracy"] or 0.0))
    result.facts["suspected_shortcuts"] = len(view["shortcuts"])
    result.outputs.append(("concept atlas (report Concepts section, web app /concepts)",
                           run_dir / "concepts" / "atlas.json"))


def evaluate_run(run_dir: Path, handle, methods: list[str], images: int, **settings) -> dict:
    """``mikata evaluate RUN_DIR``: the scorecard of ``methods`` on a seeded sample of the run, printed
    and written to ``RUN_DIR/evaluate/`` (where the report and the web app find it). Its finished parts
    are kept in ``RUN_DIR/evaluate/parts/``, as the command keeps them: a second demo reuses them."""
    from mikata.evaluation.scorecard import evaluate, format_scorecard, load_images, sample_paths, write_scorecard

    x, _ = load_images(handle, sample_paths(run_dir, images))
    layout = RunLayout(run_dir)
    res = evaluate(handle, x, methods, model_name=handle.spec or None,
                   parts_dir=layout.writable_folder(f"{EVALUATE}/{PARTS}"), **settings)
    print(format_scorecard(res.card), flush=True)
    write_scorecard(res, str(layout.evaluate))
    return res.card


def step(title: str) -> None:
    log.info("\n== %s", title)
