"""PNG plots of a training run: learning curves, ROC, precision-recall, confusion matrices."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..edge_runtime import atomic
from ..edge_runtime.metrics import confusion, pr_curve, roc_auc, roc_curve
from ..edge_runtime.bundle_schema import THRESHOLD_NAMES

log = logging.getLogger(__name__)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: plots skipped (pip install \"fracture-edge[plots]\")")
        return None
    return plt


def _save(fig, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def plot_history(plt, history: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for stage, hist in history.items():
        epochs = np.arange(1, len(hist.get("loss", [])) + 1) + offset
        for key, ax in (("loss", axes[0]), ("auc", axes[1])):
            if key in hist:
                ax.plot(epochs, hist[key], label=f"{stage} train")
            if f"val_{key}" in hist:
                ax.plot(epochs, hist[f"val_{key}"], "--", label=f"{stage} val")
        offset += len(epochs)
    for ax, title in zip(axes, ("loss (train: class-weighted BCE, val: BCE)", "AUC")):
        ax.set_title(title)
        ax.set_xlabel("epoch (stages concatenated)")
        ax.legend()
        ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def plot_roc_pr(plt, splits: dict, probs: dict, thresholds: dict, path: Path) -> None:
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name in ("val", "test"):
        y, p = splits[name].targets, probs[name]
        fpr, tpr, _ = roc_curve(y, p)
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y, p):.3f})")
        recall, precision = pr_curve(y, p)
        pr_ax.plot(recall, precision, label=name)
        for tname, marker in (("balanced", "o"), ("screening", "s")):
            c = confusion(y, p, thresholds[tname])
            sens = c["tp"] / max(c["tp"] + c["fn"], 1)
            fpr_t = c["fp"] / max(c["fp"] + c["tn"], 1)
            roc_ax.plot([fpr_t], [sens], marker, color="black", alpha=0.6,
                        label=f"{tname} threshold" if name == "test" else None)
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.set(title="ROC", xlabel="1 - specificity", ylabel="sensitivity")
    pr_ax.set(title="Precision-recall (fractured)", xlabel="recall (sensitivity)", ylabel="precision")
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "upper right")
        ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def plot_confusions(plt, split, probs: np.ndarray, thresholds: dict, path: Path) -> None:
    """Both thresholds side by side; counts in white on dark cells, the class names only on the left axis."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2), constrained_layout=True)
    for ax, tname in zip(axes, THRESHOLD_NAMES):
        c = confusion(split.targets, probs, thresholds[tname])
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(matrix, cmap="Blues", vmin=0)
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=13,
                    color="white" if v > matrix.max() / 2 else "black")
        ax.set_xticks([0, 1], ["not_fractured", "fractured"])
        ax.set_yticks([0, 1], ["not_fractured", "fractured"] if ax is axes[0] else ["", ""])
        ax.set(title=f"{split.name}: {tname} (t={thresholds[tname]:.3f})", xlabel="predicted",
               ylabel="true" if ax is axes[0] else "")
    _save(fig, path)
    plt.close(fig)


def write_training_plots(out: Path, history: dict, splits: dict, probs: dict, thresholds: dict) -> list[Path]:
    plt = _pyplot()
    if plt is None:
        return []
    paths = [out / "history.png", out / "roc_pr.png", out / "confusion_test.png"]
    plot_history(plt, history, paths[0])
    plot_roc_pr(plt, splits, probs, thresholds, paths[1])
    plot_confusions(plt, splits["test"], probs["test"], thresholds, paths[2])
    return paths
