"""Plan the benchmark rows and run each one in its own worker subprocess (clean memory figures)."""
from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ..edge_runtime.formats import FORMATS
from .options import BenchOptions
from .predictors import KERAS_MODES

log = logging.getLogger(__name__)

WORKER_MODULE = "fracture_edge.benchmarks.worker"
ACCURACY_KERAS_MODE = "tf.function"  # the fastest Keras path runs the Keras accuracy pass
REJECTED_DIR = "rejected"  # where `fracture-edge export` moves artifacts that failed their gate
NO_TENSORFLOW = "TensorFlow not installed (pip install \".[train]\"); Keras rows skipped"


@dataclass(frozen=True)
class Job:
    label: str              # row name: "tflite-int8", "keras (eager)"
    format: str
    backend: str            # classifier | keras
    artifact: str
    threads: int
    batch: int
    keras_mode: str | None = None
    accuracy: bool = False  # this job also runs the accuracy pass (one job per format)
    tflite_runtime: str | None = None  # pin the TFLite interpreter by distribution name (extra rows)
    rejected: bool = False  # the artifact failed its export gate; loaded from RUN/rejected/ with its embedded bundle
    python: str | None = None  # the worker's interpreter (--worker-python), e.g. a venv holding tflite-runtime


@dataclass(frozen=True)
class Skipped:
    label: str
    format: str
    status: str             # missing | skipped
    reason: str


def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def keras_label(mode: str) -> str:
    return f"keras ({mode})"


def extra_tflite_runtimes() -> tuple[str, ...]:
    """Legacy `tflite-runtime` gets its own rows when installed beside LiteRT (which the runtime prefers)."""
    both = all(importlib.util.find_spec(m) is not None for m in ("ai_edge_litert", "tflite_runtime"))
    return ("tflite-runtime",) if both else ()


def runtime_rows(options: BenchOptions) -> dict[str, str | None]:
    """Extra TFLite runtimes to measure -> the Python that runs their worker (None: this one). --worker-python
    wins over a runtime installed here, so `tflite-runtime`, which needs numpy<2, gets its rows from its own venv."""
    rows: dict[str, str | None] = {dist: None for dist in extra_tflite_runtimes()}
    rows.update(dict(options.worker_pythons))
    return rows


def plan_jobs(options: BenchOptions, run_dir: Path, have_tf: bool | None = None) -> tuple[list[Job], list[Skipped]]:
    """One job per (row, threads, batch); missing artifacts and unavailable runtimes become Skipped rows."""
    have_tf = tensorflow_available() if have_tf is None else have_tf
    jobs: list[Job] = []
    skipped: list[Skipped] = []
    for name in options.formats:
        fmt = FORMATS[name]
        artifact = run_dir / fmt.filename
        labels = [keras_label(m) for m in KERAS_MODES] if name == "keras" else [name]
        if name == "keras" and not have_tf:
            skipped += [Skipped(label, name, "skipped", NO_TENSORFLOW) for label in labels]
        elif not artifact.is_file() and options.include_rejected and (run_dir / REJECTED_DIR / fmt.filename).is_file():
            jobs += _artifact_jobs(name, str(run_dir / REJECTED_DIR / fmt.filename), options, rejected=True)
        elif not artifact.is_file():
            reason = _missing_reason(run_dir, name)
            skipped += [Skipped(label, name, "missing", reason) for label in labels]
        else:
            jobs += _artifact_jobs(name, str(artifact), options)
    return jobs, skipped


def _artifact_jobs(name: str, artifact: str, options: BenchOptions, rejected: bool = False) -> list[Job]:
    """The jobs of one artifact file, then the same under each extra TFLite runtime when it is a .tflite."""
    extra = runtime_rows(options).items() if FORMATS[name].backend == "tflite" else ()
    jobs = []
    for dist, python in [(None, None), *extra]:
        notes = ", ".join(note for note in ("rejected" if rejected else None, dist) if note)
        jobs += [replace(job, label=f"{name} ({notes})" if notes else job.label, rejected=rejected,
                         tflite_runtime=dist, python=python) for job in _format_jobs(name, artifact, options)]
    return jobs


def _missing_reason(run_dir: Path, name: str) -> str:
    filename = FORMATS[name].filename
    if (run_dir / REJECTED_DIR / filename).is_file():
        return (f"{filename} was rejected by the export fidelity verdict (see {REJECTED_DIR}/ and the export report; "
                "--include-rejected measures it anyway)")
    stage = "train" if name == "keras" else "export"
    return f"{filename} not found in {run_dir} (written by `fracture-edge {stage}`)"


def _format_jobs(name: str, artifact: str, options: BenchOptions) -> list[Job]:
    accuracy_setting = (max(options.threads), min(options.batches))
    modes = KERAS_MODES if name == "keras" else (None,)
    jobs = []
    for mode in modes:
        for threads in options.threads:
            for batch in options.batches:
                runs_accuracy = (threads, batch) == accuracy_setting and mode in (None, ACCURACY_KERAS_MODE)
                jobs.append(Job(keras_label(mode) if mode else name, name, "keras" if mode else "classifier",
                                artifact, threads, batch, mode, runs_accuracy))
    return jobs


def group_jobs(jobs: list[Job], quick: bool) -> list[list[Job]]:
    """One process per job; with --quick the Keras paths of one thread count share a process
    (one TensorFlow import and model load instead of three), which the report then notes."""
    if not quick:
        return [[job] for job in jobs]
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        key = (job.format, job.threads) if job.backend == "keras" else (id(job),)
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def run_group(jobs: list[Job], options: BenchOptions, run_dir: Path, images_file: Path, workdir: Path,
              index: int) -> list[dict]:
    """Run jobs of one artifact in a fresh `python -m fracture_edge.benchmarks.worker`; one result per job."""
    first = jobs[0]
    payload = {"format": first.format, "backend": first.backend, "artifact": first.artifact,
               "tflite_runtime": first.tflite_runtime, "rejected": first.rejected, "run_dir": str(run_dir), "images": str(images_file),
               "integrity": options.integrity,
               "warmup": options.warmup, "runs": options.runs, "budget_s": options.budget_s,
               "shifts": list(options.shifts) if any(j.accuracy for j in jobs) else [], "seed": options.seed,
               "measurements": [{"label": j.label, "threads": j.threads, "batch": j.batch,
                                 "keras_mode": j.keras_mode, "accuracy": j.accuracy} for j in jobs]}
    timeout_s = options.job_timeout_s * (1 + len(payload["shifts"]))   # each shift is one more accuracy pass
    result = _run_worker(payload, workdir / f"result-{index:03d}.json", timeout_s, first.python)
    if result.get("worker_failed"):
        return [result] * len(jobs)
    shared = len(jobs) > 1
    out = []
    for i, (job, measured) in enumerate(zip(jobs, result["measurements"])):
        if i and measured.get("status") == "ok":  # the model was loaded once, by the first job
            measured = {**measured, "load_ms": None, "rss_loaded_mb": None}
        out.append({**result, "measurements": [measured], "shared_process": shared,
                    "accuracy": result["accuracy"] if job.accuracy else None,
                    "shifts": result.get("shifts") if job.accuracy else None})
    return out


def _run_worker(payload: dict, result_file: Path, timeout_s: float, python: str | None = None) -> dict:
    command = [python or sys.executable, "-m", WORKER_MODULE, str(result_file)]
    try:
        proc = subprocess.run(command, input=json.dumps(payload), capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return _failure(f"timed out after {timeout_s:.0f} s (raise the limit or lower --runs)")
    if proc.returncode != 0 or not result_file.is_file():
        return _failure(_describe_exit(proc.returncode, proc.stderr))
    result = json.loads(result_file.read_text(encoding="utf-8"))
    result["stderr_tail"] = proc.stderr[-2000:]
    return result


def _failure(reason: str) -> dict:
    return {"worker_failed": True, "reason": reason, "measurements": [], "accuracy": None}


def _describe_exit(returncode: int, stderr: str) -> str:
    lines = [line for line in (stderr or "").strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "no error output"
    if returncode < 0:
        return f"worker crashed (signal {-returncode}); last output: {last}"[:500]
    return f"worker exited with status {returncode}: {last}"[:500]
