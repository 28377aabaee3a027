"""One benchmark subprocess: `python -m fracture_edge.benchmarks.worker RESULT.json` reads a JSON job on stdin.

Each artifact runs in a fresh process so its memory figures hold only that model and its runtime.
The job names the artifact, the measurements (threads, batch), warm-up/runs/time budget, and where the
preprocessed images are (.npy, uint8 N x S x S x 3). The result is written atomically to RESULT.json:
runtime, the runtime's baseline RSS (its library imported, no model), per measurement load/first-inference
time, the RSS after load and first inference (minus the baseline: the model's own share), latency samples,
the process's peak RSS, and the probabilities of the accuracy pass (batch 1, after the latency
measurements so the images do not inflate the memory figures) and, when the job names shifts
(`bench --shifts`), one more such pass per shift on the images shifted here (edge_runtime.shifts, seeded).

Peak RSS is this process's own high-water mark (VmHWM), not getrusage's ru_maxrss: a child's
ru_maxrss starts at its parent's peak, so every row used to show the bench process's 389.6 MB.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback

import numpy as np

from ..edge_runtime import atomic
from ..edge_runtime.environment import peak_rss_mb as _peak_rss_mb, rss_mb as _rss_mb

log = logging.getLogger("fracture_edge.benchmarks.worker")

MIN_RUNS = 5  # a time budget never cuts a measurement below this many timed runs


def peak_rss_mb() -> float:
    """This process's own peak resident set size so far, in MiB."""
    return round(_peak_rss_mb(), 1)


def rss_mb() -> float | None:
    """This process's resident set size now, in MiB (None where /proc is missing)."""
    now = _rss_mb()
    return None if now is None else round(now, 1)


def time_calls(predict, pixels: np.ndarray, count: int, budget_s: float, min_count: int = 0) -> list[float]:
    """Call predict(pixels) up to `count` times (at least min_count) within budget_s; per-call ms."""
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        predict(pixels)
        samples.append((time.perf_counter() - t0) * 1000.0)
        if len(samples) >= min_count and time.perf_counter() - started > budget_s:
            break
    return samples


def latency_input(images: np.ndarray, batch: int) -> np.ndarray:
    """The first `batch` real images (cycled when there are fewer), as a contiguous in-memory array."""
    index = np.arange(batch) % len(images)
    return np.ascontiguousarray(images[index])


def run_measurement(job: dict, images: np.ndarray, threads: int, batch: int) -> tuple[dict, object]:
    """Load, first inference, warm-up and timed runs for one (threads, batch); returns (record, predictor)."""
    from .predictors import load_predictor

    record = {"threads": threads, "batch": batch}
    t0 = time.perf_counter()
    predictor = load_predictor(job, threads)
    record["load_ms"] = (time.perf_counter() - t0) * 1000.0
    pixels = latency_input(images, batch)
    t0 = time.perf_counter()
    predictor.predict(pixels)
    record["first_ms"] = (time.perf_counter() - t0) * 1000.0
    record["rss_loaded_mb"] = rss_mb()   # model loaded and run once (its arena allocated), input batch included
    budget = float(job.get("budget_s", 60.0))
    warm = time_calls(predictor.predict, pixels, int(job["warmup"]), budget / 4.0)
    samples = time_calls(predictor.predict, pixels, int(job["runs"]), budget, MIN_RUNS)
    record.update(runtime=predictor.runtime, details=predictor.details, warmup_done=len(warm),
                  samples_ms=samples, peak_rss_mb=peak_rss_mb(), status="ok")
    return record, predictor


def run_accuracy(predictor, images: np.ndarray) -> dict:
    """Every image through the predictor one at a time (batch 1): probabilities and the time taken."""
    t0 = time.perf_counter()
    probs = [float(predictor.predict(np.ascontiguousarray(images[i:i + 1]))[0]) for i in range(len(images))]
    return {"probs": probs, "seconds": time.perf_counter() - t0, "status": "ok"}


def run_job(job: dict) -> dict:
    """Run every measurement of a job (a failure is recorded, never raised), then the accuracy pass.

    Measurements may override job fields (threads, batch, keras_mode); one flagged 'accuracy' keeps
    its predictor for the accuracy pass, which runs last so the images never count in peak RSS.
    """
    from .predictors import import_runtime

    images = np.load(job["images"], mmap_mode="r")
    try:
        import_runtime(job)
    except Exception:  # the measurement below fails with the reason
        log.debug("runtime import failed:\n%s", traceback.format_exc())
    result = {"rss_baseline_mb": rss_mb(), "measurements": [], "accuracy": None}
    predictor_for_accuracy, wants_accuracy = None, False
    for spec in job["measurements"]:
        wants_accuracy = wants_accuracy or bool(spec.get("accuracy"))
        try:
            record, predictor = run_measurement({**job, **spec}, images, int(spec["threads"]), int(spec["batch"]))
        except Exception as exc:  # keep the row with the reason
            record, predictor = {**spec, "status": "failed", "reason": _reason(exc)}, None
            log.debug("measurement failed:\n%s", traceback.format_exc())
        result["measurements"].append(record)
        if spec.get("accuracy"):
            predictor_for_accuracy = predictor or record.get("reason")
    if wants_accuracy:
        result["accuracy"] = _accuracy_or_failure(predictor_for_accuracy, images)
        if result["accuracy"]["status"] == "ok" and job.get("shifts"):
            result["shifts"] = run_shifts(predictor_for_accuracy, images, job["shifts"], int(job.get("seed", 0)))
    result["tensorflow_loaded"] = "tensorflow" in sys.modules  # a device row must never need TensorFlow
    result["python"] = {"version": sys.version.split()[0], "executable": sys.executable, "numpy": np.__version__}
    return result


def run_shifts(predictor, images: np.ndarray, names: list[str], seed: int) -> dict:
    """The accuracy pass again on each shifted copy of the images, one shift in memory at a time; a shift
    that fails is recorded with its reason and the others still run."""
    from ..edge_runtime.shifts import apply_shift

    out = {}
    for name in names:
        try:
            out[name] = run_accuracy(predictor, apply_shift(name, np.asarray(images), seed))
        except Exception as exc:
            out[name] = {"status": "failed", "reason": _reason(exc)}
    return out


def _accuracy_or_failure(predictor, images: np.ndarray) -> dict:
    """The accuracy pass, or why it could not run (`predictor` is then the measurement's failure reason)."""
    if predictor is None or isinstance(predictor, str):
        return {"status": "failed", "reason": f"accuracy pass not run: {predictor or 'the model did not load'}"}
    try:
        return run_accuracy(predictor, images)
    except Exception as exc:
        return {"status": "failed", "reason": _reason(exc)}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m fracture_edge.benchmarks.worker RESULT.json < job.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    job = json.load(sys.stdin)
    atomic.write_json(argv[0], run_job(job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
