"""`fracture-edge adapt RUN --data LOCAL --out NEWRUN`: a head for a new site, fitted on the device (no TensorFlow)."""
from __future__ import annotations

import argparse

from ..formats import EXPORT_FORMATS, FORMAT_PREFERENCE


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "adapt", help="fit a new head on a site's labelled X-rays (a few dozen per class), without TensorFlow",
        description="Read the pooled features of the site's images from an exported artifact, fit a class-weighted "
                    "L2 logistic head (strength and thresholds by cross-validation) and write a new run folder "
                    "that predict, info, eval, bench and serve use as they are. Prints nested cross-validated "
                    "AUC, sensitivity and specificity (95 % CIs) beside the base model and a baseline fitted on "
                    "image statistics only, and warns when the head does not clearly beat that baseline. "
                    "Needs at least 10 images per class (25 recommended).")
    p.add_argument("run", metavar="RUN", help="the base run folder (exported with a features output)")
    p.add_argument("--data", required=True, metavar="LOCAL",
                   help="the site's labelled images: a folder with not_fractured/ and fractured/ sub-folders, or a split CSV")
    p.add_argument("--out", required=True, metavar="NEWRUN", help="the new run folder (must not exist or be empty)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default=None,
                   help=f"artifact whose features are used (default: the first present of {', '.join(FORMAT_PREFERENCE)} "
                        "that an installed runtime can run)")
    p.add_argument("--split", default=None, help="use only this split of a CSV (default: every row)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and the bootstrap (default 0)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="interpreter threads")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per inference batch")
    p.set_defaults(handler=run_adapt)


def run_adapt(args: argparse.Namespace) -> int:
    from .stage import AdaptOptions, adapt_run
    from ..confidence import format_ci
    from ..errors import FractureEdgeError

    if not 1 <= args.batch_size <= 256 or (args.threads is not None and not 1 <= args.threads <= 256):
        raise FractureEdgeError("--batch-size and --threads must be from 1 to 256")
    result = adapt_run(AdaptOptions(run=args.run, data=args.data, out=args.out, format=args.format, split=args.split,
                                    folds=args.folds, seed=args.seed, threads=args.threads, batch_size=args.batch_size))
    report, ev = result.report, result.report["evaluation"]
    print(f"adapted {report['base_run']} -> {result.out} on {report['counts']} images "
          f"({len(report['skipped'])} skipped), features from {report['format']}, C = {report['C']:.3g}")
    for name, key in (("adapted head", "adapted"), ("baseline (image statistics)", "baseline"),
                      ("base model, unchanged", "base_model")):
        entry = ev[key]
        print(f"  {name:28s} AUC {format_ci(entry['auc'])}; balanced sens {format_ci(entry['balanced']['sensitivity'])} "
              f"spec {format_ci(entry['balanced']['specificity'])}; screening sens "
              f"{format_ci(entry['screening']['sensitivity'])} spec {format_ci(entry['screening']['specificity'])}")
    print(f"  thresholds: balanced {report['thresholds']['balanced']:.3f}, screening {report['thresholds']['screening']:.3f}"
          f"; {ev['method']}; report: {result.out / 'adapt_report.md'}")
    verdict = "beats" if ev["beats_baseline"] else "does NOT clearly beat"
    print(f"  verdict: the adapted head {verdict} the image-statistics baseline ({ev['rule']})")
    print("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items()))
    return 0
