"""RUN/samples_test.png: the test images a reader should look at first, with probability and label.

Three rows at the balanced threshold: the most confident correct calls, the most confident wrong ones,
and the borderline ones (closest to the threshold). Borders: green correct, red wrong.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..edge_runtime.decoding import decode_gray
from ..edge_runtime.errors import FractureEdgeError

log = logging.getLogger(__name__)

PER_ROW = 6
LABEL_NAMES = ("not fractured", "fractured")


def pick_samples(targets: np.ndarray, probs: np.ndarray, threshold: float, k: int = PER_ROW) -> dict[str, list[int]]:
    """Indices per row: confident correct, confident wrong (by distance from the threshold), borderline."""
    decided = probs >= threshold
    margin = np.abs(probs - threshold)
    correct = np.flatnonzero(decided == (targets == 1))
    wrong = np.flatnonzero(decided != (targets == 1))
    by_margin = lambda idx: idx[np.argsort(-margin[idx], kind="stable")]  # noqa: E731
    half = k // 2
    # confident correct: half from each class so the row is not all negatives
    pos = [i for i in by_margin(correct) if targets[i] == 1][:half]
    neg = [i for i in by_margin(correct) if targets[i] == 0][:k - len(pos)]
    return {"most confident correct": [int(i) for i in pos + neg],
            "most confident wrong": [int(i) for i in by_margin(wrong)[:k]],
            "borderline": [int(i) for i in np.argsort(margin, kind="stable")[:k]]}


def write_sample_grid(out: Path, paths: list[str], targets: np.ndarray, probs: np.ndarray, threshold: float,
                      name: str = "samples_test.png") -> Path | None:
    """Render the grid (returns its path; None when matplotlib is missing or there are no images)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no sample grid")
        return None
    targets, probs = np.asarray(targets), np.asarray(probs, dtype=np.float64)
    rows = pick_samples(targets, probs, threshold)
    if not any(rows.values()):
        return None
    fig, axes = plt.subplots(len(rows), PER_ROW, figsize=(2.1 * PER_ROW, 2.5 * len(rows)), squeeze=False)
    for r, (title, picks) in enumerate(rows.items()):
        for c in range(PER_ROW):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(picks):
                ax.axis("off")
                continue
            i = picks[c]
            try:
                ax.imshow(decode_gray(paths[i]), cmap="gray", vmin=0, vmax=255)
            except FractureEdgeError as exc:
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
                log.warning("sample grid: %s", exc)
            ok = (probs[i] >= threshold) == (targets[i] == 1)
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if ok else "tab:red")
                spine.set_linewidth(3)
            ax.set_title(f"P={probs[i]:.2f}  true: {LABEL_NAMES[int(targets[i])]}\n{Path(paths[i]).name}", fontsize=7)
        axes[r][0].set_ylabel(title, fontsize=9)
    fig.suptitle(f"Test images at the balanced threshold {threshold:.2f} (green: correct, red: wrong)", fontsize=10)
    fig.tight_layout()
    path = out / name
    tmp = path.with_name("." + path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
