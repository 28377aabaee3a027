"""95 % confidence intervals for the metrics the toolkit reports: stratified bootstrap, seeded; DeLong for AUC.

numpy only. The bootstrap resamples positives and negatives separately (the class counts stay those of
the data), so every resample has both classes and its AUC exists.
"""
from __future__ import annotations

import numpy as np

from .metrics import metrics_at, roc_auc
from .bundle_schema import THRESHOLD_NAMES

N_RESAMPLES = 2000
LEVEL = 0.95
RATES = ("sensitivity", "specificity", "precision", "f1")


def stratified_resamples(y_true, n: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(n, len(y)) index matrix; row k draws positives from positives and negatives from negatives."""
    y = np.asarray(y_true).astype(np.int64).ravel()
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("a stratified bootstrap needs both classes")
    rng = np.random.default_rng(seed)
    return np.concatenate([pos[rng.integers(0, pos.size, (n, pos.size))],
                           neg[rng.integers(0, neg.size, (n, neg.size))]], axis=1)


def _interval(samples: np.ndarray, value: float) -> dict:
    tail = (1.0 - LEVEL) / 2.0
    finite = samples[np.isfinite(samples)]
    lo, hi = (np.quantile(finite, [tail, 1.0 - tail]) if finite.size else (np.nan, np.nan))
    return {"value": float(value), "ci_low": float(lo), "ci_high": float(hi)}


def auc_ci(y_true, scores, n: int = N_RESAMPLES, seed: int = 0) -> dict:
    """AUC with its percentile bootstrap 95 % CI."""
    y, s = np.asarray(y_true).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    draws = np.array([roc_auc(y[idx], s[idx]) for idx in stratified_resamples(y, n, seed)])
    return _interval(draws, roc_auc(y, s))


def operating_point_cis(y_true, scores, threshold: float, n: int = N_RESAMPLES, seed: int = 0) -> dict:
    """Sensitivity, specificity, precision and F1 at `threshold`, each with a bootstrap 95 % CI."""
    y = np.asarray(y_true).astype(np.int64).ravel()
    decided = np.asarray(scores, dtype=np.float64).ravel() >= threshold
    idx = stratified_resamples(y, n, seed)
    yy, dd = y.astype(bool)[idx], decided[idx]
    tp, fp = (yy & dd).sum(1).astype(np.float64), (~yy & dd).sum(1).astype(np.float64)
    fn, tn = (yy & ~dd).sum(1).astype(np.float64), (~yy & ~dd).sum(1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp), "precision": tp / (tp + fp),
                 "f1": 2 * tp / (2 * tp + fp + fn)}
    point = metrics_at(y, scores, threshold)
    return {name: _interval(draws[name], point[name]) for name in RATES}


def metric_cis(y_true, scores, thresholds: dict, n: int = N_RESAMPLES, seed: int = 0) -> dict:
    """{"auc": {...}, "<operating point>": {rate: {...}}} for the bundle's numeric thresholds."""
    out = {"auc": auc_ci(y_true, scores, n, seed), "resamples": n, "level": LEVEL, "method": "stratified bootstrap"}
    for name, value in thresholds.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name in THRESHOLD_NAMES:
            out[name] = operating_point_cis(y_true, scores, float(value), n, seed)
    return out


def delong_auc_variance(y_true, scores) -> tuple[float, float]:
    """(AUC, its DeLong variance) from the placement values of each positive and negative."""
    y, s = np.asarray(y_true).astype(np.int64).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    pos, neg = s[y == 1], s[y == 0]
    if pos.size < 2 or neg.size < 2:
        raise ValueError("DeLong needs at least two images of each class")
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    auc = float(v10.mean())
    return auc, float(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)


def paired_auc_difference(y_true, scores_a, scores_b, n: int = N_RESAMPLES, seed: int = 0) -> dict:
    """AUC(b) - AUC(a) on the same images, its paired bootstrap 95 % CI and a two-sided p-value."""
    y = np.asarray(y_true).ravel()
    a, b = np.asarray(scores_a, dtype=np.float64).ravel(), np.asarray(scores_b, dtype=np.float64).ravel()
    draws = np.array([roc_auc(y[idx], b[idx]) - roc_auc(y[idx], a[idx]) for idx in stratified_resamples(y, n, seed)])
    result = _interval(draws, roc_auc(y, b) - roc_auc(y, a))
    centred = draws - draws.mean()
    result["p_value"] = float(min(1.0, (np.abs(centred) >= abs(result["value"])).mean()))
    result["method"] = "paired stratified bootstrap"
    return result


def has_both_classes(y_true, minimum: int = 2) -> bool:
    """Whether a bootstrap (and DeLong) can run: at least `minimum` images of each class."""
    y = np.asarray(y_true).astype(np.int64).ravel()
    return int(y.sum()) >= minimum and int((1 - y).sum()) >= minimum


def artifact_uncertainty(y_true, probs, thresholds: dict, reference_probs=None, n: int = N_RESAMPLES,
                         seed: int = 0) -> dict | None:
    """{"metrics": metric_cis(probs), "auc_vs_reference": AUC(probs) - AUC(reference) with its paired CI and p}
    for one artifact scored on the same images as its reference; None when a class has under two images."""
    if not has_both_classes(y_true):
        return None
    out = {"metrics": metric_cis(y_true, probs, thresholds, n, seed)}
    if reference_probs is not None:
        out["auc_vs_reference"] = paired_auc_difference(y_true, reference_probs, probs, n, seed)
    return out


def format_ci(entry: dict, digits: int = 3) -> str:
    """'0.912 (0.889-0.933)'."""
    return f"{entry['value']:.{digits}f} ({entry['ci_low']:.{digits}f}-{entry['ci_high']:.{digits}f})"


def format_change(entry: dict, digits: int = 3) -> str:
    """A signed difference with its CI: '+0.004 (-0.002 to +0.010)'."""
    return f"{entry['value']:+.{digits}f} ({entry['ci_low']:+.{digits}f} to {entry['ci_high']:+.{digits}f})"


def format_difference(entry: dict, digits: int = 3) -> str:
    """A paired difference and its test: '+0.004 (-0.002 to +0.010), p 0.31'."""
    return f"{format_change(entry, digits)}, p {entry['p_value']:.2f}"
