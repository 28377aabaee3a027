"""PNG plots of a bench report (optional `plots` extra): latency vs AUC and vs F1 Paretos, ROC overlay, latency spread,
AUC per acquisition shift (bench --shifts)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from ..edge_runtime import atomic
from . import stats
from .points import AUC_METRIC, F1_METRIC, ParetoMetric, pareto_points

log = logging.getLogger(__name__)


PLOT_NAMES = ("latency_vs_auc.png", "latency_vs_f1.png", "roc.png", "latency_distribution.png",
              "shifts.png")   # every plot bench draws


def write_plots(report: dict, out_dir: str | Path, drawers: dict[str, Callable] | None = None) -> list[Path]:
    """Write every plot the report has data for (drawers: file name -> draw(report, plt) returning a figure or
    None; default: bench's PLOT_NAMES); without matplotlib, log a note and write nothing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("plots skipped: matplotlib is not installed (pip install \".[plots]\")")
        return []
    out_dir = Path(out_dir)
    written = []
    drawers = drawers or dict(zip(PLOT_NAMES, (plot_pareto_auc, plot_pareto, plot_roc, plot_latency_spread, plot_shifts)))
    for name, draw in drawers.items():
        fig = draw(report, plt)
        if fig is None:
            continue
        try:
            with atomic.atomic_path(out_dir / name) as tmp:
                fig.savefig(tmp, dpi=120, bbox_inches="tight")
        finally:
            plt.close(fig)
        written.append(out_dir / name)
    return written


def plot_pareto(report: dict, plt, metric: ParetoMetric = F1_METRIC):
    points = pareto_points(report, metric)
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    draw_pareto(ax, points, metric)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    place_labels(ax, points)
    return fig


def draw_pareto(ax, points: list[tuple[str, float, float]], metric: ParetoMetric,
                colors: list[str] | None = None) -> None:
    """Points (label, p50 ms, metric) on a log latency axis: the Pareto front as circles joined by a dashed line,
    the dominated points as crosses; red and blue, or each in its own colour (one per model) when given.
    The caller adds the legend and then the labels (place_labels needs the final axis limits)."""
    front = set(stats.pareto_front([(lat, y) for _, lat, y in points]))
    for i, (_, lat, y) in enumerate(points):
        color = colors[i] if colors else "C0" if i in front else "C3"
        ax.scatter(lat, y, s=60, marker="o" if i in front else "x", color=color, zorder=3)
    front_pts = sorted((points[i][1], points[i][2]) for i in front)
    ax.plot([p[0] for p in front_pts], [p[1] for p in front_pts], "--", color="grey" if colors else "C0", alpha=0.6,
            label="Pareto front")
    ax.scatter([], [], marker="x", color="grey" if colors else "C3",
               label=f"dominated (slower and no better {metric.short})")
    _log_ms_axis(ax)
    _pad_limits(ax, [lat for _, lat, _ in points], [y for _, _, y in points])
    ax.set_xlabel("p50 latency, batch 1 (ms, log scale)")
    ax.set_ylabel(metric.axis)
    ax.set_title(f"Latency vs {metric.short} (up and left is better)")
    ax.grid(True, alpha=0.3)


def plot_pareto_auc(report: dict, plt):
    return plot_pareto(report, plt, AUC_METRIC)


def _pad_limits(ax, xs: list[float], ys: list[float]) -> None:
    """Room around the points for their labels: 35 % of a decade on the log x axis, 25 % of the F1 span."""
    import math

    low, high = math.log10(min(xs)), math.log10(max(xs))
    ax.set_xlim(10 ** (low - 0.35), 10 ** (high + 0.35))
    span = max(max(ys) - min(ys), 0.004)
    ax.set_ylim(min(ys) - 0.25 * span, max(ys) + 0.25 * span)


# label offsets in points (dx, dy): beside the point, then above or below it, then further away; nearest first
_OFFSETS = sorted([(dx, dy) for dx in (7, 0, -7) for dy in (4, -13, 15, -24, 26, -35, 37, -46, 48, -57, 59, -68)],
                  key=lambda o: (abs(o[1]) + (4 if o[0] == 0 else 0), -o[0]))
_NEAR_PX = 45   # a neighbour this close on the right sends a label to the left first


def place_labels(ax, points: list[tuple[str, float, float]], fontsize: int = 8,
                 colors: list[str] | None = None) -> None:
    """Annotate each (label, x, y) where its text overlaps no marker and no other label and stays inside the axes.

    Places are tried nearest first (beside, above or below, then further away); a point with a close
    neighbour on its right tries its left side first. Every label has a thin leader line to its point, so a
    label moved up or down still names the right one. Text extents are measured with the figure's renderer.
    colors: one text colour per point (default: matplotlib's).
    """
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    pixels = [ax.transData.transform((x, y)) for _, x, y in points]
    obstacles = [Bbox.from_extents(px - 6, py - 6, px + 6, py + 6) for px, py in pixels]

    def annotate(label, x, y, dx, dy, color):
        text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, color=color,
                           ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom" if dy > 0 else "top",
                           arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6, "shrinkA": 1, "shrinkB": 5})
        text.get_window_extent(renderer)  # lays the annotation out; the box below is the text alone, no leader line
        return text, Text.get_window_extent(text, renderer).expanded(1.04, 1.1)

    for i in sorted(range(len(points)), key=lambda i: (-points[i][2], points[i][1])):
        label, x, y = points[i]
        px, py = pixels[i]
        crowded_right = any(0 < qx - px < _NEAR_PX and abs(qy - py) < 12 for qx, qy in pixels)
        candidates = sorted(_OFFSETS, key=lambda o: (abs(o[1]) + (4 if o[0] == 0 else 0), o[0] if crowded_right
                                                      else -o[0]))
        for dx, dy in candidates:
            text, box = annotate(label, x, y, dx, dy, colors[i] if colors else None)
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            if fits and not any(box.overlaps(other) for other in obstacles):
                break
            text.remove()
        else:  # nowhere free: the first place, overlapping, rather than no label
            text, box = annotate(label, x, y, *candidates[0], colors[i] if colors else None)
        obstacles.append(box)


def plot_roc(report: dict, plt):
    rows = [r for r in report["accuracy"] if r["status"] == "ok" and r.get("roc")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    styles = ("-", "--", "-.", ":")
    for i, r in enumerate(rows):
        auc = r["summary"].get("auc")
        ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], styles[i % len(styles)], lw=1.5,
                label=f"{r['label']} (AUC {auc:.4f})" if auc is not None else r["label"])
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, alpha=0.5)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(f"ROC on {report['run']['split']} ({report['run']['n_images']} images)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig


def plot_latency_spread(report: dict, plt):
    rows = [r for r in report["rows"] if r["status"] == "ok" and r.get("samples_ms")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    names = [f"{r['label']} t{r['threads']} b{r['batch']}" for r in rows]
    try:
        ax.boxplot([r["samples_ms"] for r in rows], orientation="horizontal", showfliers=True)
    except TypeError:  # matplotlib < 3.10
        ax.boxplot([r["samples_ms"] for r in rows], vert=False, showfliers=True)
    ax.set_yticks(range(1, len(rows) + 1), names, fontsize=8)
    ax.invert_yaxis()  # first row on top, as in bench.md
    _log_ms_axis(ax)
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_title("Latency distribution per row (t = threads, b = batch)")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def plot_shifts(report: dict, plt):
    """Horizontal grouped bars: one group per shift (clean on top, probes last), one bar per row, 95 % CI whiskers."""
    suite = report.get("shifts") or {}
    rows = {label: row for label, row in suite.get("rows", {}).items() if row.get("status") == "ok"}
    if not rows:
        return None
    probes = suite.get("probes", [])
    groups = ["clean"] + [n for n in suite["names"] if n not in probes] + list(probes)
    k = len(rows)
    height = 0.8 / k
    fig, ax = plt.subplots(figsize=(8, len(groups) * (0.16 * k + 0.14) + 1.8))
    lows = []
    for j, (label, row) in enumerate(rows.items()):
        entries = [row["clean"] if g == "clean" else (row["shifts"].get(g) or {}).get("auc") for g in groups]
        y = [i + (j - (k - 1) / 2) * height for i, e in enumerate(entries) if e]
        values = [e["value"] for e in entries if e]
        low = [e["value"] - e["ci_low"] for e in entries if e]
        high = [e["ci_high"] - e["value"] for e in entries if e]
        lows += [e["ci_low"] for e in entries if e]
        ax.barh(y, values, height=height * 0.9, xerr=[low, high], color=f"C{j}", alpha=0.85, capsize=1.5,
                error_kw={"lw": 0.8}, label=label)
    ax.axvline(0.5, color="grey", lw=1, ls=":", label="chance")
    ax.set_yticks(range(len(groups)), [f"{g} (probe)" if g in probes else g for g in groups], fontsize=8)
    ax.set_ylim(len(groups) - 0.5, -0.5)   # clean on top, as in bench.md
    ax.set_xlim(min(0.4, min(lows) - 0.02), 1.0)
    ax.set_xlabel("AUC (95 % CI, stratified bootstrap)")
    ax.set_title(f"AUC under acquisition shifts ({report['run']['split']}, {report['run']['n_images']} images)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6 / fig.get_figheight()), ncol=min(k + 1, 4), fontsize=8,
              frameon=False)
    return fig


def _log_ms_axis(ax) -> None:
    """Log-scaled x axis with plain-number tick labels (12, 35, 200 rather than 10^1)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _pos: f"{value:g}" if f"{value:e}"[0] in "25" else ""))
