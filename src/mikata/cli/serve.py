"""mikata serve RUN_DIR: a local web app over a scanned run (dashboard, confusion grid, maps on demand)."""

from __future__ import annotations

from mikata.cli.common import add_device_arguments, announce_run_preprocessing, command_parser, device_from_args


def register(sub) -> None:
    p = command_parser(sub, "serve", "Open a scanned run in a local web app: dashboard, confusion matrix linked to "
                       "image grids, per-class best/worst, any map for any image and class on demand, label-error "
                       "review (CSV export), embedding scatter, feature-visualization gallery. Prints a URL with a "
                       "token; binds 127.0.0.1 only unless --host says otherwise.",
                       "mikata serve runs/fashion --port 8765")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--port", type=int, default=8765,
                   help="port to listen on; the next free one if taken (default 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only; anything else prints a warning)")
    p.add_argument("--model", default=None,
                   help="the model the run was scanned with, if its stored spec does not resolve from here "
                        "(its weights must be the same)")
    p.add_argument("--positive", default=None, metavar="CLASS",
                   help="the class whose precision-recall and ROC curves the dashboard shows with a threshold slider "
                        "(default on a two-class run: the minority class; on more classes: its one-vs-rest curves)")
    p.add_argument("--split", default=None,
                   help="show only the rows of this split (e.g. test), as `mikata audit --split` does")
    p.add_argument("--compare", default=None, metavar="RUN_B",
                   help="a second run to compare this one with (its shared images): a Compare page with the paired "
                        "numbers and the fixed / broken images, and both models' maps on each image page")
    p.add_argument("--compare-model", default=None, metavar="SPEC",
                   help="RUN_B's model, when the one recorded beside it is not found (its weights must be the same)")
    add_device_arguments(p)
    browser = p.add_mutually_exclusive_group()
    browser.add_argument("--browser", dest="browser", action="store_true", help="open the URL in a web browser")
    browser.add_argument("--no-browser", dest="browser", action="store_false", help="do not open a browser (default)")
    p.set_defaults(func=run, browser=False)


def run(args) -> int:
    from mikata.server.launch import serve

    announce_run_preprocessing(args, args.run)  # maps and the model's view of an image redo it
    serve(args.run, host=args.host, port=args.port, open_browser=args.browser, model=args.model,
          device=device_from_args(args), positive=args.positive, split=args.split, compare=args.compare,
          compare_model=args.compare_model)
    return 0
