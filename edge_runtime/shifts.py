"""Named, seeded acquisition shifts on model inputs: how a hospital's images can differ from the training set's.

Each shift is a pure function of (grey image, rng) -> grey image of the same shape, uint8 in and out,
applied to the model input (after the shared preprocessing, before the gray->RGB repeat). Everything
random is drawn from the generator passed in, so `apply_shift(name, pixels, seed)` is deterministic.
numpy + pillow only: the suite runs wherever the edge runtime runs.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .preprocessing import resize_gray

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def _resize(gray: np.ndarray, size: int) -> np.ndarray:
    """Square resize with the contract's own filter (so a shift adds only what it names)."""
    return _to_uint8(resize_gray(gray.astype(np.float64), size))


def invert(gray, rng):
    """Polarity inversion: bone dark on a light background."""
    return 255 - gray


def rotate_quarter(turns: int) -> Shift:
    return lambda gray, rng: np.ascontiguousarray(np.rot90(gray, turns))


def rotate_degrees(angle: float) -> Shift:
    """A tilted film: bilinear rotation about the centre, black where the film ends."""
    return lambda gray, rng: np.asarray(Image.fromarray(gray).rotate(angle, Image.BILINEAR, fillcolor=0))


def hflip(gray, rng):
    return np.ascontiguousarray(gray[:, ::-1])


def zoom_in(fraction: float) -> Shift:
    """A tight crop: the central `fraction` of the image, scaled back to full size."""
    def shift(gray, rng):
        n = gray.shape[0]
        k = max(2, int(round(n * fraction)))
        top = (n - k) // 2
        return _resize(gray[top:top + k, top:top + k], n)
    return shift


def zoom_out(fraction: float) -> Shift:
    """A loose frame: the image shrunk to `fraction` of the side, in a black border."""
    def shift(gray, rng):
        n = gray.shape[0]
        k = max(2, int(round(n * fraction)))
        out = np.zeros_like(gray)
        top = (n - k) // 2
        out[top:top + k, top:top + k] = _resize(gray, k)
        return out
    return shift


def markers(texts: tuple[str, ...]) -> Shift:
    """Burned-in side markers and text lines, white, at seeded places (size relative to the image), and a
    white square."""
    def shift(gray, rng):
        n = gray.shape[0]
        image = Image.fromarray(gray)
        draw = ImageDraw.Draw(image)
        font_size = max(8, n // 12)
        try:
            from PIL import ImageFont
            font = ImageFont.load_default(size=font_size)
        except TypeError:  # pillow < 10.1 has no sized default font
            font = None
        for text in texts:
            x, y = (int(v) for v in rng.integers(0, max(1, n - 4 * font_size), size=2))
            draw.text((x, y), text, fill=255, font=font)
        box = int(rng.integers(n // 20, n // 8))
        x, y = (int(v) for v in rng.integers(0, n - box, size=2))
        draw.rectangle((x, y, x + box, y + box), fill=255)
        return np.asarray(image)
    return shift


burned_in_text = markers(("L", "R", "AP 2024-03-11", "STANDING"))


def gamma(value: float) -> Shift:
    """Another exposure curve: 255 * (x / 255) ** value."""
    table = _to_uint8(255.0 * (np.arange(256) / 255.0) ** value)
    return lambda gray, rng: table[gray]


def contrast(factor: float) -> Shift:
    """Flatter contrast around the image's own mean."""
    def shift(gray, rng):
        mean = gray.mean()
        return _to_uint8(mean + factor * (gray.astype(np.float64) - mean))
    return shift


def jpeg(quality: int) -> Shift:
    """Heavy lossy compression, as a PACS export or a phone photo of a screen."""
    def shift(gray, rng):
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("L"))
    return shift


def blur(sigma_fraction: float) -> Shift:
    """Gaussian blur with a radius relative to the image side (motion, a soft detector)."""
    def shift(gray, rng):
        radius = sigma_fraction * gray.shape[0]
        return np.asarray(Image.fromarray(gray).filter(ImageFilter.GaussianBlur(radius)))
    return shift


def noise(sd: float) -> Shift:
    """Additive Gaussian noise, `sd` grey levels (a low-dose, noisy detector)."""
    return lambda gray, rng: _to_uint8(gray + rng.normal(0.0, sd, gray.shape))


def dither(levels: int) -> Shift:
    """Each pixel moved by a uniform integer in [-levels, levels]: as small as a change of JPEG decoder or
    resampler can be. Not an acquisition shift: it measures how stable the decisions are."""
    return lambda gray, rng: _to_uint8(gray + rng.integers(-levels, levels + 1, gray.shape))


def resample_bicubic(gray, rng):
    """The model input passed through a second resampler: up 2x with bicubic, back down with a box filter.
    Not an acquisition shift: another viewer's or converter's interpolation, as small as a dither."""
    n = gray.shape[0]
    up = Image.fromarray(gray).resize((2 * n, 2 * n), Image.Resampling.BICUBIC)
    return np.asarray(up.resize((n, n), Image.Resampling.BOX))


def low_resolution(side: int) -> Shift:
    """A small stored image: down to `side` pixels and back up with the contract's filter."""
    def shift(gray, rng):
        n = gray.shape[0]
        return _resize(_resize(gray, min(side, n)), n)
    return shift


SHIFTS: dict[str, Shift] = {
    "invert": invert,
    "rotate-90": rotate_quarter(1),
    "rotate-180": rotate_quarter(2),
    "rotate-270": rotate_quarter(3),
    "tilt+15": rotate_degrees(15.0),
    "tilt-15": rotate_degrees(-15.0),
    "hflip": hflip,
    "zoom-in-0.7": zoom_in(0.7),
    "zoom-out-0.7": zoom_out(0.7),
    "burned-in-text": burned_in_text,
    "gamma-0.6": gamma(0.6),
    "gamma-1.6": gamma(1.6),
    "contrast-0.6": contrast(0.6),
    "jpeg-30": jpeg(30),
    "blur": blur(1.0 / 160.0),
    "noise-8": noise(8.0),
    "low-res-128": low_resolution(128),
    "dither-1": dither(1),
    "jpeg-90": jpeg(90),
    "resample-bicubic": resample_bicubic,
}


# Invisible changes, scored like shifts (decisions kept at both thresholds) but left out of the worst / mean over
# acquisition shifts: a +-1 grey-level dither, a re-encode at JPEG quality 90, a second resampler.
STABILITY_PROBES = ("dither-1", "jpeg-90", "resample-bicubic")


def shift_names() -> tuple[str, ...]:
    return tuple(SHIFTS)


def apply_shift(name: str, pixels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Apply shift `name` to model inputs (N, S, S, C) uint8 (gray repeated); image i uses rng(seed, i)."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; valid: {', '.join(SHIFTS)}")
    if pixels.ndim != 4 or pixels.dtype != np.uint8 or pixels.shape[1] != pixels.shape[2]:
        raise ValueError(f"expected (N, S, S, C) uint8 square model inputs, got {pixels.shape} {pixels.dtype}")
    shift = SHIFTS[name]
    out = np.empty_like(pixels)
    for i, image in enumerate(pixels):
        gray = shift(np.ascontiguousarray(image[:, :, 0]), np.random.default_rng([seed, i]))
        out[i] = np.asarray(gray, dtype=np.uint8)[:, :, None]
    return out
