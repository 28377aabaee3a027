"""`fracture-edge bench`: every artifact of a run folder measured side by side on real images.

--out (RUN/bench/ by default) is an existing folder a bench writes into, so it is locked, not claimed: a bench
holds an exclusive lock on OUT/.bench.lock from its start to its last file (the kernel drops it when the
process dies, even by kill -9), and a second bench into the same folder fails at once with one line. The
outputs (plots, bench.json, bench.md) are written into a hidden folder inside OUT and then moved in together
(renames need no space), so a full disk or a kill leaves the previous set whole, never new plots beside an
old bench.json; plots this run did not draw are removed, so the folder holds one bench.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the outputs are still moved in together)
    fcntl = None

from ..edge_runtime.atomic import FolderClaimError
from ..edge_runtime.bundle import input_contract, load_bundle
from ..edge_runtime.errors import FractureEdgeError
from ..edge_runtime.formats import FORMATS
from ..edge_runtime.progress import progress
from ..edge_runtime.environment import describe_environment, peak_rss_mb, usable_cores
from . import gating, plots, report as report_mod
from ..edge_runtime.image_set import ImageSet
from .images import SplitFacts, load_images, save_pixels
from .macs import count_model_macs
from .options import BenchOptions
from .results import REFERENCE_ORDER, accuracy_rows, skipped_row, speed_row
from .stats import percentile
from .shift_suite import shift_suite
from .runner import NO_TENSORFLOW, group_jobs, plan_jobs, run_group
from .targets import evaluate_targets
from .verdicts import read_export_report
from ..edge_runtime.bundle_schema import THRESHOLD_NAMES

log = logging.getLogger(__name__)
ORDER = {name: i for i, name in enumerate(FORMATS)}


def run_bench(options: BenchOptions, command: str = "") -> dict:
    """Measure every requested format; returns the report dict (see report.REPORT_KEYS)."""
    started = time.perf_counter()
    options = options.resolved()
    lock_out(options.out_dir())                     # at once, before minutes of measuring
    try:
        return _bench(options, command, started)
    except BaseException:
        unlock_out(options.out_dir())
        raise


def _bench(options: BenchOptions, command: str, started: float) -> dict:
    load_before = _load_average()
    run_dir = Path(options.run).resolve()
    bundle = load_bundle(run_dir)
    thresholds = {k: float(bundle["thresholds"][k]) for k in THRESHOLD_NAMES}
    images, facts = load_images(options.data, options.split, input_contract(bundle), options.sample)
    jobs, skipped = plan_jobs(options, run_dir)
    macs, macs_method = count_model_macs(run_dir)
    finished = measure(jobs, options, run_dir, images.pixels)
    rows = [speed_row(j, r, macs) for j, r in finished] + [skipped_row(s) for s in skipped]
    rows.sort(key=lambda r: (ORDER[r.format], r.label, r.threads or 0, r.batch or 0))
    accuracy = [a.to_dict() for a in accuracy_rows(finished, skipped, images.labels, thresholds, options.seed)]
    accuracy.sort(key=lambda r: (ORDER[r["format"]], r["label"]))
    reference = pick_reference_dict(accuracy)
    for row in accuracy:
        row["gate"] = gating.check_row(row, reference, images.labels, thresholds)
    report = {
        "schema": report_mod.SCHEMA,
        "environment": {**describe_environment(), "load_average": {"start": load_before, "end": _load_average()}},
        "run": _run_record(options, run_dir, bundle, images, facts, thresholds, command),
        "model": {"macs": macs, "macs_method": macs_method},
        "reference": reference["label"] if reference else None,
        "rows": [r.to_dict() for r in rows],
        "accuracy": accuracy,
        "gates": {"failures": gating.gate_failures(accuracy)},
        "shifts": shift_suite(finished, images.labels, thresholds, options.shifts, options.seed),
        "notes": [],
        "wall_s": time.perf_counter() - started,
        "bench_peak_rss_mb": round(peak_rss_mb(), 1),   # this (parent) process: images, report; not the rows
    }
    report["targets"] = [t.to_dict() for t in evaluate_targets(report)]
    report["notes"] = notes_for(report, options, skipped)
    report["heatmaps"] = heatmap_summary(run_dir)
    return report


def heatmap_summary(run_dir: Path) -> dict | None:
    """Heatmap fidelity and pointing game per artifact, as the export measured them (export_report.json)."""
    export = read_export_report(run_dir)
    heatmaps = export.get("heatmaps") if export else None
    if not isinstance(heatmaps, dict) or "keras" not in heatmaps:
        return None
    rows = {r.get("format"): r.get("facts", {}).get("heatmap") for r in export.get("rows", []) if isinstance(r, dict)}
    return {"source": "export_report.json", "date": export.get("date"), "keras": heatmaps["keras"],
            "formats": {name: facts for name, facts in rows.items() if facts}}


def measure(jobs: list, options: BenchOptions, run_dir: Path, pixels) -> list[tuple]:
    """Run every job group in its worker process; returns [(job, result)] in job order."""
    finished: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="fracture-edge-bench-") as tmp:
        images_file = save_pixels(pixels, Path(tmp))
        groups = group_jobs(jobs, options.quick)
        for i, group in enumerate(progress(groups, desc="bench", total=len(groups))):
            finished += zip(group, run_group(group, options, run_dir, images_file, Path(tmp), i))
    for job, result in finished:
        _log_job(job, result)
    return finished


def pick_reference_dict(accuracy: list[dict]) -> dict | None:
    """The accuracy row the others were compared with (same order as results.pick_reference)."""
    ok = {r["label"]: r for r in accuracy if r["status"] == "ok"}
    return next((ok[label] for label in REFERENCE_ORDER if label in ok), None)


def write_outputs(report: dict, out_dir: str | Path, with_plots: bool = True, drawers: dict | None = None,
                  write_report: Callable[[dict, Path], list[Path]] | None = None) -> list[Path]:
    """Plots (when matplotlib is installed), bench.json and bench.md, written together into out_dir under its
    lock (taken here when run_bench did not), then the lock is released; returns the paths in out_dir.
    drawers (file name -> draw) and write_report: another report's plots and files (several runs' compare)."""
    out_dir = Path(out_dir)
    lock_out(out_dir)
    try:
        with _staging(out_dir) as stage:
            written = plots.write_plots(report, stage, drawers) if with_plots else []
            report["plots"] = [p.name for p in written]
            if with_plots and importlib.util.find_spec("matplotlib") is None:
                report["notes"].append("Plots skipped: matplotlib not installed (pip install \".[plots]\").")
            written += (write_report or report_mod.write_report)(report, stage)
            for path in written:
                os.replace(path, out_dir / path.name)
            for name in sorted(set(drawers or plots.PLOT_NAMES) - set(report["plots"])):   # a plot of an earlier bench
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(out_dir / name)
        return [out_dir / p.name for p in written]
    finally:
        unlock_out(out_dir)


# ---- one bench at a time per output folder -------------------------------------------------------------------

LOCK_FILE = ".bench.lock"
STAGING_PREFIX = ".bench-partial-"
_held: dict[str, int] = {}            # realpath of an output folder -> fd of the lock this process holds on it


def lock_out(out_dir: str | Path) -> None:
    """Hold OUT/.bench.lock (exclusive, non-blocking) for this process; FolderClaimError at once, one line,
    when another bench holds it. Held already by this process: nothing to do. Leftovers of a killed bench
    (its hidden staging folder) are removed once the lock is ours."""
    out = Path(out_dir)
    key = os.path.realpath(out)
    if key in _held:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise FractureEdgeError(f"{out}: cannot lock the output folder ({exc.strerror or exc})") from None
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise FolderClaimError(f"{out}: another fracture-edge bench is writing this folder right now; wait for "
                                   "it to finish, or choose another --out") from None
    _held[key] = fd
    for leftover in out.glob(STAGING_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


def unlock_out(out_dir: str | Path) -> None:
    """Release the lock lock_out took (the lock file stays: removing it would let two benches lock two files)."""
    fd = _held.pop(os.path.realpath(Path(out_dir)), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


@contextlib.contextmanager
def _staging(out: Path):
    """A hidden folder inside `out` to write into; removed at the end. An OSError names the file in `out`."""
    try:
        stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    except OSError as exc:
        raise FractureEdgeError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    try:
        yield stage
    except OSError as exc:
        raise _named_in(exc, stage, out) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _named_in(exc: OSError, stage: Path, out: Path) -> OSError:
    named, prefix = os.fspath(exc.filename) if exc.filename is not None else "", os.fspath(stage)
    if not (named == prefix or named.startswith(prefix + os.sep)):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(out) + named[len(prefix):])


def _run_record(options: BenchOptions, run_dir: Path, bundle: dict, images: ImageSet, facts: SplitFacts,
                thresholds: dict, command: str) -> dict:
    return {
        "run_dir": str(run_dir), "data": str(options.data), "split": options.split, "command": command,
        "options": options.to_dict(), "formats": list(options.formats), "quick": options.quick,
        "sample": options.sample, "input_size": int(bundle["input"]["size"]), "thresholds": thresholds,
        "n_listed": facts.n_listed, "n_images": len(images.paths), "n_failed": len(images.failures),
        "failed_images": [{"path": p, "reason": r} for p, r in images.failures],
        "preprocess_ms": facts.preprocess_ms, "labels": images.labels.tolist(),
        "images": [_relative(p, options.data) for p in images.paths],
    }


def notes_for(report: dict, options: BenchOptions, skipped: list) -> list[str]:
    """Plain-language caveats for bench.md."""
    notes = []
    if any(s.reason == NO_TENSORFLOW for s in skipped):
        notes.append("Keras rows skipped: TensorFlow not installed (a device install has only the runtime; "
                     "agreement and ΔF1/ΔAUC are then against the first float artifact).")
    if any(r["details"].get("shared_process") for r in report["rows"] if r["status"] == "ok"):
        notes.append("--quick: the Keras paths of one thread count shared one process (one TensorFlow import "
                     "and model load), so only the first one's load time is real and their peak RSS is shared.")
    if options.quick:
        notes.append(f"--quick: {options.runs} timed runs, {report['run']['n_images']} sampled images: "
                     "smoke-test numbers, not a benchmark.")
    load = report["environment"]["load_average"]
    busiest = max(v for v in (load["start"], load["end"]) if v is not None) if any(load.values()) else None
    if busiest is not None and busiest > 0.5 * usable_cores():
        notes.append(f"The machine was busy (load average up to {busiest:.1f} on {usable_cores()} usable cores): "
                     "timings are noisy; compare rows within this run only.")
    if any((a.get("gate") or {}).get("reason") == gating.GATES_MISSING for a in report["accuracy"]):
        notes.append("Fidelity gates not checked: " + gating.GATES_MISSING + ".")
    notes.append("Numbers from different machines are never comparable; this report holds one device only.")
    return notes


def _log_job(job, result: dict) -> None:
    measured = (result.get("measurements") or [{}])[0]
    if measured.get("status") == "ok":
        log.info("%s threads=%d batch=%d: p50 %.1f ms (%d runs), %s", job.label, job.threads, job.batch,
                 percentile(measured["samples_ms"], 50), len(measured["samples_ms"]), measured["runtime"])
    else:
        log.warning("%s threads=%d batch=%d failed: %s", job.label, job.threads, job.batch,
                    measured.get("reason") or result.get("reason"))


def _relative(path: str, data: str) -> str:
    """An image path relative to the dataset folder (or the CSV's folder) when it lies inside it."""
    root = Path(data).resolve()
    root = root.parent if root.is_file() else root
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
