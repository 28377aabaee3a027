"""Heatmap verification: each artifact's heatmap against the Keras one, and whether it points at the fracture.

Fidelity: Pearson correlation per image between the artifact's heatmap (read through the deployed
runtime, edge_runtime.Classifier) and the Keras model's, on up to PROBE_IMAGES verification images
(all boxed ones first, then a seeded sample); the median and the 5th percentile are reported.

Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", 2016): on fractured
test images with boxes in DATA/boxes.csv (FracAtlas' own boxes, stored-image pixels), a hit is when the
heatmap's peak, taken on the map resized onto the image exactly as the overlay draws it (the input is
the whole image stretched to a square: edge_runtime/heatmap.py), lies inside a box grown by MARGIN_PX
pixels on each side. The same count for the image centre is the chance baseline it must beat.
Images whose stored size differs from the box file's, or that carry an EXIF rotation, are left out
(counted), since their boxes would not line up with the decoded pixels.
"""
from __future__ import annotations

import csv
import gc
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..edge_runtime.heatmap import upsampled
from .extra_outputs import HEATMAP, keras_outputs

log = logging.getLogger(__name__)

BOXES_CSV = "boxes.csv"
MARGIN_PX = 15          # FracAtlas boxes are 10-30 px on the stored images; the usual tolerance (MANIFEST.md)
PROBE_IMAGES = 200      # images for the correlation (boxed ones first)
POINTING_SPLIT = "test"
GRID_PLOT = "heatmaps_test.png"


@dataclass
class HeatmapProbe:
    """The probe images, their Keras heatmaps and (for the boxed ones) the boxes in decoded-image pixels."""

    pixels: np.ndarray                        # (N, S, S, 3) uint8
    paths: tuple[str, ...]
    keras_maps: np.ndarray                    # (N, h, w)
    boxes: dict[int, tuple[tuple[int, int], list[tuple[float, float, float, float]]]]   # i -> ((H, W), boxes)
    skipped: dict[str, int] = field(default_factory=dict)
    keras_facts: dict = field(default_factory=dict)

    def facts(self, maps: np.ndarray) -> dict:
        """Correlation with the Keras heatmaps and the pointing game, for one artifact's maps."""
        corr = np.array([pearson(a, b) for a, b in zip(maps, self.keras_maps)])
        finite = corr[np.isfinite(corr)]
        return {"images": int(len(maps)), "correlation_median": _round(np.median(finite)) if finite.size else None,
                "correlation_p5": _round(np.percentile(finite, 5)) if finite.size else None,
                "correlation_min": _round(finite.min()) if finite.size else None,
                "pointing_game": self.pointing(maps)}

    def pointing(self, maps: np.ndarray) -> dict | None:
        if not self.boxes:
            return None
        hits = [points_inside(peak_point(maps[i], size), boxes, MARGIN_PX) for i, (size, boxes) in self.boxes.items()]
        return {"hit_rate": _round(np.mean(hits)), "hits": int(np.sum(hits)), "images": len(hits),
                "margin_px": MARGIN_PX, "split": POINTING_SPLIT}

    def center_baseline(self) -> dict | None:
        """The pointing game of a map that always peaks at the image centre (what chance looks like)."""
        if not self.boxes:
            return None
        hits = [points_inside((w / 2, h / 2), boxes, MARGIN_PX) for (h, w), boxes in self.boxes.values()]
        return {"hit_rate": _round(np.mean(hits)), "hits": int(np.sum(hits)), "images": len(hits)}


def _round(value) -> float:
    return round(float(value), 4)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two maps over their cells; nan when either is flat (or a single cell)."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 1e-12 else float("nan")


def peak_point(heatmap: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """(x, y) pixel centre of the map's maximum after resizing it onto an image of size (H, W)."""
    height, width = size
    full = upsampled(heatmap, width, height)
    row, col = np.unravel_index(int(np.argmax(full)), full.shape)
    return col + 0.5, row + 0.5


def points_inside(point: tuple[float, float], boxes, margin: float) -> bool:
    x, y = point
    return any(x0 - margin <= x <= x1 + margin and y0 - margin <= y <= y1 + margin for x0, y0, x1, y1 in boxes)


def read_boxes(data_dir: Path, split: str = POINTING_SPLIT) -> dict[str, tuple[tuple[int, int], list]]:
    """{relative path: ((image_h, image_w), [(x0, y0, x1, y1), ...])} of one split of DATA/boxes.csv."""
    found: dict[str, tuple[tuple[int, int], list]] = {}
    with open(data_dir / BOXES_CSV, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["split"] != split:
                continue
            size = (int(row["image_h"]), int(row["image_w"]))
            entry = found.setdefault(row["path"], (size, []))
            entry[1].append(tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1")))
    return found


def stored_size(path: str) -> tuple[tuple[int, int], bool]:
    """((H, W) as stored, whether an EXIF orientation other than 'normal' would rotate it when decoded)."""
    from PIL import Image

    with Image.open(path) as img:
        orientation = img.getexif().get(0x0112, 1)
        return (img.height, img.width), orientation not in (1, None)


def match_boxes(paths: tuple[str, ...], data_dir: Path) -> tuple[dict[int, tuple], dict[str, int]]:
    """{index into paths: ((H, W), boxes)} for the images with boxes, and how many were left out, by reason."""
    if not (data_dir / BOXES_CSV).is_file():
        return {}, {}
    boxes = read_boxes(data_dir)
    matched, skipped = {}, {"size differs from boxes.csv": 0, "EXIF rotation": 0}
    root = os.path.abspath(data_dir)
    for i, path in enumerate(paths):
        rel = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
        if rel not in boxes:
            continue
        size, rotated = stored_size(path)
        if rotated:
            skipped["EXIF rotation"] += 1
        elif size != boxes[rel][0]:
            skipped["size differs from boxes.csv"] += 1
        else:
            matched[i] = boxes[rel]
    return matched, {k: v for k, v in skipped.items() if v}


def build_probe(model, images, data_dir: Path, seed: int = 0) -> HeatmapProbe:
    """Pick the probe images from the verification set and compute the Keras heatmaps on them."""
    boxed, skipped = match_boxes(images.paths, Path(data_dir))
    rest = np.setdiff1d(np.arange(len(images)), np.fromiter(boxed, int, len(boxed)))
    extra = np.random.default_rng(seed).permutation(rest)[:max(0, PROBE_IMAGES - len(boxed))]
    chosen = np.concatenate([np.fromiter(boxed, int, len(boxed)), np.sort(extra)]).astype(int)
    pixels = images.pixels[chosen]
    keras_maps = keras_outputs(model, pixels, (HEATMAP,))[HEATMAP]
    probe = HeatmapProbe(pixels, tuple(images.paths[i] for i in chosen), keras_maps,
                         {j: boxed[i] for j, i in enumerate(chosen) if i in boxed}, skipped)
    probe.keras_facts = {"images": len(chosen), "pointing_game": probe.pointing(keras_maps),
                         "center_baseline": probe.center_baseline(), "boxes_skipped": skipped}
    log.info("heatmap probe: %d images, %d with %s boxes", len(chosen), len(probe.boxes), POINTING_SPLIT)
    return probe


def artifact_heatmaps(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Heatmaps of an artifact through the deployed runtime (its embedded bundle), 8 images at a time."""
    from ..edge_runtime.classifier import Classifier

    classifier = Classifier(path)
    try:
        return np.concatenate([classifier.outputs(pixels[s:s + 8], (HEATMAP,))[1][HEATMAP]
                               for s in range(0, len(pixels), 8)])
    finally:
        del classifier
        gc.collect()


def add_heatmap_facts(rows: list, folder: Path, probe: HeatmapProbe | None) -> list:
    """Each row with facts['heatmap'] (or facts['heatmap_error']), rejected artifacts included; files in `folder`."""
    from dataclasses import replace

    if probe is None:
        return rows
    out = []
    for row in rows:
        path = Path(folder) / row.file
        if row.bytes is None or not path.is_file():
            out.append(row)
            continue
        try:
            facts = {"heatmap": probe.facts(artifact_heatmaps(path, probe.pixels))}
        except Exception as exc:  # one format's problem never hides the others
            log.warning("%s: heatmap check failed: %s", row.format, exc)
            facts = {"heatmap_error": f"{type(exc).__name__}: {exc}"[:300]}
        out.append(replace(row, facts={**row.facts, **facts}))
    return out


def plot_overlays(probe: HeatmapProbe, path: Path, count: int = 12) -> Path | None:
    """A grid of `count` boxed test images with the Keras heatmap and FracAtlas' boxes (green) drawn on."""
    if not probe.boxes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ..edge_runtime import atomic
    from ..edge_runtime.decoding import decode_gray
    from ..edge_runtime.heatmap import normalized, overlay

    chosen = list(probe.boxes)[:count]
    cols = 4
    fig, axes = plt.subplots((len(chosen) + cols - 1) // cols, cols, figsize=(12, 3.4 * ((len(chosen) + 3) // 4)))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), chosen):
        (h, w), boxes = probe.boxes[i]
        picture = overlay(decode_gray(probe.paths[i]), normalized(probe.keras_maps[i]))
        scale = picture.width / w
        ax.imshow(picture)
        for x0, y0, x1, y1 in boxes:
            ax.add_patch(Rectangle((x0 * scale, y0 * scale), (x1 - x0) * scale, (y1 - y0) * scale, fill=False,
                                   edgecolor="lime", linewidth=1.5))
        x, y = peak_point(probe.keras_maps[i], (h, w))
        hit = points_inside((x, y), boxes, MARGIN_PX)
        ax.plot([x * scale], [y * scale], marker="x", color="white", markersize=9, mew=2)
        ax.set_title(f"{Path(probe.paths[i]).name}: {'hit' if hit else 'miss'}", fontsize=9)
    fig.suptitle(f"Keras heatmaps on fractured {POINTING_SPLIT} images; green: FracAtlas boxes, x: peak "
                 f"(hit = within {MARGIN_PX} px of a box)", fontsize=10)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path


def verify_heatmaps(rows: list, run_dir: Path, data_dir, bundle: dict, model, images, meter,
                    artifact_dir: Path | None = None) -> tuple[list, dict | None]:
    """Every row with its heatmap facts, the overlay grid in the run folder, and the report's 'heatmaps' entry.

    Rows' files are read in `artifact_dir` (the export's staging folder; default the run folder). Skipped
    (None) when the bundle declares no heatmap; a failure is logged and reported, never fatal.
    """
    if HEATMAP not in (bundle["output"].get("extra") or {}):
        return rows, None
    try:
        with meter.stage("heatmaps: keras reference and boxes"):
            probe = build_probe(model, images, Path(data_dir))
        with meter.stage(f"heatmaps: every artifact ({len(probe.pixels)} images)"):
            rows = add_heatmap_facts(rows, artifact_dir or run_dir, probe)
        plot = plot_overlays(probe, Path(run_dir) / GRID_PLOT)
    except Exception as exc:  # the probability gates stand on their own; this is extra information
        log.warning("heatmap verification failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return rows, {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return rows, {"keras": probe.keras_facts, "plot": plot.name if plot else None}


def report_lines(rows: list, heatmaps: dict | None) -> list[str]:
    """The export report's heatmap section: fidelity to Keras and the pointing game per format."""
    if not heatmaps:
        return []
    keras = heatmaps.get("keras") or {}
    game, base = keras.get("pointing_game"), keras.get("center_baseline")
    lines = ["", "## Heatmaps (class activation map, a second output of every artifact)", ""]
    if heatmaps.get("error"):
        return lines + [f"Not verified: {heatmaps['error']}"]
    if game:
        lines.append(f"Pointing game on {game['images']} fractured {game['split']} images with FracAtlas boxes: a hit"
                     f" is the heatmap's peak within {game['margin_px']} px of a box (stored-image pixels). Keras: "
                     f"**{game['hit_rate']:.1%}** ({game['hits']}/{game['images']}); image centre (chance "
                     f"baseline): {base['hit_rate']:.1%}." + (f" Left out: {keras['boxes_skipped']}."
                                                               if keras.get("boxes_skipped") else ""))
    else:
        lines.append("Pointing game: no boxes.csv in the verification data, not measured.")
    lines += ["", f"Correlation per image with the Keras heatmap on {keras.get('images')} verification images.", "",
              *([f"Overlays with the boxes: `{heatmaps['plot']}`.", ""] if heatmaps.get("plot") else []),
              "| format | correlation median | correlation 5th pct | pointing game |", "|---|--:|--:|--:|"]
    for row in rows:
        facts = row.facts.get("heatmap")
        if not facts:
            lines.append(f"| {row.format} | – | – | {row.facts.get('heatmap_error', 'no artifact')} |")
            continue
        point = facts.get("pointing_game")
        rate = f"{point['hit_rate']:.1%}" if point else "–"
        lines.append(f"| {row.format}{'' if row.ok else ' (rejected)'} | {_show(facts['correlation_median'])} | "
                     f"{_show(facts['correlation_p5'])} | {rate} |")
    return lines


def _show(value) -> str:
    return "–" if value is None else f"{value:.4f}"
