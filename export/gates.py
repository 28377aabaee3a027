"""Fidelity gates: how far an exported artifact may drift from the Keras model (numpy only, no TF).

Used by `fracture-edge export` (a failed gate is a failed export) and by the benchmarks.
Stable API: `Gates`, `GateLimits`, `GateResult`, `check_gates(format, ref_probs, probs, labels, thresholds)`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..edge_runtime.bundle import THRESHOLD_NAMES
from ..edge_runtime.metrics import agreement, metrics_at, roc_auc

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class GateLimits:
    """Limits for one precision; None means 'not gated'."""

    max_abs_dprob: float | None = None    # max over images of |p_artifact - p_keras|
    max_abs_df1: float | None = None      # |F1_artifact - F1_keras| at every bundle threshold
    max_abs_dauc: float | None = None     # |AUC_artifact - AUC_keras|
    min_agreement: float | None = None    # fraction of identical decisions at every bundle threshold


@dataclass(frozen=True)
class Gates:
    """Default gates per precision (issue 3); override with `with_limit`."""

    fp32: GateLimits = field(default_factory=lambda: GateLimits(max_abs_dprob=1e-4))
    fp16: GateLimits = field(default_factory=lambda: GateLimits(max_abs_df1=0.002))
    int8: GateLimits = field(default_factory=lambda: GateLimits(
        max_abs_df1=0.01, max_abs_dauc=0.01, min_agreement=0.99))

    def limits_for(self, precision: str) -> GateLimits:
        """Limits of a precision ('fp32' | 'fp16' | 'int8')."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        return getattr(self, precision)

    def with_limit(self, precision: str, **limits: float | None) -> "Gates":
        """A copy with some limits of one precision replaced (e.g. with_limit('int8', min_agreement=0.99))."""
        return replace(self, **{precision: replace(self.limits_for(precision), **limits)})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    """Fidelity of one artifact against the Keras reference, and the verdict."""

    format: str
    passed: bool
    reasons: tuple[str, ...]          # one per violated limit; empty when passed
    n: int
    max_abs_dprob: float
    mean_abs_dprob: float
    auc_ref: float
    auc: float
    per_threshold: dict               # name -> {threshold, f1_ref, f1, d_f1, sensitivity, ..., agreement}
    limits: GateLimits

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "within gates"

    @property
    def d_auc(self) -> float:
        return self.auc - self.auc_ref

    @property
    def worst_abs_df1(self) -> float:
        return max((abs(m["d_f1"]) for m in self.per_threshold.values()), default=float("nan"))

    @property
    def min_agreement(self) -> float:
        return min((m["agreement"] for m in self.per_threshold.values()), default=float("nan"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        d.update(reason=self.reason, d_auc=self.d_auc, worst_abs_df1=self.worst_abs_df1,
                 min_agreement=self.min_agreement)
        return finite_or_none(d)


def precision_of(format_name: str) -> str:
    """'tflite-int8' -> 'int8'."""
    precision = format_name.rsplit("-", 1)[-1]
    if precision not in PRECISIONS:
        raise ValueError(f"format {format_name!r} has no gated precision; valid: {', '.join(PRECISIONS)}")
    return precision


def gate_thresholds(thresholds: dict) -> dict[str, float]:
    """The named decision thresholds of a bundle (balanced, screening), ignoring other keys."""
    found = {k: float(thresholds[k]) for k in THRESHOLD_NAMES if k in thresholds}
    if not found:
        raise ValueError(f"no decision thresholds ({', '.join(THRESHOLD_NAMES)}) in {thresholds!r}")
    return found


def compare_at(labels, ref_probs, probs, threshold: float) -> dict:
    """Artifact vs reference metrics at one threshold."""
    ref = metrics_at(labels, ref_probs, threshold)
    new = metrics_at(labels, probs, threshold)
    return {"threshold": threshold, "f1_ref": ref["f1"], "f1": new["f1"], "d_f1": new["f1"] - ref["f1"],
            "sensitivity_ref": ref["sensitivity"], "sensitivity": new["sensitivity"],
            "specificity_ref": ref["specificity"], "specificity": new["specificity"],
            "agreement": agreement(ref_probs, probs, threshold)}


def check_gates(format_name: str, ref_probs, probs, labels, thresholds: dict,
                gates: Gates | None = None) -> GateResult:
    """Compare an artifact's probabilities with the Keras reference on the same images; apply the gate."""
    ref = np.asarray(ref_probs, dtype=np.float64).ravel()
    new = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(np.int64).ravel()
    if not ref.size == new.size == y.size:
        raise ValueError(f"reference, artifact and labels differ in length: {ref.size}, {new.size}, {y.size}")
    limits = (gates or Gates()).limits_for(precision_of(format_name))
    diff = np.abs(new - ref)
    per_threshold = {name: compare_at(y, ref, new, t) for name, t in gate_thresholds(thresholds).items()}
    result = GateResult(
        format=format_name, passed=False, reasons=(), n=int(y.size),
        max_abs_dprob=float(diff.max()) if diff.size else float("nan"),
        mean_abs_dprob=float(diff.mean()) if diff.size else float("nan"),
        auc_ref=roc_auc(y, ref) if y.size else float("nan"),
        auc=roc_auc(y, new) if y.size else float("nan"),
        per_threshold=per_threshold, limits=limits)
    reasons = tuple(violations(result, new, limits))
    return replace(result, passed=not reasons, reasons=reasons)


def violations(result: GateResult, probs: np.ndarray, limits: GateLimits) -> list[str]:
    """Human-readable reasons why `result` breaks `limits` (empty list: it passes)."""
    if result.n == 0:
        return ["no verification images"]
    if not np.all(np.isfinite(probs)):
        return [f"{int((~np.isfinite(probs)).sum())} of {result.n} probabilities are not finite (broken model)"]
    if np.any((probs < 0) | (probs > 1)):
        return ["probabilities outside [0, 1]"]
    out = []
    if limits.max_abs_dprob is not None and not result.max_abs_dprob <= limits.max_abs_dprob:
        out.append(f"max |dprob| {result.max_abs_dprob:.3g} > {limits.max_abs_dprob:g}")
    for name, m in result.per_threshold.items():
        if limits.max_abs_df1 is not None and not abs(m["d_f1"]) <= limits.max_abs_df1:
            out.append(f"|dF1| at {name} {abs(m['d_f1']):.4f} > {limits.max_abs_df1:g}")
        if limits.min_agreement is not None and not m["agreement"] >= limits.min_agreement:
            out.append(f"agreement at {name} {m['agreement']:.2%} < {limits.min_agreement:.0%}")
    if limits.max_abs_dauc is not None and not _within(result.d_auc, limits.max_abs_dauc):
        out.append(f"|dAUC| {abs(result.d_auc):.4f} > {limits.max_abs_dauc:g}")
    return out


def _within(delta: float, limit: float) -> bool:
    """|delta| <= limit; an undefined delta (one-class data: AUC nan on both sides) is not a violation."""
    return math.isnan(delta) or abs(delta) <= limit


def finite_or_none(obj):
    """Replace nan/inf by None so the JSON report stays standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
