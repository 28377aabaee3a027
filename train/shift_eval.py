"""`fracture-edge eval --shifts`: one AUC (with its 95 % CI) per named acquisition shift of a split.

The split is decoded once; each shift is applied to the model inputs (edge_runtime/shifts.py) and
scored by the requested format, Keras or an exported artifact through the edge runtime. Written to
RUN/shifts_<format>_<split>.{json,md,png} on the run's own data and to
RUN/shifts_<format>_<split>_on-<name>-<hash>.{json,md,png} on any other (result_names.py), so a suite scored on
another dataset never replaces the home one that the model card shows.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..edge_runtime import atomic
from ..edge_runtime.confidence import format_change, format_ci
from ..edge_runtime.errors import FractureEdgeError
from ..edge_runtime.formats import get_format
from ..edge_runtime.model_card import write_model_card
from ..edge_runtime.progress import progress
from ..edge_runtime.shift_scores import score_shifts
from ..edge_runtime.shifts import STABILITY_PROBES, apply_shift, shift_names
from .evaluate import load_run_split
from .result_names import is_home, result_name
from ..edge_runtime.bundle_schema import THRESHOLD_NAMES

log = logging.getLogger(__name__)


def scorer(run: Path, fmt: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function uint8 model inputs -> P(fractured), loading the model once."""
    if fmt == "keras":
        import keras

        from .keras_reference import keras_probs

        path = run / get_format("keras").filename
        if not path.is_file():
            raise FractureEdgeError(f"{path}: Keras model not found in the run folder")
        model = keras.models.load_model(path, compile=False)
        return lambda pixels: keras_probs(model, pixels, "keras")
    from ..edge_runtime.classifier import Classifier
    from ..edge_runtime.batching import RUNTIME_CHUNK, chunks

    classifier = Classifier(run, format=fmt)
    return lambda pixels: np.concatenate([classifier.predict_pixels(pixels[s])
                                          for s in chunks(len(pixels), RUNTIME_CHUNK)])


def evaluate_shifts(run_dir: str, data: str | None, split: str = "test", fmt: str = "keras",
                    names: tuple[str, ...] | None = None, seed: int = 0, resamples: int = 2000) -> dict:
    """AUC + 95 % CI on the clean split and under every shift; the worst and the mean; files written to RUN."""
    started = time.perf_counter()
    run = Path(run_dir)
    names = tuple(names or shift_names())
    bundle, source, loaded = load_run_split(run, data, split, fmt)
    score, y, thresholds = scorer(run, fmt), loaded.targets, bundle["thresholds"]
    clean = score(loaded.pixels)
    shifted = {name: score(apply_shift(name, loaded.pixels, seed))
               for name in progress(names, desc=f"shifts ({fmt})", total=len(names))}
    home = (bundle.get("data") or {}).get("source")
    stem = run / result_name("shifts", fmt, split, source, home)
    result = {"run": str(run), "format": fmt, "data": str(source), "home_data": is_home(source, home),
              "split": split, "n": int(y.size),
              "n_positive": int(y.sum()), "seed": seed, **score_shifts(y, clean, shifted, thresholds, resamples, seed),
              "skipped_unreadable": [list(f) for f in loaded.failures],
              "seconds": round(time.perf_counter() - started, 1), "file": str(_suffixed(stem, ".json"))}
    atomic.write_json(_suffixed(stem, ".json"), result)
    atomic.write_text(_suffixed(stem, ".md"), "\n".join(shift_table_lines(result)) + "\n")
    plot_shifts(result, _suffixed(stem, ".png"))
    log.info("eval --shifts: %s", result["file"])
    write_model_card(run)
    return result


def _suffixed(stem: Path, suffix: str) -> Path:
    """stem + suffix (not with_suffix: a data tag such as 'site.v2-1a2b3c4d' has a dot of its own)."""
    return stem.with_name(stem.name + suffix)


def shift_table_lines(result: dict) -> list[str]:
    """Markdown: one row per shift, AUC (95 % CI) and the paired change against the clean images."""
    elsewhere = "" if result.get("home_data", True) else f" of {result['data']}"
    lines = [f"# Shift suite: {result['format']} on {result['split']}{elsewhere} (n={result['n']}, "
             f"fractured {result['n_positive']}, seed {result['seed']})", "",
             "| shift | AUC (95 % CI) | change vs clean (95 % CI) | p | decisions kept (balanced / screening) |",
             "|---|---|---|---|---|", f"| clean | {format_ci(result['clean'])} | | | |"]
    for name, row in result["shifts"].items():
        kept = row.get("decisions_kept", {})
        kept_text = " / ".join(f"{kept[p]:.1%}" for p in THRESHOLD_NAMES if p in kept)
        delta = row["delta_vs_clean"]
        lines.append(f"| {name} | {format_ci(row['auc'])} | {format_change(delta)} | {delta['p_value']:.3f} "
                     f"| {kept_text} |")
    if result["worst"]:
        lines += ["", f"Worst: {result['worst']['shift']} (AUC {result['worst']['auc']:.3f}); "
                      f"mean over {result['acquisition_shifts']} "
                      f"acquisition shifts: {result['mean_auc']:.3f}. Decisions kept: share of images whose "
                      "decision is the same as on the clean image; the stability probes (dither-1: each pixel +-1 grey "
                      "level; jpeg-90: re-encoded at quality 90; resample-bicubic: a second resampler) are "
                      "invisible changes, not shifts, and are left out of the worst and the mean."]
    return lines


def plot_shifts(result: dict, path: Path) -> None:
    """Horizontal bars: AUC per shift with its CI, the clean AUC and its CI as a band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no shift plot")
        return
    names = list(result["shifts"])[::-1]
    values = np.array([result["shifts"][n]["auc"]["value"] for n in names])
    low = values - np.array([result["shifts"][n]["auc"]["ci_low"] for n in names])
    high = np.array([result["shifts"][n]["auc"]["ci_high"] for n in names]) - values
    clean = result["clean"]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(names) + 2.0))
    ax.axvspan(clean["ci_low"], clean["ci_high"], color="tab:green", alpha=0.15, label="clean 95 % CI")
    ax.axvline(clean["value"], color="tab:green", lw=1.5, label=f"clean AUC {clean['value']:.3f}")
    ax.axvline(0.5, color="grey", lw=1, ls=":", label="chance")
    colors = ["tab:grey" if n in STABILITY_PROBES else "tab:blue" for n in names]
    ax.barh(range(len(names)), values, xerr=[low, high], color=colors, alpha=0.8, capsize=2)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0.4, 1.0)
    ax.set_xlabel("AUC (95 % CI, stratified bootstrap)")
    ax.set_title(f"Shift suite: {result['format']} on {result['split']} (n={result['n']})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
