"""Cross-validation for a head fitted on a few dozen images: its strength C, its thresholds, honest numbers.

- C is chosen on a grid by the class-weighted log loss of out-of-fold probabilities (stratified k-fold,
  seeded; ties -> the smallest C, the strongest regularisation).
- The deployed head: C chosen on all images, thresholds chosen on the out-of-fold probabilities at that C
  (balanced = highest F1, screening = highest threshold keeping the target sensitivity; metrics.py), the
  weights fitted on all images.
- The reported numbers: nested cross-validation. Each outer fold chooses its own C and thresholds by an
  inner cross-validation on its training images only, and is then scored on its held-out images, so no
  number is measured on an image that helped choose it.
numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .head import AdaptedHead, class_weights, fit_path
from ..metrics import choose_thresholds
from ..bundle_schema import THRESHOLD_NAMES

C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 13))   # 1e-4 .. 1e2, half a decade apart
FOLDS = 5


@dataclass(frozen=True)
class FittedHead:
    """The deployed head, its C and thresholds (chosen on out-of-fold probabilities)."""

    head: AdaptedHead
    C: float
    thresholds: dict
    loss_by_C: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NestedScores:
    """Out-of-fold results of nested cross-validation: never scored on an image that chose C or a threshold."""

    probabilities: np.ndarray            # (n,) from the outer fold that held the image out
    decisions: dict                      # operating point -> bool (n,), at that fold's own thresholds
    fold_C: tuple                        # C chosen in each outer fold


def stratified_folds(y: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """k arrays of held-out indices; each class is shuffled (seeded) and dealt round-robin over the folds."""
    y = np.asarray(y).astype(np.int64)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(y == label))
        for i, index in enumerate(members):
            folds[(offset + i) % k].append(int(index))
        offset += members.size
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


def folds_for(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """stratified_folds with k lowered so that every fold holds at least one image of each class."""
    smallest = int(np.bincount(np.asarray(y).astype(np.int64), minlength=2).min())
    return stratified_folds(y, max(2, min(k, smallest)), seed)


def out_of_fold(x: np.ndarray, y: np.ndarray, Cs, folds: list[np.ndarray]) -> np.ndarray:
    """(len(Cs), n) probabilities, each image's from the fit that held it out."""
    probs = np.zeros((len(Cs), len(y)))
    for held in folds:
        train = np.setdiff1d(np.arange(len(y)), held)
        for row, head in enumerate(fit_path(x[train], y[train], Cs)):
            probs[row, held] = head.probabilities(x[held])
    return probs


def weighted_log_loss(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Class-weighted mean log loss of each row of probs (the quantity the fit minimises, without the penalty)."""
    p = np.clip(probs, 1e-12, 1 - 1e-12)
    s = class_weights(y)
    return -(s * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum(axis=-1) / s.sum()


def choose_C(x: np.ndarray, y: np.ndarray, Cs, k: int, seed: int) -> tuple[float, np.ndarray, dict]:
    """(best C, its out-of-fold probabilities, {C: loss}) by cross-validated class-weighted log loss."""
    probs = out_of_fold(x, y, Cs, folds_for(y, k, seed))
    losses = weighted_log_loss(y, probs)
    best = int(np.argmin(losses))                                 # first minimum = the smallest C
    return float(Cs[best]), probs[best], {f"{c:.3g}": round(float(v), 5) for c, v in zip(Cs, losses)}


def fit_head(x: np.ndarray, y: np.ndarray, target_sensitivity: float, Cs=C_GRID, k: int = FOLDS,
             seed: int = 0) -> FittedHead:
    """The head to deploy: C and thresholds from cross-validation on all images, weights fitted on all."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y).astype(np.int64)
    C, oof, losses = choose_C(x, y, Cs, k, seed)
    thresholds = choose_thresholds(y, oof, target_sensitivity)
    head = fit_path(x, y, (C,))[0]
    return FittedHead(head, C, thresholds, losses)


def nested_scores(x: np.ndarray, y: np.ndarray, target_sensitivity: float, Cs=C_GRID, k: int = FOLDS,
                  seed: int = 0) -> NestedScores:
    """Probabilities and decisions of fit_head's whole procedure, each image scored by a fold that held it out."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y).astype(np.int64)
    probs = np.zeros(len(y))
    decisions = {name: np.zeros(len(y), bool) for name in THRESHOLD_NAMES}
    fold_C = []
    for held in folds_for(y, k, seed):
        train = np.setdiff1d(np.arange(len(y)), held)
        fitted = fit_head(x[train], y[train], target_sensitivity, Cs, k, seed + 1)
        probs[held] = fitted.head.probabilities(x[held])
        for name in THRESHOLD_NAMES:
            decisions[name][held] = probs[held] >= fitted.thresholds[name]
        fold_C.append(fitted.C)
    return NestedScores(probs, decisions, tuple(fold_C))
