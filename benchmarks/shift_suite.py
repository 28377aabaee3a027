"""`bench --shifts`: each row's AUC (95 % CI) under the acquisition shifts, from the workers' shifted passes.

The workers score the shifted images through the same predictor as the accuracy pass (benchmarks/worker.py);
this module turns their probabilities into rows with edge_runtime.shift_scores (the one implementation that
`eval --shifts` uses too) and renders the bench.md section: one column per row, one line per shift.
"""
from __future__ import annotations

import numpy as np

from ..edge_runtime.confidence import N_RESAMPLES, format_ci, has_both_classes
from ..edge_runtime.shift_scores import score_shifts
from ..edge_runtime.shifts import STABILITY_PROBES


def shift_suite(finished: list[tuple], labels: np.ndarray, thresholds: dict, names: tuple[str, ...],
                seed: int = 0) -> dict | None:
    """{"names", "seed", "probes", "resamples", "rows": {label: scores | failure}}; None when no shift was asked."""
    if not names:
        return None
    rows = {}
    for job, result in finished:
        if job.accuracy:
            rows[job.label] = {"format": job.format, **_row(result, labels, thresholds, seed)}
    return {"names": list(names), "seed": seed, "probes": [n for n in names if n in STABILITY_PROBES],
            "resamples": N_RESAMPLES, "rows": rows}


def _row(result: dict, labels: np.ndarray, thresholds: dict, seed: int) -> dict:
    accuracy = result.get("accuracy") or {}
    if accuracy.get("status") != "ok":
        return {"status": "failed", "reason": accuracy.get("reason") or result.get("reason") or "accuracy pass did not run"}
    if not has_both_classes(labels):
        return {"status": "failed", "reason": "the shift suite needs at least two images of each class"}
    passes = result.get("shifts") or {}
    shifted = {name: np.asarray(p["probs"], dtype=np.float64) for name, p in passes.items() if p.get("status") == "ok"}
    failed = {name: p.get("reason", "unknown failure") for name, p in passes.items() if p.get("status") != "ok"}
    clean = np.asarray(accuracy["probs"], dtype=np.float64)
    return {"status": "ok", **score_shifts(labels, clean, shifted, thresholds, seed=seed), "failed_shifts": failed}


def shift_lines(suite: dict | None) -> list[str]:
    """The bench.md section: AUC (95 % CI) per shift and row, the worst and the mean, the probes apart."""
    if not suite:
        return []
    rows = {label: row for label, row in suite["rows"].items() if row["status"] == "ok"}
    lines = ["", "## Acquisition shifts", "",
             f"AUC (95 % CI, {suite['resamples']} stratified bootstrap resamples) of each row on the same images "
             f"shifted (seed {suite['seed']}), through the same worker and runtime as the accuracy pass; "
             "the worst and the mean are over the acquisition shifts, stability probes "
             f"({', '.join(STABILITY_PROBES)}: each pixel moved by at most one grey level) are listed apart."]
    if not rows:
        return lines + ["", "No row was scored (see the rows that did not run)."]
    labels = list(rows)
    lines += ["", "| shift | " + " | ".join(labels) + " |", "|---|" + "--:|" * len(labels),
              "| clean | " + " | ".join(format_ci(rows[label]["clean"]) for label in labels) + " |"]
    acquisition = [n for n in suite["names"] if n not in suite["probes"]]
    lines += [_line(name, rows, labels) for name in acquisition]
    if acquisition:
        lines.append("| **worst** | " + " | ".join(_worst(rows[label]) for label in labels) + " |")
        lines.append(f"| **mean of {len(acquisition)}** | "
                     + " | ".join(_mean(rows[label]) for label in labels) + " |")
    lines += [_line(name, rows, labels, " (probe)") for name in suite["probes"]]
    failed = [f"- {label}: {name}: {reason}" for label, row in rows.items()
              for name, reason in row.get("failed_shifts", {}).items()]
    return lines + (["", "Shifts that failed:", *failed] if failed else [])


def _line(name: str, rows: dict, labels: list[str], suffix: str = "") -> str:
    cells = [format_ci(rows[label]["shifts"][name]["auc"]) if name in rows[label]["shifts"] else "–"
             for label in labels]
    return f"| {name}{suffix} | " + " | ".join(cells) + " |"


def _worst(row: dict) -> str:
    return f"{row['worst']['auc']:.3f} ({row['worst']['shift']})" if row.get("worst") else "–"


def _mean(row: dict) -> str:
    return "–" if row.get("mean_auc") is None else f"{row['mean_auc']:.3f}"
