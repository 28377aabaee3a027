"""Turn worker results into report rows: one speed row per (format, threads, batch), one accuracy row per format."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..edge_runtime.confidence import has_both_classes, metric_cis, paired_auc_difference
from . import stats
from .runner import Job, Skipped

REFERENCE_ORDER = ("keras (tf.function)", "keras (predict)", "keras (eager)", "tflite-fp32", "onnx-fp32",
                   "tflite-fp16")


@dataclass(frozen=True)
class BenchRow:
    """Speed and memory of one artifact at one (threads, batch); kept with its reason when it failed."""
    label: str
    format: str
    status: str                        # ok | failed | missing | skipped
    reason: str = ""
    runtime: str = ""
    threads: int | None = None
    batch: int | None = None
    file: str = ""
    file_bytes: int | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    latency: dict | None = None        # stats.latency_summary: runs, p50_ms, p90_ms, mean_ms, std_ms, images_per_s
    gmacs_per_s: float | None = None
    peak_rss_mb: float | None = None       # the worker process's own peak while running this model
    rss_baseline_mb: float | None = None   # the worker's RSS with the runtime library imported, no model
    model_rss_mb: float | None = None      # RSS after load + first inference minus that baseline: the model's share
    details: dict = field(default_factory=dict)   # runtime settings, artifact, tensorflow_loaded
    samples_ms: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AccuracyRow:
    """Accuracy of one format on the real images at the bundle's thresholds, against the reference."""
    label: str
    format: str
    status: str
    reason: str = ""
    runtime: str = ""
    file_bytes: int | None = None
    summary: dict | None = None        # stats.accuracy_summary: n, auc, balanced{...}, screening{...}
    ci: dict | None = None             # confidence.metric_cis: 95 % CIs of AUC and the rates at both thresholds
    reference: str | None = None
    vs_reference: dict | None = None   # agreement, max_abs_diff, mean_abs_diff, delta_f1, delta_auc, auc_difference
    gate: dict | None = None           # filled by gating.check_row
    seconds: float | None = None
    roc: dict | None = None
    probs: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def speed_row(job: Job, result: dict, macs: int | None) -> BenchRow:
    """The speed row of a finished (or failed) job."""
    base = dict(label=job.label, format=job.format, threads=job.threads, batch=job.batch,
                file=Path(job.artifact).name, file_bytes=Path(job.artifact).stat().st_size)
    measured = result["measurements"][0] if result.get("measurements") else None
    if measured is None:
        return BenchRow(status="failed", reason=result.get("reason", "no measurement came back"), **base)
    if measured.get("status") != "ok":
        return BenchRow(status="failed", reason=measured.get("reason", "unknown failure"), **base)
    latency = stats.latency_summary(measured["samples_ms"], job.batch)
    return BenchRow(status="ok", runtime=measured["runtime"], load_ms=measured["load_ms"],
                    first_ms=measured["first_ms"], latency=latency,
                    gmacs_per_s=stats.gmacs_per_s(macs, latency["images_per_s"]),
                    peak_rss_mb=measured["peak_rss_mb"], rss_baseline_mb=result.get("rss_baseline_mb"),
                    model_rss_mb=model_share(measured.get("rss_loaded_mb"), result.get("rss_baseline_mb")),
                    details={**measured.get("details", {}), "tensorflow_loaded": result.get("tensorflow_loaded"),
                             "python": result.get("python"),
                             "shared_process": bool(result.get("shared_process"))},
                    samples_ms=measured["samples_ms"], **base)


def model_share(loaded_mb: float | None, baseline_mb: float | None) -> float | None:
    """RSS after load + first inference minus the runtime's baseline (None when either is unknown)."""
    if loaded_mb is None or baseline_mb is None:
        return None
    return round(loaded_mb - baseline_mb, 1)


def skipped_row(skip: Skipped) -> BenchRow:
    return BenchRow(label=skip.label, format=skip.format, status=skip.status, reason=skip.reason)


def accuracy_rows(finished: list[tuple[Job, dict]], skipped: list[Skipped], labels: np.ndarray,
                  thresholds: dict, seed: int = 0) -> list[AccuracyRow]:
    """One row per format that ran its accuracy pass, compared with the reference; skipped ones kept."""
    rows = [_accuracy_row(job, result, labels, thresholds, seed) for job, result in finished if job.accuracy]
    seen = {r.label for r in rows}
    rows += [AccuracyRow(s.label, s.format, s.status, s.reason) for s in skipped
             if s.label not in seen and (s.format != "keras" or s.label == "keras (tf.function)")]
    return with_reference(rows, labels, thresholds, seed)


def _accuracy_row(job: Job, result: dict, labels: np.ndarray, thresholds: dict, seed: int = 0) -> AccuracyRow:
    base = dict(label=job.label, format=job.format, file_bytes=Path(job.artifact).stat().st_size)
    accuracy = result.get("accuracy") or {}
    measured = (result.get("measurements") or [{}])[0]
    if accuracy.get("status") != "ok":
        reason = accuracy.get("reason") or result.get("reason") or measured.get("reason") or "accuracy pass did not run"
        return AccuracyRow(status="failed", reason=reason, **base)
    probs = np.asarray(accuracy["probs"], dtype=np.float64)
    ci = metric_cis(labels, probs, thresholds, seed=seed) if has_both_classes(labels) and np.isfinite(probs).all() else None
    return AccuracyRow(status="ok", runtime=measured.get("runtime", ""), summary=stats.accuracy_summary(labels, probs, thresholds),
                       ci=ci, seconds=accuracy["seconds"], roc=stats.roc_points(labels, probs), probs=probs.tolist(),
                       **base)


def pick_reference(rows: list[AccuracyRow]) -> AccuracyRow | None:
    """keras if it ran, else tflite-fp32, else the first float row that ran."""
    ok = {r.label: r for r in rows if r.status == "ok"}
    for label in REFERENCE_ORDER:
        if label in ok:
            return ok[label]
    return None


def with_reference(rows: list[AccuracyRow], labels: np.ndarray, thresholds: dict, seed: int = 0) -> list[AccuracyRow]:
    """Add agreement and ΔF1/ΔAUC against the reference (at the balanced threshold) to every ok row, and the
    paired bootstrap test of the AUC difference (its 95 % CI and p) on the same images."""
    from dataclasses import replace

    reference = pick_reference(rows)
    if reference is None:
        return rows
    out = []
    for row in rows:
        if row.status != "ok":
            out.append(row)
            continue
        compared = stats.compare_to_reference(row.probs, reference.probs, thresholds["balanced"])
        compared["delta_f1"] = row.summary["balanced"]["f1"] - reference.summary["balanced"]["f1"]
        auc, ref_auc = row.summary["auc"], reference.summary["auc"]
        compared["delta_auc"] = auc - ref_auc if auc is not None and ref_auc is not None else None
        compared["auc_difference"] = (paired_auc_difference(labels, reference.probs, row.probs, seed=seed)
                                      if row is not reference and row.ci and reference.ci else None)
        out.append(replace(row, reference=reference.label, vs_reference=compared))
    return out
