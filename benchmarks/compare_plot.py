"""latency_vs_auc.png of several runs: every (model, format) on one latency (log) vs AUC axis, one colour per
model, the Pareto front over all of them (optional `plots` extra, like plots.py)."""
from __future__ import annotations

from .plots import draw_pareto, place_labels
from .points import AUC_METRIC


def plot_compare(report: dict, plt):
    """The figure of a compare report (compare.compare_report); None when no row has a latency and an AUC."""
    rows = [r for r in report["rows"] if r["status"] == "ok" and r["p50_ms"] and r["auc"] is not None]
    if not rows:
        return None
    color = {model: f"C{i % 10}" for i, model in enumerate(dict.fromkeys(r["model"] for r in rows))}
    points = [(r["label"], r["p50_ms"], r["auc"]) for r in rows]
    colors = [color[r["model"]] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    draw_pareto(ax, points, AUC_METRIC, colors)
    for model, c in color.items():
        ax.scatter([], [], marker="o", color=c, label=model)
    ax.set_title(f"Latency vs {AUC_METRIC.short}, {len(color)} models (up and left is better)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    place_labels(ax, points, colors=colors)
    return fig
