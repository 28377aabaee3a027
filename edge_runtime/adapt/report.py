"""Honest numbers for an adapted head: nested cross-validation with 95 % CIs, beside a trivial baseline and the
base model, and the rule that says whether the adaptation clearly beats the baseline. numpy only.

The baseline is the same procedure (same folds, C grid, thresholds) on four image statistics only (mean and SD
of the decoded grey levels, width, height). Rule: the adapted head *clearly beats* it when the 95 % CI of the
paired AUC difference (adapted - baseline, stratified bootstrap on the same images) lies above 0; otherwise
adapt warns loudly (the features may carry nothing the image size and exposure do not).
"""
from __future__ import annotations

import numpy as np

from .cv import nested_scores
from ..confidence import auc_ci, format_ci, operating_point_cis, paired_auc_difference
from ..bundle_schema import THRESHOLD_NAMES

RULE = ("the adapted head clearly beats the baseline when the 95 % CI of the paired AUC difference "
        "(adapted - baseline, stratified bootstrap, same images) lies above 0")
REPORT_JSON, REPORT_MD = "adapt_report.json", "adapt_report.md"


def _rates(y: np.ndarray, decided: np.ndarray) -> dict:
    cis = operating_point_cis(y, decided.astype(np.float64), 0.5)
    return {name: cis[name] for name in ("sensitivity", "specificity")}


def _scored(y: np.ndarray, scores, target: float, folds: int, seed: int) -> tuple[dict, np.ndarray]:
    nested = nested_scores(scores, y, target, k=folds, seed=seed)
    entry = {"auc": auc_ci(y, nested.probabilities), "fold_C": list(nested.fold_C)}
    entry.update({name: _rates(y, nested.decisions[name]) for name in THRESHOLD_NAMES})
    return entry, nested.probabilities


def evaluate_adaptation(local, base_thresholds: dict, target: float, folds: int, seed: int) -> dict:
    """{"adapted", "baseline", "base_model", "adapted_minus_baseline_auc", "adapted_minus_base_auc",
    "beats_baseline", "rule", "out_of_fold"} on the local set."""
    y = local.targets
    adapted, adapted_probs = _scored(y, local.features, target, folds, seed)
    baseline, baseline_probs = _scored(y, local.image_stats, target, folds, seed)
    base = {"auc": auc_ci(y, local.base_probabilities)}
    for name in THRESHOLD_NAMES:
        base[name] = _rates(y, local.base_probabilities >= float(base_thresholds[name]))
        base[name]["threshold"] = float(base_thresholds[name])
    versus_baseline = paired_auc_difference(y, baseline_probs, adapted_probs)
    return {"method": f"nested {folds}-fold stratified cross-validation (C and thresholds chosen inside each fold)",
            "adapted": adapted, "baseline": baseline, "base_model": base,
            "adapted_minus_baseline_auc": versus_baseline,
            "adapted_minus_base_auc": paired_auc_difference(y, local.base_probabilities, adapted_probs),
            "beats_baseline": bool(versus_baseline["ci_low"] > 0), "rule": RULE,
            "out_of_fold": {"paths": list(local.paths), "targets": y.tolist(),
                            "adapted": adapted_probs.tolist(), "baseline": baseline_probs.tolist(),
                            "base_model": local.base_probabilities.tolist()}}


def baseline_warning(evaluation: dict) -> str | None:
    """The loud line when the adapted head does not clearly beat the image-statistics baseline."""
    if evaluation["beats_baseline"]:
        return None
    diff = evaluation["adapted_minus_baseline_auc"]
    return (f"the adapted head does NOT clearly beat a baseline fitted on image statistics only (mean, SD, width, "
            f"height): CV AUC {evaluation['adapted']['auc']['value']:.3f} vs {evaluation['baseline']['auc']['value']:.3f}, "
            f"difference {format_ci(diff)} includes 0 or less; do not deploy it on these numbers")


def _row(name: str, entry: dict) -> str:
    cells = [format_ci(entry["auc"])]
    for point in THRESHOLD_NAMES:
        cells += [format_ci(entry[point]["sensitivity"]), format_ci(entry[point]["specificity"])]
    return f"| {name} | " + " | ".join(cells) + " |"


def render_markdown(report: dict) -> str:
    """adapt_report.md from adapt_report.json's content."""
    ev, counts = report["evaluation"], report["counts"]
    lines = [f"# Adaptation of `{report['base_run']}` to `{report['data']}`", "",
             f"{report['date']}; features from `{report['format']}`; {counts.get('fractured', 0)} fractured, "
             f"{counts.get('not_fractured', 0)} not fractured; {len(report['skipped'])} image(s) skipped. "
             f"C = {report['C']:.3g} (L2, class-weighted logistic head on {report['features']} features); thresholds "
             f"balanced {report['thresholds']['balanced']:.3f}, screening {report['thresholds']['screening']:.3f} "
             f"(target sensitivity {report['thresholds']['screening_target_sensitivity']}).", "",
             f"Numbers: {ev['method']}, 95 % CIs by stratified bootstrap. The base model is scored as it is "
             "(its own thresholds, nothing fitted).", "",
             "| model | AUC | sensitivity (balanced) | specificity (balanced) | sensitivity (screening) | "
             "specificity (screening) |", "|---|---|---|---|---|---|",
             _row("adapted head (features)", ev["adapted"]), _row("baseline (image statistics)", ev["baseline"]),
             _row("base model, unchanged", ev["base_model"]), "",
             f"AUC adapted - baseline: {format_ci(ev['adapted_minus_baseline_auc'])}; adapted - base model: "
             f"{format_ci(ev['adapted_minus_base_auc'])} (paired bootstrap).", "",
             f"Rule: {ev['rule']}. Verdict: **{'beats the baseline' if ev['beats_baseline'] else 'does NOT clearly beat the baseline'}**.",
             ""]
    if report["warnings"]:
        lines += ["Warnings:", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    if report["skipped"]:
        lines += ["Skipped images:", ""] + [f"- `{path}`: {reason}" for path, reason in report["skipped"]] + [""]
    lines += [f"Local set listing sha256 `{report['local_set_sha256']}`; base bundle sha256 "
              f"`{report['base_bundle_sha256']}`. Phase times (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()) + ".", ""]
    return "\n".join(lines)
