"""A built-in synthetic radiograph set: drawn bones, some with fracture lines. Labeled SYNTHETIC everywhere.

Used by `fracture-edge demo` and the tests, so the whole pipeline runs without real data. The images
only look vaguely like radiographs; numbers measured on them say nothing about real fractures.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..edge_runtime.dataset import NEGATIVE, POSITIVE

log = logging.getLogger(__name__)

SYNTHETIC_NOTE = "SYNTHETIC drawn radiographs (fracture-edge demo data), not real X-rays"


@dataclass(frozen=True)
class SyntheticSpec:
    train: int = 160
    val: int = 60
    test: int = 60
    positive_fraction: float = 0.35
    image_size: int = 128
    seed: int = 0


def draw_radiograph(rng: np.random.Generator, size: int, fractured: bool) -> Image.Image:
    """One 8-bit grayscale 'radiograph': noisy dark background, soft tissue, a bone, maybe a fracture."""
    scale = 4  # draw large, then downsample, for smooth edges
    side = size * scale
    img = Image.new("L", (side, side), int(rng.integers(10, 35)))
    draw = ImageDraw.Draw(img)
    cx, cy = side / 2 + rng.normal(0, side * 0.05, 2)
    draw.ellipse([cx - side * 0.35, cy - side * 0.48, cx + side * 0.35, cy + side * 0.48], fill=int(rng.integers(55, 85)))
    angle = rng.uniform(0, math.pi)
    length, width = side * rng.uniform(0.55, 0.8), side * rng.uniform(0.1, 0.16)
    bone = _bone_polygon(cx, cy, angle, length, width)
    draw.polygon(bone, fill=int(rng.integers(170, 215)))
    inner = _bone_polygon(cx, cy, angle, length * 0.92, width * 0.45)
    draw.polygon(inner, fill=int(rng.integers(120, 160)))  # medullary canal
    if fractured:
        _draw_fracture(draw, rng, cx, cy, angle, length, width)
    img = img.filter(ImageFilter.GaussianBlur(scale * 0.8)).resize((size, size), Image.Resampling.BOX)
    noise = rng.normal(0, 6, (size, size))
    return Image.fromarray(np.clip(np.asarray(img, np.float64) + noise, 0, 255).astype(np.uint8), "L")


def _bone_polygon(cx: float, cy: float, angle: float, length: float, width: float) -> list[tuple[float, float]]:
    dx, dy = math.cos(angle), math.sin(angle)
    px, py = -dy, dx
    hl, hw = length / 2, width / 2
    return [(cx + sx * hl * dx + sy * hw * px, cy + sx * hl * dy + sy * hw * py)
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]


def _draw_fracture(draw: ImageDraw.ImageDraw, rng: np.random.Generator, cx: float, cy: float,
                   angle: float, length: float, width: float) -> None:
    """A dark, jagged line crossing the bone somewhere along its shaft."""
    along = rng.uniform(-0.3, 0.3) * length
    dx, dy = math.cos(angle), math.sin(angle)
    fx, fy = cx + along * dx, cy + along * dy
    tilt = angle + math.pi / 2 + rng.uniform(-0.5, 0.5)
    tx, ty = math.cos(tilt), math.sin(tilt)
    reach = width * 0.75
    points = [(fx + t * reach * tx + rng.normal(0, width * 0.06), fy + t * reach * ty + rng.normal(0, width * 0.06))
              for t in np.linspace(-1, 1, 7)]
    draw.line(points, fill=int(rng.integers(15, 45)), width=max(2, int(width * rng.uniform(0.25, 0.4))))


def write_synthetic_dataset(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write split/class/*.png under `root` plus a README saying the data is synthetic. Returns root."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    for split, count in (("train", spec.train), ("val", spec.val), ("test", spec.test)):
        n_pos = max(1, round(count * spec.positive_fraction))
        for i in range(count):
            fractured = i < n_pos
            folder = root / split / (POSITIVE if fractured else NEGATIVE)
            folder.mkdir(parents=True, exist_ok=True)
            draw_radiograph(rng, spec.image_size, fractured).save(folder / f"synthetic_{split}_{i:04d}.png")
    (root / "README.txt").write_text(SYNTHETIC_NOTE + "\n", encoding="utf-8")
    log.info("wrote %d synthetic images to %s", spec.train + spec.val + spec.test, root)
    return root
