"""Training augmentation on model-input pixels: the basic radiograph set (flips, small rotations,
brightness/contrast) and the acquisition shifts another hospital's images show (issue 13: quarter turns,
inversion, crops and borders, exposure curves, burned-in markers, low resolution, blur, JPEG, noise).

The acquisition shifts reuse the pure functions of `edge_runtime/shifts.py` (the suite that scores them),
with their strengths drawn at random over a range around, not at, the suite's settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from ..edge_runtime import shifts


@dataclass(frozen=True)
class AugmentOptions:
    hflip: float = 0.5            # probability of a left-right flip (laterality is not a fracture sign)
    vflip: float = 0.0            # up-down flips make unnatural anatomy; off by default
    max_rotation: float = 10.0    # degrees, uniform in [-max, max]
    brightness: float = 0.10      # +- fraction of full scale
    contrast: float = 0.15        # +- fraction around the image mean
    # Acquisition shifts: each is the probability it is applied to an augmented view.
    quarter_turns: float = 0.0    # a film rotated by 90, 180 or 270 degrees
    invert: float = 0.0           # polarity: bone dark on a light background
    zoom: float = 0.0             # a tight crop (0.6-0.95 of the side) or a loose frame in a black border
    exposure: float = 0.0         # gamma in [0.5, 2]
    text: float = 0.0             # burned-in side markers and text
    low_res: float = 0.0          # stored at 96-224 px and scaled back up
    blur: float = 0.0             # Gaussian blur, sigma 0.2-1 % of the side
    jpeg: float = 0.0             # JPEG quality 20-70
    noise: float = 0.0            # Gaussian noise, sd 2-12 grey levels


AUGMENTATIONS: dict[str, AugmentOptions] = {
    "basic": AugmentOptions(),
    "robust": AugmentOptions(max_rotation=20.0, contrast=0.3, quarter_turns=0.6, invert=0.3, zoom=0.3,
                             exposure=0.3, text=0.25, low_res=0.25, blur=0.2, jpeg=0.25, noise=0.25),
}
DEFAULT_AUGMENTATION = "robust"


def _maybe(rng: np.random.Generator, probability: float) -> bool:
    return probability > 0 and rng.random() < probability


def _random_texts(rng: np.random.Generator) -> tuple[str, ...]:
    """One to four marker strings unlike the shift suite's own (a side letter, a view, a date, an ID)."""
    pool = [str(rng.choice(["L", "R", "LT", "RT"])), str(rng.choice(["PA", "LAT", "OBL", "AP ERECT", "SUPINE"])),
            f"{int(rng.integers(1990, 2030))}/{int(rng.integers(1, 13)):02d}/{int(rng.integers(1, 29)):02d}",
            f"ID {int(rng.integers(0, 10**7)):07d}"]
    return tuple(pool[i] for i in sorted(rng.choice(len(pool), size=int(rng.integers(1, 5)), replace=False)))


def _acquisition_geometry(gray: np.ndarray, rng: np.random.Generator, opts: AugmentOptions) -> np.ndarray:
    if _maybe(rng, opts.quarter_turns):
        gray = np.ascontiguousarray(np.rot90(gray, int(rng.integers(1, 4))))
    if _maybe(rng, opts.zoom):
        fraction = float(rng.uniform(0.6, 0.95))
        gray = (shifts.zoom_in(fraction) if rng.random() < 0.5 else shifts.zoom_out(fraction))(gray, rng)
    if _maybe(rng, opts.text):
        gray = shifts.markers(_random_texts(rng))(gray, rng)
    return gray


def _acquisition_signal(gray: np.ndarray, rng: np.random.Generator, opts: AugmentOptions) -> np.ndarray:
    if _maybe(rng, opts.invert):
        gray = shifts.invert(gray, rng)
    if _maybe(rng, opts.exposure):
        gray = shifts.gamma(float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))))(gray, rng)
    if _maybe(rng, opts.low_res):
        gray = shifts.low_resolution(int(rng.integers(96, 225)))(gray, rng)
    if _maybe(rng, opts.blur):
        gray = shifts.blur(float(rng.uniform(0.002, 0.01)))(gray, rng)
    if _maybe(rng, opts.jpeg):
        gray = shifts.jpeg(int(rng.integers(20, 71)))(gray, rng)
    if _maybe(rng, opts.noise):
        gray = shifts.noise(float(rng.uniform(2.0, 12.0)))(gray, rng)
    return gray


def augment_pixels(pixels: np.ndarray, rng: np.random.Generator, opts: AugmentOptions = AugmentOptions()) -> np.ndarray:
    """Augment one (S, S, 3) uint8 gray-as-RGB model input; returns a new uint8 array of the same shape."""
    gray = pixels[:, :, 0].astype(np.float32)
    if rng.random() < opts.hflip:
        gray = gray[:, ::-1]
    if rng.random() < opts.vflip:
        gray = gray[::-1, :]
    if opts.max_rotation > 0:
        angle = float(rng.uniform(-opts.max_rotation, opts.max_rotation))
        img = Image.fromarray(gray, mode="F").rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0.0)
        gray = np.asarray(img, dtype=np.float32)
    mean = float(gray.mean())
    gray = (gray - mean) * (1.0 + rng.uniform(-opts.contrast, opts.contrast)) + mean
    gray = gray + 255.0 * rng.uniform(-opts.brightness, opts.brightness)
    out = np.clip(np.floor(gray + 0.5), 0, 255).astype(np.uint8)
    out = _acquisition_signal(_acquisition_geometry(out, rng, opts), rng, opts)
    return np.repeat(np.asarray(out, np.uint8)[:, :, None], pixels.shape[2], axis=2)


def view_augmenter(seed: int, opts: AugmentOptions = AugmentOptions()) -> Callable[[np.ndarray], np.ndarray]:
    """batch -> its augmented copy, drawing from one generator across calls: batches fed in order give exactly
    augmented_views(pixels, 2, seed)[len(pixels):], without ever holding that whole view (training caches it)."""
    rng = np.random.default_rng(seed)
    return lambda batch: np.stack([augment_pixels(p, rng, opts) for p in batch])


def augmented_views(pixels: np.ndarray, views: int, seed: int, opts: AugmentOptions = AugmentOptions()) -> np.ndarray:
    """(N, S, S, 3) -> (N * views, S, S, 3): view 0 is the original, the others are augmented."""
    rng = np.random.default_rng(seed)
    out = [pixels]
    for _ in range(views - 1):
        out.append(np.stack([augment_pixels(p, rng, opts) for p in pixels]))
    return np.concatenate(out, axis=0)
