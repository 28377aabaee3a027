"""Binary classification metrics and threshold choice, numpy only (used by train, export and bench)."""
from __future__ import annotations

import numpy as np

from .bundle_schema import THRESHOLD_NAMES

SCREENING_SENSITIVITY = 0.95


def probability_logits(probabilities, eps: float = 1e-7) -> np.ndarray:
    """float64 logits of probabilities, clipped to [eps, 1 - eps] so a saturated output stays finite."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def _as_arrays(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    return y, s


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); nan if one class only."""
    y, s = _as_arrays(y_true, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds descending; a point for every distinct score."""
    y, s = _as_arrays(y_true, scores)
    thresholds = np.unique(s)[::-1]
    pos = max(int(y.sum()), 1)
    neg = max(int((1 - y).sum()), 1)
    tpr = np.array([((s >= t) & (y == 1)).sum() / pos for t in thresholds])
    fpr = np.array([((s >= t) & (y == 0)).sum() / neg for t in thresholds])
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def pr_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) over every distinct score, thresholds descending."""
    y, s = _as_arrays(y_true, scores)
    recall, precision = [], []
    for t in np.unique(s)[::-1]:
        pred = s >= t
        tp = int((pred & (y == 1)).sum())
        recall.append(tp / max(int(y.sum()), 1))
        precision.append(tp / max(int(pred.sum()), 1))
    return np.array(recall), np.array(precision)


def confusion(y_true, scores, threshold: float) -> dict:
    """Counts at `threshold` (score >= threshold means positive)."""
    y, s = _as_arrays(y_true, scores)
    pred = s >= threshold
    return {
        "tp": int((pred & (y == 1)).sum()),
        "fp": int((pred & (y == 0)).sum()),
        "tn": int((~pred & (y == 0)).sum()),
        "fn": int((~pred & (y == 1)).sum()),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def metrics_at(y_true, scores, threshold: float) -> dict:
    """accuracy, precision, sensitivity, specificity, F1 of the positive class, confusion matrix."""
    c = confusion(y_true, scores, threshold)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    precision = _ratio(tp, tp + fp)
    sensitivity = _ratio(tp, tp + fn)
    return {
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "precision": precision,
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * precision * sensitivity, precision + sensitivity),
        "confusion": c,
    }


def choose_thresholds(y_true, scores, target_sensitivity: float = SCREENING_SENSITIVITY) -> dict:
    """Pick decision thresholds on validation data.

    balanced: the threshold with the highest F1 (ties -> the higher threshold).
    screening: the highest threshold whose sensitivity is still >= target_sensitivity, which is
    the one with the highest specificity among those that keep the sensitivity.
    Thresholds sit halfway between neighbouring distinct scores, so they generalise a little
    better than the score of one validation image.
    """
    y, s = _as_arrays(y_true, scores)
    distinct = np.unique(s)
    if distinct.size < 2 or y.min() == y.max():
        raise ValueError("choosing thresholds needs both classes and at least two distinct scores")
    candidates = np.r_[distinct[0] / 2.0, (distinct[:-1] + distinct[1:]) / 2.0]
    best_f1, balanced = -1.0, float(candidates[0])
    screening = float(candidates[0])
    for t in candidates:  # ascending
        m = metrics_at(y, s, t)
        if m["f1"] >= best_f1:
            best_f1, balanced = m["f1"], float(t)
        if m["sensitivity"] >= target_sensitivity:
            screening = float(t)
    return {"balanced": balanced, "screening": screening, "screening_target_sensitivity": target_sensitivity}


def summarize(y_true, scores, thresholds: dict) -> dict:
    """AUC plus metrics_at each named threshold ('balanced', 'screening')."""
    out = {"n": int(np.asarray(y_true).size), "n_positive": int(np.asarray(y_true).sum()),
           "auc": roc_auc(y_true, scores)}
    for name in THRESHOLD_NAMES:
        if name in thresholds:
            out[name] = metrics_at(y_true, scores, thresholds[name])
    return out


def agreement(scores_a, scores_b, threshold: float) -> float:
    """Fraction of images on which two models make the same decision at `threshold`."""
    a = np.asarray(scores_a, dtype=np.float64) >= threshold
    b = np.asarray(scores_b, dtype=np.float64) >= threshold
    return float((a == b).mean()) if a.size else float("nan")
