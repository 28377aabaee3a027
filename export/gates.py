"""The fidelity verdict: does an exported artifact decide like the Keras float model? (numpy only, no TF)

The rules and their reasons are in docs/fidelity-verdict.md, written before the verdict judged the default
model; `VerdictRules()` holds its defaults. fp32 artifacts must be exact; every compressed artifact passes the
same three-part test: paired-bootstrap non-inferiority of AUC, sensitivity and specificity at both bundle
thresholds, enough images of each class to resolve the margins, and no more decision flips than the float
model makes under an invisible +-1 grey-level dither (the noise floor).

Used by `fracture-edge export` (a rejected artifact goes to RUN/rejected/) and by `bench --gate`.
Stable API: `VerdictRules`, `GateResult`, `check_gates(format, ref_probs, probs, labels, thresholds, rules,
dither_probs)`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..edge_runtime.bundle import THRESHOLD_NAMES
from ..edge_runtime.confidence import stratified_resamples
from ..edge_runtime.formats import FORMATS
from ..edge_runtime.metrics import agreement, metrics_at, roc_auc

EXACT, COMPRESSED = "exact", "non-inferior, enough evidence, within the noise floor"
RATE_METRICS = ("sensitivity", "specificity")


@dataclass(frozen=True)
class VerdictRules:
    """The verdict's settings; the defaults are the ones written down in docs/fidelity-verdict.md."""

    fp32_max_abs_dprob: float = 1e-4   # fp32 artifacts: max |p_artifact - p_keras| over the images
    margin_auc: float = 0.01           # lower 95 % bound of AUC(artifact) - AUC(float) must lie above -margin
    margin_sensitivity: float = 0.03   # ... of sensitivity at each bundle threshold
    margin_specificity: float = 0.03   # ... of specificity at each bundle threshold
    noise_floor: bool = True           # flips at each threshold <= the float model's own under dither-1
    resamples: int = 2000
    seed: int = 0
    level: float = 0.95

    def margin(self, metric: str) -> float:
        return {"auc": self.margin_auc, "sensitivity": self.margin_sensitivity,
                "specificity": self.margin_specificity}[metric]

    @property
    def min_class_images(self) -> int:
        """Rule of three: fewer images of a class cannot bound a loss below the smallest rate margin."""
        return math.ceil(3.0 / min(self.margin_sensitivity, self.margin_specificity) - 1e-9)

    def to_dict(self) -> dict:
        return {**asdict(self), "min_class_images": self.min_class_images}


@dataclass(frozen=True)
class GateResult:
    """Fidelity of one artifact against the Keras reference, and the verdict."""

    format: str
    passed: bool
    reasons: tuple[str, ...]          # one per broken rule; empty when passed
    rule: str                         # EXACT (fp32) or COMPRESSED
    n: int
    n_fractured: int
    max_abs_dprob: float
    mean_abs_dprob: float
    auc_ref: float
    auc: float
    per_threshold: dict               # name -> {threshold, f1_ref, f1, d_f1, sensitivity..., agreement, flips...}
    non_inferiority: dict             # "auc" | "<threshold> <rate>" -> {value, ci_low, ci_high, margin, passed}
    noise_floor: dict | None          # threshold name -> {flips, dither_flips, ratio, passed}; None: not measured
    rules: VerdictRules

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "passed the fidelity verdict"

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
        d["rules"] = self.rules.to_dict()
        d.update(reason=self.reason, d_auc=self.d_auc, worst_abs_df1=self.worst_abs_df1,
                 min_agreement=self.min_agreement)
        return finite_or_none(d)


def is_exact_format(format_name: str) -> bool:
    """fp32 artifacts are judged by exactness; everything else (fp16, int8 of any kind, custom) is compressed."""
    fmt = FORMATS.get(format_name)
    return fmt is not None and fmt.exact


def gate_thresholds(thresholds: dict) -> dict[str, float]:
    """The named decision thresholds of a bundle (balanced, screening), ignoring other keys."""
    found = {k: float(thresholds[k]) for k in THRESHOLD_NAMES if k in thresholds}
    if not found:
        raise ValueError(f"no decision thresholds ({', '.join(THRESHOLD_NAMES)}) in {thresholds!r}")
    return found


def compare_at(labels, ref_probs, probs, threshold: float) -> dict:
    """Artifact vs reference metrics at one threshold (facts for the report, not the verdict)."""
    ref = metrics_at(labels, ref_probs, threshold)
    new = metrics_at(labels, probs, threshold)
    flips = int(((np.asarray(ref_probs) >= threshold) != (np.asarray(probs) >= threshold)).sum())
    return {"threshold": threshold, "f1_ref": ref["f1"], "f1": new["f1"], "d_f1": new["f1"] - ref["f1"],
            "sensitivity_ref": ref["sensitivity"], "sensitivity": new["sensitivity"],
            "specificity_ref": ref["specificity"], "specificity": new["specificity"],
            "agreement": agreement(ref_probs, probs, threshold), "flips": flips}


def paired_differences(labels: np.ndarray, ref: np.ndarray, new: np.ndarray, thresholds: dict[str, float],
                       rules: VerdictRules) -> dict[str, np.ndarray]:
    """Bootstrap draws of metric(artifact) - metric(reference), both scored on the same stratified resamples."""
    idx = stratified_resamples(labels, rules.resamples, rules.seed)
    n_pos = int(labels.sum())   # stratified_resamples puts the positives first in every row
    draws = {"auc": np.array([roc_auc(labels[i], new[i]) - roc_auc(labels[i], ref[i]) for i in idx])}
    for name, t in thresholds.items():
        change = (new >= t).astype(np.float64)[idx] - (ref >= t).astype(np.float64)[idx]
        draws[f"{name} sensitivity"] = change[:, :n_pos].mean(axis=1)        # decided positive, among fractured
        draws[f"{name} specificity"] = -change[:, n_pos:].mean(axis=1)       # decided negative, among the others
    return draws


def non_inferiority(labels, ref, new, thresholds: dict[str, float], rules: VerdictRules) -> dict:
    """Each metric's paired difference with its percentile interval, margin and whether the lower bound clears it."""
    point = {"auc": roc_auc(labels, new) - roc_auc(labels, ref)}
    for name, t in thresholds.items():
        for rate in RATE_METRICS:
            point[f"{name} {rate}"] = metrics_at(labels, new, t)[rate] - metrics_at(labels, ref, t)[rate]
    tail = (1.0 - rules.level) / 2.0
    out = {}
    for metric, draws in paired_differences(labels, ref, new, thresholds, rules).items():
        lo, hi = np.quantile(draws, [tail, 1.0 - tail])
        margin = rules.margin(metric.rsplit(" ", 1)[-1])
        out[metric] = {"value": float(point[metric]), "ci_low": float(lo), "ci_high": float(hi),
                       "margin": margin, "passed": bool(lo > -margin)}
    return out


def noise_floor(ref, new, dither, thresholds: dict[str, float]) -> dict:
    """Decision flips of the artifact vs those of the float model under the dither, at each threshold."""
    out = {}
    for name, t in thresholds.items():
        flips = int(((new >= t) != (ref >= t)).sum())
        floor = int(((dither >= t) != (ref >= t)).sum())
        out[name] = {"flips": flips, "dither_flips": floor, "ratio": flips / floor if floor else
                     (0.0 if flips == 0 else float("inf")), "passed": flips <= floor}
    return out


def check_gates(format_name: str, ref_probs, probs, labels, thresholds: dict, rules: VerdictRules | None = None,
                dither_probs=None) -> GateResult:
    """The verdict on one artifact's probabilities against the Keras reference on the same images.

    dither_probs: the Keras model's probabilities on the dither-1 copies of the same images (the noise floor);
    None leaves the noise floor unmeasured (bench without the probe), which the result says.
    """
    rules = rules or VerdictRules()
    ref = np.asarray(ref_probs, dtype=np.float64).ravel()
    new = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(np.int64).ravel()
    if not ref.size == new.size == y.size:
        raise ValueError(f"reference, artifact and labels differ in length: {ref.size}, {new.size}, {y.size}")
    dither = None if dither_probs is None else np.asarray(dither_probs, dtype=np.float64).ravel()
    if dither is not None and dither.size != ref.size:
        raise ValueError(f"dither probabilities differ in length: {dither.size} vs {ref.size}")
    points = gate_thresholds(thresholds)
    diff = np.abs(new - ref)
    result = GateResult(
        format=format_name, passed=False, reasons=(), rule=EXACT if is_exact_format(format_name) else COMPRESSED,
        n=int(y.size), n_fractured=int(y.sum()),
        max_abs_dprob=float(diff.max()) if diff.size else float("nan"),
        mean_abs_dprob=float(diff.mean()) if diff.size else float("nan"),
        auc_ref=roc_auc(y, ref) if y.size else float("nan"), auc=roc_auc(y, new) if y.size else float("nan"),
        per_threshold={name: compare_at(y, ref, new, t) for name, t in points.items()},
        non_inferiority={}, noise_floor=None, rules=rules)
    broken = sanity_problems(result, new)
    if broken or result.rule == EXACT:
        reasons = broken or exactness_problems(result, rules)
        return replace(result, passed=not reasons, reasons=tuple(reasons))
    return judge_compressed(result, y, ref, new, dither, points, rules)


def sanity_problems(result: GateResult, probs: np.ndarray) -> list[str]:
    """What makes an artifact broken whatever its rule (no images, non-finite or out-of-range output)."""
    if result.n == 0:
        return ["no verification images"]
    if not np.all(np.isfinite(probs)):
        return [f"{int((~np.isfinite(probs)).sum())} of {result.n} probabilities are not finite (broken model)"]
    if np.any((probs < 0) | (probs > 1)):
        return ["probabilities outside [0, 1]"]
    return []


def exactness_problems(result: GateResult, rules: VerdictRules) -> list[str]:
    if not result.max_abs_dprob <= rules.fp32_max_abs_dprob:
        return [f"max |dprob| {result.max_abs_dprob:.3g} > {rules.fp32_max_abs_dprob:g} (an fp32 artifact must be exact)"]
    return []


def judge_compressed(result: GateResult, y, ref, new, dither, points: dict[str, float],
                     rules: VerdictRules) -> GateResult:
    """Evidence first (a set too small to resolve the margins cannot pass), then non-inferiority and the floor."""
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if min(n_pos, n_neg) < rules.min_class_images:
        reason = (f"too few images to resolve the margins: {n_pos} fractured / {n_neg} not, at least "
                  f"{rules.min_class_images} of each needed")
        return replace(result, reasons=(reason,))
    tests = non_inferiority(y, ref, new, points, rules)
    reasons = [f"{metric} change {t['value']:+.4f}, 95 % CI lower bound {t['ci_low']:+.4f} not above "
               f"-{t['margin']:g}" for metric, t in tests.items() if not t["passed"]]
    floor = noise_floor(ref, new, dither, points) if dither is not None and rules.noise_floor else None
    reasons += [f"{f['flips']} flipped decisions at {name} > {f['dither_flips']} under the dither-1 noise floor"
                for name, f in (floor or {}).items() if not f["passed"]]
    return replace(result, passed=not reasons, reasons=tuple(reasons), non_inferiority=tests, noise_floor=floor)


def finite_or_none(obj):
    """Replace nan/inf by None so the JSON report stays standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
