"""Size limits and pixel conversions shared by decoding.py and dicom.py (both import this module, never each other).

Limits, checked from the header before any pixel is decoded (check_dimensions):
- MAX_PIXELS: at most 32 MP (width x height; for DICOM, x the frames the decoder must hold);
- MAX_SIDE: a long side of at most 16,384 px;
- MAX_ASPECT: long side / short side at most 20.
Why these numbers: while an image is converted, Pillow's (or pydicom's) decoded copy (up to 4 bytes per pixel
for colour, 2 for 16-bit gray) and the float32 result (4 bytes per pixel) are in memory together, at most
8 bytes per pixel, 256 MB at 32 MP; everything else (strips here, the banded resize in preprocessing.py) is a
few MB. So any accepted image stays within 300 MB above the runtime's baseline. The largest radiographs
(43 x 43 cm detectors, stitched long-leg views, 16-bit mammograms) are 9-30 MP; a side over 16,384 px or an
aspect over 20:1 is not a radiograph.

Conversions run one strip of rows at a time (about STRIP_BYTES of working memory) into a float32 array
allocated once. Every output value is computed by the same numpy expression, in the same dtype, as the
whole-image formula (min and max are exact in any order), so strips change no bit of the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .errors import FractureEdgeError

MAX_PIXELS = 32_000_000
MAX_SIDE = 16_384
MAX_ASPECT = 20
STRIP_BYTES = 4 << 20            # working memory of one strip (its float64 values)
DETECTOR_BITS = (8, 10, 12, 14, 16)


class ImageDecodeError(FractureEdgeError):
    """An input file that is not a usable image; the message names the file and the reason."""


def check_dimensions(path, width: int, height: int, frames: int = 1) -> None:
    """Raise ImageDecodeError naming `path` and the limit when an image of this size must not be decoded."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{path}: image has no pixels ({width}x{height})")
    pixels = width * height * max(1, frames)
    what = f"{width}x{height}" + (f" x {frames} frames" if frames > 1 else "")
    if pixels > MAX_PIXELS:
        raise ImageDecodeError(f"{path}: image too large ({what} = {pixels / 1e6:.1f} MP; the limit is "
                               f"{MAX_PIXELS / 1e6:.0f} MP)")
    if max(width, height) > MAX_SIDE:
        raise ImageDecodeError(f"{path}: image too large ({what}: a side of {max(width, height)} px; the limit "
                               f"is {MAX_SIDE} px)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageDecodeError(f"{path}: image too elongated ({what}: aspect ratio "
                               f"{max(width, height) / min(width, height):.0f}:1; the limit is {MAX_ASPECT}:1)")


@dataclass(frozen=True)
class Rows:
    """An image readable a strip at a time: read(r0, r1) -> rows r0..r1 as an array (height first)."""

    read: Callable[[int, int], np.ndarray]
    height: int
    width: int
    channels: int = 1

    def strips(self) -> Iterator[tuple[int, int]]:
        step = max(1, STRIP_BYTES // max(1, self.width * self.channels * 8))
        for start in range(0, self.height, step):
            yield start, min(start + step, self.height)


def array_rows(values: np.ndarray) -> Rows:
    """Rows of an in-memory array (H, W) or (H, W, C)."""
    channels = values.shape[2] if values.ndim == 3 else 1
    return Rows(lambda r0, r1: values[r0:r1], values.shape[0], values.shape[1], channels)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of (..., 3) values, float32, no rounding (rounding happens once, after resize)."""
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def luma_into(source: Rows, out: np.ndarray) -> np.ndarray:
    for r0, r1 in source.strips():
        out[r0:r1] = luma(source.read(r0, r1))
    return out


def copy_into(source: Rows, out: np.ndarray) -> np.ndarray:
    for r0, r1 in source.strips():
        out[r0:r1] = source.read(r0, r1)
    return out


def _finite64(values: np.ndarray) -> np.ndarray:
    return np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def value_range(source: Rows, convert: Callable = _finite64) -> tuple[float, float]:
    """(min, max) over every strip of convert(strip)."""
    low, high = np.inf, -np.inf
    for r0, r1 in source.strips():
        values = convert(source.read(r0, r1))
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    return low, high


def stretch_into(source: Rows, out: np.ndarray) -> np.ndarray:
    """min..max linearly onto 0..255 (a constant image becomes 0); NaNs and infinities become 0."""
    low, high = value_range(source)
    if high <= low:
        out[...] = 0.0
        return out
    for r0, r1 in source.strips():
        out[r0:r1] = ((_finite64(source.read(r0, r1)) - low) * (255.0 / (high - low))).astype(np.float32)
    return out


def integer_gray_into(source: Rows, out: np.ndarray) -> np.ndarray:
    """High-bit-depth grayscale -> 0..255 by the smallest detector bit depth holding its maximum (never clipped);
    values outside 0..65535 are stretched over their own min..max."""
    low, high = value_range(source, lambda v: v.astype(np.float64))
    if low < 0 or high > 2 ** DETECTOR_BITS[-1] - 1:
        return stretch_into(source, out)
    bits = next(b for b in DETECTOR_BITS if high <= 2 ** b - 1)
    for r0, r1 in source.strips():
        out[r0:r1] = (source.read(r0, r1).astype(np.float64) * (255.0 / (2 ** bits - 1))).astype(np.float32)
    return out


def _two_d(values: np.ndarray) -> np.ndarray:
    """Any array as rows (H, rest): a 1-D array is one row."""
    return values.reshape(1, -1) if values.ndim < 2 else values.reshape(values.shape[0], -1)


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) float32 luma, a strip at a time."""
    return luma_into(array_rows(rgb), np.empty(rgb.shape[:2], np.float32))


def stretch(values: np.ndarray) -> np.ndarray:
    """Any array -> float32 0..255 over its own min..max, a strip at a time (see stretch_into)."""
    values = np.asarray(values)
    rows = _two_d(values)
    return stretch_into(array_rows(rows), np.empty(rows.shape, np.float32)).reshape(values.shape)


def scale_integer_gray(values: np.ndarray) -> np.ndarray:
    """Any integer gray array -> float32 0..255 by its detector bit depth, a strip at a time."""
    values = np.asarray(values)
    rows = _two_d(values)
    return integer_gray_into(array_rows(rows), np.empty(rows.shape, np.float32)).reshape(values.shape)
