"""Which measurement stands for a bench row in a one-line summary (the Pareto plots, the compare table): its
batch-1 speed row with the most threads, scored by its own accuracy row (every Keras path by the
`keras (tf.function)` pass, the only Keras path that runs one)."""
from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Callable

KERAS_SCORED = "keras (tf.function)"   # the Keras path that runs the accuracy pass (runner.ACCURACY_KERAS_MODE)


@dataclass(frozen=True)
class ParetoMetric:
    """The accuracy axis of a latency Pareto plot: how to read it from an accuracy row, and its words."""
    read: Callable[[dict], float | None]
    axis: str
    short: str


F1_METRIC = ParetoMetric(lambda summary: summary["balanced"]["f1"], "F1 at the balanced threshold", "F1")
AUC_METRIC = ParetoMetric(lambda summary: summary.get("auc"), "ROC AUC", "AUC")


def batch1_rows(report: dict) -> dict[str, dict]:
    """label -> its ok batch-1 speed row with the most threads, in report order."""
    best: dict[str, dict] = {}
    for r in report["rows"]:
        if r["status"] != "ok" or r["batch"] != 1:
            continue
        if r["label"] not in best or r["threads"] > best[r["label"]]["threads"]:
            best[r["label"]] = r
    return best


def ok_accuracy(report: dict) -> dict[str, dict]:
    """label -> its accuracy row, for the rows whose accuracy pass ran."""
    return {r["label"]: r for r in report["accuracy"] if r["status"] == "ok"}


def scored_by(label: str, fmt: str, scored: Container[str]) -> str | None:
    """The label of the accuracy row that scores a speed row: its own, else the Keras one for a Keras path."""
    return label if label in scored else (KERAS_SCORED if fmt == "keras" else None)


def pareto_points(report: dict, metric: ParetoMetric = F1_METRIC) -> list[tuple[str, float, float]]:
    """(label, p50 ms, metric) for each format: its batch-1 row with the most threads, and its accuracy row."""
    value = {label: metric.read(r["summary"]) for label, r in ok_accuracy(report).items()}
    value = {label: v for label, v in value.items() if v is not None}
    points = []
    for label, row in batch1_rows(report).items():
        key = scored_by(label, row["format"], value)
        if key in value:
            points.append((label, row["latency"]["p50_ms"], value[key]))
    return points
