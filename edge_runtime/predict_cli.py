"""`fracture-edge predict` and `fracture-edge info`: classify radiographs on the device, describe a model.

Exit codes of predict: 0 every image classified, 2 some files failed (each reported once, the run goes on),
1 usage or model error. With --heatmaps, an image whose overlay cannot be drawn or written (a full disk) keeps
its prediction row; the overlay's failure is reported on stderr and in that row's error field, and the exit
is 2. Imports cheaply: the runtime is loaded inside the handlers.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass

from .formats import EXPORT_FORMATS, FORMAT_PREFERENCE

ROW_FIELDS = ("path", "label", "probability", "threshold_name", "threshold", "latency_ms", "in_distribution",
              "outside_training_data", "error")
PROGRESS_MIN_FILES = 20  # show a progress bar (on a terminal) from this many files on
MAX_THREADS = 256        # interpreter threads: more only exhausts the machine
MAX_BATCH = 256          # images decoded and held in memory at once
ALLOW_UNVERIFIED_HELP = ("run an artifact that no bundle.json records (a lone file with its embedded bundle); "
                         "a file that differs from its record is refused anyway")


def register(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict", help="classify X-ray images with an exported model (no TensorFlow needed)",
        description="Classify images (files, folders, globs) with a run folder, bundle.json or .tflite/.onnx file. "
                    "Exit 0: all classified; 2: some files failed (reported, the rest still classified); 1: usage/model error.")
    predict.add_argument("model", metavar="MODEL_OR_RUN", help="run folder, bundle.json, or a .tflite/.onnx artifact")
    predict.add_argument("paths", metavar="PATH", nargs="+", help="image files, folders or glob patterns")
    predict.add_argument("--format", choices=EXPORT_FORMATS, default=None,
                         help=f"artifact to use from a run folder (default: the first present of {', '.join(FORMAT_PREFERENCE)} "
                              "that an installed runtime can run)")
    predict.add_argument("--threshold", default=None, metavar="balanced|screening|FLOAT",
                         help="decision threshold: a name from bundle.json or a number in [0, 1] (default: the bundle's)")
    predict.add_argument("--threads", type=int, default=None, metavar="N", help="interpreter threads")
    predict.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per inference batch")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument("--csv", action="store_true", help="CSV with a header row")
    predict.add_argument("--recursive", action="store_true",
                         help="descend into sub-folders (and ** in globs); links to folders are not followed")
    predict.add_argument("--allow-unverified", action="store_true", help=ALLOW_UNVERIFIED_HELP)
    predict.add_argument("--heatmaps", metavar="DIR", default=None,
                         help="also write one overlay PNG per image into DIR: where the model looked (its class "
                              "activation map), with the probability, label and threshold name")
    predict.set_defaults(handler=run_predict)

    info = subparsers.add_parser("info", help="show a model's bundle: labels, thresholds, input, metrics, artifacts",
                                 description="Print the bundle and check every artifact's sha256 (exit 1 on a mismatch).")
    info.add_argument("model", metavar="MODEL_OR_RUN", help="run folder, bundle.json, or a .tflite/.onnx artifact")
    info.add_argument("--json", action="store_true", help="print the bundle and the artifact checks as JSON")
    info.add_argument("--allow-unverified", action="store_true", help=ALLOW_UNVERIFIED_HELP)
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    from .info import run_info as handler

    return handler(args)


def collect_images(patterns: list[str], recursive: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files, folders and globs into image paths (input order, no duplicates) + (arg, reason) problems."""
    from .decoding import IMAGE_SUFFIXES
    from .paths import find_images

    paths, problems = find_images(patterns, recursive, IMAGE_SUFFIXES)
    return paths, [(p.path, p.reason) for p in problems]


def shown(path: str) -> str:
    """A path as one printable line: control characters (a newline in a file name) escaped."""
    return path if path.isprintable() else path.encode("unicode_escape", "backslashreplace").decode("ascii")


@dataclass(frozen=True)
class OverlayFailure:
    """A classified image whose heatmap overlay could not be made: the prediction stands, the reason is told."""

    prediction: object        # classifier.Prediction
    reason: str               # without the image's path


class RowWriter:
    """Writes one result per line as text, JSON lines or CSV; failures also go to stderr."""

    def __init__(self, mode: str, out=None, err=None):
        self.mode, self.out, self.err = mode, out or sys.stdout, err or sys.stderr
        self.csv = csv.DictWriter(self.out, fieldnames=ROW_FIELDS, lineterminator="\n") if mode == "csv" else None
        if self.csv:
            _guarded(self.csv.writeheader)

    def write(self, result) -> None:
        _guarded(self._write, result)

    def _write(self, result) -> None:
        from .classifier import FileFailure

        if isinstance(result, (FileFailure, OverlayFailure)):
            path = result.path if isinstance(result, FileFailure) else result.prediction.path
            print(f"fracture-edge: {shown(path)}: {result.reason}", file=self.err)
            if isinstance(result, FileFailure) and self.mode == "text":
                return
        row = result_row(result)
        if self.mode == "json":
            print(json.dumps(row), file=self.out)
        elif self.csv:
            self.csv.writerow(row)
        else:
            outside = ", OUTSIDE the training data" if row["outside_training_data"] else ""
            print(f"{shown(row['path'])}: {row['label']} (p={row['probability']:.4f}, threshold "
                  f"{row['threshold_name']}={row['threshold']:.4f}, {row['latency_ms']:.1f} ms{outside})", file=self.out)
        self.out.flush()


def _guarded(write, *args) -> None:
    """Run a write to stdout/stderr; a full disk behind a redirect is one error line, not a traceback."""
    from .errors import FractureEdgeError

    try:
        write(*args)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise FractureEdgeError(f"standard output: cannot write the results ({exc.strerror or exc})") from None


def result_row(result) -> dict:
    """A Prediction, OverlayFailure or FileFailure as a row with every ROW_FIELDS key (None where it does not
    apply); an OverlayFailure is its prediction's row with the overlay's failure as the error."""
    from .classifier import FileFailure

    if isinstance(result, FileFailure):
        return {**dict.fromkeys(ROW_FIELDS), "path": result.path, "error": result.reason}
    reason = result.reason if isinstance(result, OverlayFailure) else None
    result = result.prediction if isinstance(result, OverlayFailure) else result
    return {"path": result.path, "label": result.label, "probability": round(result.probability, 6),
            "threshold_name": result.threshold_name, "threshold": result.threshold,
            "latency_ms": round(result.latency_ms, 3),
            "in_distribution": None if result.in_distribution is None else round(result.in_distribution, 4),
            "outside_training_data": result.outside_training_data, "error": reason}


def check_options(args: argparse.Namespace) -> str:
    """Validate option combinations; return the output mode."""
    if args.json and args.csv:
        raise ValueError("--json and --csv cannot be used together; choose one")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise ValueError(f"--threads must be between 1 and {MAX_THREADS}, got {args.threads}")
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise ValueError(f"--batch-size must be between 1 and {MAX_BATCH}, got {args.batch_size}")
    return "json" if args.json else "csv" if args.csv else "text"


def integrity_mode(args: argparse.Namespace) -> str:
    """The integrity rule the CLI applies (artifacts.INTEGRITY_MODES)."""
    return "allow-unverified" if getattr(args, "allow_unverified", False) else "require"


class HeatmapWriter:
    """predict --heatmaps DIR: one overlay PNG per classified image (the image is decoded again to draw on)."""

    def __init__(self, folder: str, clf):
        from pathlib import Path

        from .errors import FractureEdgeError

        if getattr(clf, "head", None) is not None:
            raise FractureEdgeError(f"{clf.path}: no heatmaps with an adapted head (bundle.json adapted_head): the "
                                    "model's heatmap explains the base head's decision; use the base run for heatmaps")
        if "heatmap" not in clf.extra_outputs:
            raise FractureEdgeError(f"{clf.path}: this model has no heatmap output (exported before heatmaps "
                                    "existed: re-export the run with this version)")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise FractureEdgeError(f"{folder}: --heatmaps needs a folder, and this is a file") from None
        self.taken: set[str] = set()
        self.written = 0

    def write(self, prediction):
        """Write the overlay; the prediction, or an OverlayFailure (the prediction and why there is no overlay)
        when the image cannot be decoded again or the overlay cannot be written."""
        from .classifier import failure_for
        from .decoding import decode_gray
        from .errors import FractureEdgeError
        from .heatmap import overlay_name, write_overlay

        target = self.folder / overlay_name(prediction.path, self.taken)
        try:
            write_overlay(target, decode_gray(prediction.path), prediction)
        except FractureEdgeError as exc:
            reason = failure_for(prediction.path, str(exc)).reason
            return OverlayFailure(prediction, f"classified, but its heatmap cannot be drawn: {reason}")
        except (OSError, MemoryError) as exc:
            where = getattr(exc, "filename", None) or target
            why = getattr(exc, "strerror", None) or str(exc) or "not enough memory"
            return OverlayFailure(prediction, f"classified, but its heatmap cannot be written: {where}: {why}")
        self.written += 1
        return prediction

    def log_summary(self) -> None:
        import logging

        logging.getLogger(__name__).info("wrote %d heatmap overlay(s) to %s", self.written, self.folder)


def run_predict(args: argparse.Namespace) -> int:
    from .classifier import FileFailure, batches, open_classifier
    from .errors import FractureEdgeError
    from .progress import progress

    mode = check_options(args)
    paths, problems = collect_images(args.paths, args.recursive)
    if not paths:
        reasons = "; ".join(f"{shown(p)}: {r}" for p, r in problems)
        raise FractureEdgeError(f"no images to classify ({reasons})")
    clf = open_classifier(args.model, num_threads=args.threads, threshold=args.threshold, format=args.format,
                          integrity=integrity_mode(args))
    overlays = HeatmapWriter(args.heatmaps, clf) if args.heatmaps else None
    writer = RowWriter(mode)
    failed = no_overlay = 0
    for arg, reason in problems:
        writer.write(FileFailure(arg, reason))
        failed += 1
    chunks = list(batches(paths, args.batch_size))
    show = sys.stderr.isatty() and len(paths) >= PROGRESS_MIN_FILES
    for chunk in progress(chunks, desc="predict", total=len(chunks), enabled=show):
        for result in clf.predict_batch(chunk, heatmap=overlays is not None):
            if overlays is not None and not isinstance(result, FileFailure):
                result = overlays.write(result)
            writer.write(result)
            failed += isinstance(result, FileFailure)
            no_overlay += isinstance(result, OverlayFailure)
    if overlays is not None:
        overlays.log_summary()
    if failed or no_overlay:
        heatmaps = f", {no_overlay} heatmap(s) not written" if no_overlay else ""
        print(f"fracture-edge: {len(paths) + len(problems) - failed} classified, {failed} failed{heatmaps}",
              file=sys.stderr)
    return 2 if failed or no_overlay else 0
