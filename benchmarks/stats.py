"""Benchmark statistics: latency summaries, accuracy at the bundle's thresholds, agreement, Pareto front."""
from __future__ import annotations

import math

import numpy as np

from ..edge_runtime import metrics

PERCENTILES = (50, 90)


def percentile(samples, q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    values = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    if values.size == 0:
        return float("nan")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    position = (values.size - 1) * q / 100.0
    low = int(math.floor(position))
    high = min(low + 1, values.size - 1)
    return float(values[low] + (values[high] - values[low]) * (position - low))


def latency_summary(samples_ms, batch: int = 1) -> dict:
    """p50, p90, mean, std (sample, ddof=1) of per-call latencies in ms, and the throughput in images/s."""
    values = np.asarray(samples_ms, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("latency_summary needs at least one sample")
    mean = float(values.mean())
    return {
        "runs": int(values.size),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "mean_ms": mean,
        "std_ms": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
        "images_per_s": float(batch * 1000.0 / mean) if mean > 0 else float("nan"),
    }


def gmacs_per_s(macs_per_image: float | None, images_per_s: float) -> float | None:
    """Achieved multiply-accumulates per second, in G, from the model's MACs and the throughput."""
    if not macs_per_image or not math.isfinite(images_per_s):
        return None
    return float(macs_per_image * images_per_s / 1e9)


def accuracy_summary(y_true, probs, thresholds: dict) -> dict:
    """AUC plus accuracy/F1/sensitivity/specificity at each of the bundle's named thresholds."""
    summary = metrics.summarize(y_true, probs, thresholds)
    summary["auc"] = _finite_or_none(summary["auc"])
    return summary


def compare_to_reference(probs, reference_probs, threshold: float) -> dict:
    """Decision agreement and probability differences of one format against the reference format."""
    a = np.asarray(probs, dtype=np.float64).ravel()
    b = np.asarray(reference_probs, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"probabilities differ in length from the reference: {a.size} vs {b.size}")
    diff = np.abs(a - b)
    return {
        "agreement": _finite_or_none(metrics.agreement(a, b, threshold)),
        "max_abs_diff": float(diff.max()) if diff.size else None,
        "mean_abs_diff": float(diff.mean()) if diff.size else None,
    }


def roc_points(y_true, probs, max_points: int = 200) -> dict:
    """The ROC curve, thinned to at most max_points points (keeps both ends), for plots and bench.json."""
    fpr, tpr, _ = metrics.roc_curve(y_true, probs)
    if fpr.size > max_points:
        keep = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, score) that no other point beats: faster-or-equal and better-or-equal."""
    front = []
    for i, (lat_i, score_i) in enumerate(points):
        dominated = any(
            lat_j <= lat_i and score_j >= score_i and (lat_j < lat_i or score_j > score_i)
            for j, (lat_j, score_j) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
