"""mikata report RUN_DIR --out report.html: one self-contained HTML file showing a scanned run."""

from __future__ import annotations

from mikata.cli.common import add_device_arguments, command_parser, device_from_args, print_json


def register(sub) -> None:
    p = command_parser(sub, "report", "Write one self-contained HTML file (opens offline) with the run's accuracy, "
                       "clickable confusion matrix, class histogram, confused pairs, per-class most/least "
                       "class-like images with Grad-CAM and Guided Grad-CAM, suspected label errors, the "
                       "embedding scatter, training curves, feature-visualization grids and the scorecard.",
                       "mikata report runs/fashion --out fashion.html --groups groups.json")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--out", default=None, metavar="FILE", help="the HTML file to write (default RUN_DIR/report.html)")
    p.add_argument("--split", default=None, help="only rows of this split (e.g. test)")
    p.add_argument("--groups", default=None, metavar="FILE",
                   help='class -> group mapping for errors across groups: JSON {"cat": ["siamese", ...]} '
                        "or class,group lines")
    p.add_argument("--methods", default="gradcam,guided-gradcam",
                   help="attribution maps for each class's most/least class-like images (default gradcam,guided-gradcam)")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="the model the run was scanned with, when its recorded spec is not found beside the run or "
                        "is code (package.module:factory); its weights must be the scanned ones")
    p.add_argument("--no-maps", action="store_true", help="leave the maps out (no model is loaded)")
    p.add_argument("--map-classes", type=int, default=30, metavar="N",
                   help="draw maps for at most N classes, lowest F1 first (default 30)")
    p.add_argument("--top", type=int, default=3, help="most / least class-like images per class (default 3)")
    p.add_argument("--issues", type=int, default=50, help="suspected label errors to list (default 50)")
    p.add_argument("--thumb", type=int, default=64, help="thumbnail size in pixels (default 64)")
    p.add_argument("--points", type=int, default=5000, help="embedding points drawn at most (default 5000)")
    p.add_argument("--positive", default=None, metavar="CLASS",
                   help="the class whose precision-recall and ROC curves are drawn (default on a two-class run: the "
                        "minority class; on more classes: its one-vs-rest curves)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T",
                   help="the operating threshold marked on the curves beside the best-F1 one (default 0.5)")
    p.add_argument("--json", action="store_true", help="print where the report went, its size and timings as JSON")
    add_device_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from mikata.analysis.audit import load_groups
    from mikata.report import ReportError, write_report

    groups = None
    if args.groups:
        try:
            groups = load_groups(args.groups)
        except (OSError, ValueError) as e:
            raise ReportError(f"cannot read --groups {args.groups}: {e}") from e
    from mikata.attribution.engine import check_methods
    from mikata.models.precheck import check_at_least, check_between

    methods = check_methods([m for m in args.methods.split(",") if m.strip()])  # before the run is opened
    for name, low in (("top", 1), ("issues", 0), ("map_classes", 0), ("thumb", 16), ("points", 1)):
        check_at_least(name.replace("_", "-"), getattr(args, name), low)
    check_between("threshold", args.threshold, 0.0, 1.0, "it is a probability of the positive class")
    r = write_report(args.run, args.out, split=args.split, groups=groups, methods=methods, maps=not args.no_maps,
                     n=args.top, top_issues=args.issues, thumb=args.thumb, max_points=args.points,
                     map_classes=args.map_classes, model=args.model, positive=args.positive, threshold=args.threshold,
                     device=None if args.no_maps else device_from_args(args), progress=not args.quiet)
    if args.json:
        print_json(r.summary())
    else:
        for note in r.notes:
            logging.getLogger("mikata").warning("note: %s", note)
        if r.cam_layer:
            from mikata.models.layers import describe_cam_layer

            print(describe_cam_layer(r.cam_layer, r.map_size))
        print(f"wrote {r.path} ({r.bytes / 1e6:.1f} MB, {r.images:,} images, {r.maps} maps) "
              f"in {r.timings['total']:.1f} s; open it in a browser (works offline)")
    maps_missing = not args.no_maps and any(n.startswith("attribution maps left out") for n in r.notes)
    thumbs_missing = any("could not be read" in n for n in r.notes)
    return 1 if maps_missing or thumbs_missing else 0  # written, but with maps or thumbnails missing
