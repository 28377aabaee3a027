"""`fracture-edge predict` and `fracture-edge info`: classify radiographs on the device, describe a model.

Exit codes of predict: 0 every image classified, 2 some files failed (each reported, the run goes on),
1 usage or model error. Imports cheaply: the runtime is loaded inside the handlers.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
from pathlib import Path

from .formats import EXPORT_FORMATS

ROW_FIELDS = ("path", "label", "probability", "threshold_name", "threshold", "latency_ms", "error")
PROGRESS_MIN_FILES = 20  # show a progress bar (on a terminal) from this many files on
GLOB_CHARS = "*?["


def register(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict", help="classify X-ray images with an exported model (no TensorFlow needed)",
        description="Classify images (files, folders, globs) with a run folder, bundle.json or .tflite/.onnx file. "
                    "Exit 0: all classified; 2: some files failed (reported, the rest still classified); 1: usage/model error.")
    predict.add_argument("model", metavar="MODEL_OR_RUN", help="run folder, bundle.json, or a .tflite/.onnx artifact")
    predict.add_argument("paths", metavar="PATH", nargs="+", help="image files, folders or glob patterns")
    predict.add_argument("--format", choices=EXPORT_FORMATS, default=None,
                         help="artifact to use from a run folder (default: tflite-int8 if present)")
    predict.add_argument("--threshold", default=None, metavar="balanced|screening|FLOAT",
                         help="decision threshold: a name from bundle.json or a number in [0, 1] (default: the bundle's)")
    predict.add_argument("--threads", type=int, default=None, metavar="N", help="interpreter threads")
    predict.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per inference batch")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument("--csv", action="store_true", help="CSV with a header row")
    predict.add_argument("--recursive", action="store_true", help="descend into sub-folders (and ** in globs)")
    predict.set_defaults(handler=run_predict)

    info = subparsers.add_parser("info", help="show a model's bundle: labels, thresholds, input, metrics, artifacts",
                                 description="Print the bundle and check every artifact's sha256 (exit 1 on a mismatch).")
    info.add_argument("model", metavar="MODEL_OR_RUN", help="run folder, bundle.json, or a .tflite/.onnx artifact")
    info.add_argument("--json", action="store_true", help="print the bundle and the artifact checks as JSON")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    from .info import run_info as handler

    return handler(args)


def collect_images(patterns: list[str], recursive: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files, folders and globs into image paths (input order, no duplicates) + (arg, reason) problems."""
    from .decoding import IMAGE_SUFFIXES

    found: dict[str, None] = {}
    problems: list[tuple[str, str]] = []
    for pattern in patterns:
        is_glob = any(c in pattern for c in GLOB_CHARS) and not Path(pattern).exists()
        matches = sorted(glob.glob(pattern, recursive=recursive)) if is_glob else [pattern]
        if not matches:
            problems.append((pattern, "no file matches this pattern"))
        for match in matches:
            path = Path(match)
            if not path.is_dir():
                if not (is_glob and path.suffix.lower() not in IMAGE_SUFFIXES):
                    found.setdefault(str(path), None)  # explicit files go to the decoder, which says what is wrong
                continue
            images = folder_images(path, recursive, IMAGE_SUFFIXES)
            if not images:
                problems.append((str(path), f"no images in this folder ({'/'.join(IMAGE_SUFFIXES)})"
                                 + ("" if recursive else "; add --recursive for sub-folders")))
            found.update(dict.fromkeys(images))
    return list(found), problems


def folder_images(folder: Path, recursive: bool, suffixes: tuple[str, ...]) -> list[str]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(p) for p in files if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


class RowWriter:
    """Writes one result per line as text, JSON lines or CSV; failures also go to stderr."""

    def __init__(self, mode: str, out=None, err=None):
        self.mode, self.out, self.err = mode, out or sys.stdout, err or sys.stderr
        self.csv = csv.DictWriter(self.out, fieldnames=ROW_FIELDS, lineterminator="\n") if mode == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, result) -> None:
        from .classifier import FileFailure

        if isinstance(result, FileFailure):
            print(f"fracture-edge: {result.path}: {result.reason}", file=self.err)
            if self.mode == "text":
                return
        row = result_row(result)
        if self.mode == "json":
            print(json.dumps(row), file=self.out)
        elif self.csv:
            self.csv.writerow(row)
        else:
            print(f"{row['path']}: {row['label']} (p={row['probability']:.4f}, threshold "
                  f"{row['threshold_name']}={row['threshold']:.4f}, {row['latency_ms']:.1f} ms)", file=self.out)
        self.out.flush()


def result_row(result) -> dict:
    """A Prediction or FileFailure as a row with every ROW_FIELDS key (None where it does not apply)."""
    from .classifier import FileFailure

    if isinstance(result, FileFailure):
        return {**dict.fromkeys(ROW_FIELDS), "path": result.path, "error": result.reason}
    return {"path": result.path, "label": result.label, "probability": round(result.probability, 6),
            "threshold_name": result.threshold_name, "threshold": result.threshold,
            "latency_ms": round(result.latency_ms, 3), "error": None}


def check_options(args: argparse.Namespace) -> str:
    """Validate option combinations; return the output mode."""
    if args.json and args.csv:
        raise ValueError("--json and --csv cannot be used together; choose one")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    return "json" if args.json else "csv" if args.csv else "text"


def run_predict(args: argparse.Namespace) -> int:
    from .classifier import FileFailure, batches, open_classifier
    from .errors import FractureEdgeError
    from .progress import progress

    mode = check_options(args)
    paths, problems = collect_images(args.paths, args.recursive)
    if not paths:
        reasons = "; ".join(f"{p}: {r}" for p, r in problems)
        raise FractureEdgeError(f"no images to classify ({reasons})")
    clf = open_classifier(args.model, num_threads=args.threads, threshold=args.threshold, format=args.format)
    writer = RowWriter(mode)
    failed = 0
    for arg, reason in problems:
        writer.write(FileFailure(arg, reason))
        failed += 1
    chunks = list(batches(paths, args.batch_size))
    show = sys.stderr.isatty() and len(paths) >= PROGRESS_MIN_FILES
    for chunk in progress(chunks, desc="predict", total=len(chunks), enabled=show):
        for result in clf.predict_batch(chunk):
            writer.write(result)
            failed += isinstance(result, FileFailure)
    if failed:
        print(f"fracture-edge: {len(paths) + len(problems) - failed} classified, {failed} failed", file=sys.stderr)
    return 2 if failed else 0
