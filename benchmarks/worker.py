"""One benchmark subprocess: `python -m fracture_edge.benchmarks.worker RESULT.json` reads a JSON job on stdin.

Each artifact runs in a fresh process so its peak RSS (getrusage ru_maxrss) holds only that model.
The job names the artifact, the measurements (threads, batch), warm-up/runs/time budget, and where the
preprocessed images are (.npy, uint8 N x S x S x 3). The result is written atomically to RESULT.json:
runtime, baseline RSS, per measurement load/first-inference time, latency samples, peak RSS, and the
probabilities of the accuracy pass (batch 1, after the latency measurements so the images do not
inflate the memory figures).
"""
from __future__ import annotations

import json
import logging
import resource
import sys
import time
import traceback

import numpy as np

from ..edge_runtime import atomic

log = logging.getLogger("fracture_edge.benchmarks.worker")

MIN_RUNS = 5  # a time budget never cuts a measurement below this many timed runs


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)


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
    images = np.load(job["images"], mmap_mode="r")
    result = {"rss_baseline_mb": peak_rss_mb(), "measurements": [], "accuracy": None}
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
    result["tensorflow_loaded"] = "tensorflow" in sys.modules  # a device row must never need TensorFlow
    return result


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
