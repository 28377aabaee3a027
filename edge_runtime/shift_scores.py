"""Scores of one model under the acquisition shifts: AUC + 95 % CI per shift, the worst and the mean.

One implementation for `fracture-edge eval --shifts` (train/shift_eval.py) and `fracture-edge bench --shifts`
(benchmarks/shift_rows.py): both score the clean images and each shifted copy, then call `score_shifts`.
numpy only; stability probes (dither-1) are scored but left out of the worst and the mean.
"""
from __future__ import annotations

import numpy as np

from .confidence import N_RESAMPLES, auc_ci, paired_auc_difference
from .metrics import agreement
from .shifts import STABILITY_PROBES, shift_names
from .bundle_schema import THRESHOLD_NAMES



def parse_shift_names(text: str | None) -> tuple[str, ...]:
    """'all' (or None) -> every shift; 'invert,jpeg-30' -> those; unknown names raise ValueError listing valid ones."""
    names = shift_names() if text in (None, "all") else tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in shift_names()]
    if unknown or not names:
        raise ValueError(f"--shifts: unknown shift(s) {', '.join(unknown) or '(none given)'}; "
                         f"valid: {', '.join(shift_names())}")
    return names


def score_shift(y_true, clean, probs, thresholds: dict, n: int = N_RESAMPLES, seed: int = 0) -> dict:
    """AUC (95 % CI) under one shift, its paired change against the clean images, and the decisions kept."""
    return {"auc": auc_ci(y_true, probs, n, seed),
            "delta_vs_clean": paired_auc_difference(y_true, clean, probs, n, seed),
            "decisions_kept": {point: agreement(clean, probs, float(thresholds[point]))
                               for point in THRESHOLD_NAMES if point in thresholds}}


def worst_and_mean(rows: dict) -> dict:
    """{"worst": {"shift", "auc"} | None, "mean_auc": float | None} over the acquisition shifts (probes left out)."""
    aucs = {name: row["auc"]["value"] for name, row in rows.items() if name not in STABILITY_PROBES}
    worst = min(aucs, key=aucs.get) if aucs else None
    return {"worst": {"shift": worst, "auc": aucs[worst]} if worst else None,
            "mean_auc": float(np.mean(list(aucs.values()))) if aucs else None,
            "acquisition_shifts": len(aucs)}


def score_shifts(y_true, clean, shifted: dict, thresholds: dict, n: int = N_RESAMPLES, seed: int = 0) -> dict:
    """{"clean": AUC CI, "shifts": {name: score_shift(...)}, "worst", "mean_auc", "acquisition_shifts"}."""
    rows = {name: score_shift(y_true, clean, probs, thresholds, n, seed) for name, probs in shifted.items()}
    return {"clean": auc_ci(y_true, clean, n, seed), "shifts": rows, **worst_and_mean(rows)}
