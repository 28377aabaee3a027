"""`fracture-edge data check | split`: dataset leakage report and leak-free split (no TensorFlow)."""
from __future__ import annotations

import argparse

LEAK_EXIT_CODE = 3
DEFAULT_NEAR_THRESHOLD = 32      # keep equal to hashing.NEAR_THRESHOLD (this module imports argparse only)


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="check a dataset for leakage; write a leak-free split",
                                 description="Dataset tools: leakage check and leak-free split.")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.set_defaults(handler=lambda args: _no_subcommand(data))
    _add_check(commands)
    _add_split(commands)


def _add_check(commands) -> None:
    p = commands.add_parser(
        "check", help="counts, unreadable files, exact/near duplicates and train leaks",
        description="Report counts per split and class, unreadable files, exact duplicates (decoded pixels) and "
                    "near duplicates (flips, 90° turns, small rotations, re-encoding) within and across splits.")
    p.add_argument("source", metavar="DIR_OR_CSV", help="dataset folder (split/class/image) or split CSV")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--strict", action="store_true",
                   help=f"exit {LEAK_EXIT_CODE} when any val/test image has an exact or near copy in train")
    p.add_argument("--near-threshold", type=int, default=DEFAULT_NEAR_THRESHOLD, metavar="N",
                   help="max dHash distance (of 256 bits) for a near-duplicate candidate "
                        f"(default {DEFAULT_NEAR_THRESHOLD}); candidates are confirmed by aligned correlation")
    p.set_defaults(handler=run_check)


def _add_split(commands) -> None:
    p = commands.add_parser(
        "split", help="write a grouped, stratified, leak-free split CSV",
        description="Group exact/near duplicates (connected components) so no group crosses splits, then "
                    "assign groups to train/val/test stratified by class. Writes path,label,split,group.")
    p.add_argument("source", metavar="DIR_OR_CSV", help="dataset folder or CSV (its split column is ignored)")
    p.add_argument("--out", required=True, help="split CSV to write (atomically)")
    p.add_argument("--val", type=float, default=0.15, help="validation fraction (default 0.15)")
    p.add_argument("--test", type=float, default=0.15, help="test fraction (default 0.15)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--near-threshold", type=int, default=DEFAULT_NEAR_THRESHOLD, metavar="N",
                   help=f"max dHash distance for a near-duplicate candidate (default {DEFAULT_NEAR_THRESHOLD})")
    p.set_defaults(handler=run_split)


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


def run_check(args) -> int:
    import json
    import sys

    from ..edge_runtime.dataset import read_dataset
    from .data_check import check_samples

    report = check_samples(read_dataset(args.source), near_threshold=args.near_threshold)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(report.summary_lines()))
    return LEAK_EXIT_CODE if args.strict and report.leak_count else 0


def run_split(args) -> int:
    from ..edge_runtime.dataset import read_dataset, require_both_classes
    from .data_check import check_samples
    from .data_split import SplitOptions, assign_splits, split_counts, write_split_csv

    options = SplitOptions(val=args.val, test=args.test, seed=args.seed)
    options.fractions()
    samples = read_dataset(args.source)
    require_both_classes(samples, str(args.source))
    report = check_samples(samples, near_threshold=args.near_threshold)
    rows = assign_splits(report, options)
    write_split_csv(rows, args.out)
    for path, reason in report.unreadable:
        print(f"skipped {path}: {reason}")
    groups = len({r.group for r in rows})
    print(f"wrote {args.out}: {len(rows)} images in {groups} groups "
          f"({len(report.exact_pairs)} exact and {len(report.near_pairs)} near duplicate pairs kept together)")
    for split, by_label in split_counts(rows).items():
        print(f"  {split:<6} " + "  ".join(f"{label} {n}" for label, n in by_label.items()))
    return 0
