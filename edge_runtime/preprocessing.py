"""The single preprocessing implementation, shared by training, export calibration, runtime and bench.

The model takes raw pixels: ImageNet normalisation lives inside the model graph. So the device only
decodes to grayscale (decoding.py), resizes with a fully specified filter, rounds to uint8 and
repeats the gray channel three times. Every step is written out here in plain numpy (no library
resize whose rounding differs between versions) so that the Android app can reproduce it exactly
from the description in bundle.json.
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass

import numpy as np

from .decoding import decode_gray

RESIZE_METHOD = "triangle-antialias"


@dataclass(frozen=True)
class InputContract:
    """What the model expects as input; stored in bundle.json under "input"."""

    size: int = 224                       # square side, pixels
    channels: int = 3                     # gray repeated into RGB
    color: str = "gray-to-rgb"            # decode to 8-bit luma (ITU-R 601 weights), repeat 3x
    resize: str = RESIZE_METHOD           # separable triangle filter widened when downscaling
    fit: str = "stretch"                  # no crop, no letterbox: aspect ratio is not kept
    rounding: str = "floor(x+0.5), clip 0..255"
    pixel_range: tuple[int, int] = (0, 255)
    layout: str = "NHWC"
    normalization: str = "in-graph imagenet (x/255 - mean)/std"

    def __post_init__(self) -> None:
        if not 16 <= int(self.size) <= 1024:
            raise ValueError(f"input size must be between 16 and 1024 pixels, got {self.size}")
        if self.resize != RESIZE_METHOD or self.color != "gray-to-rgb" or self.fit != "stretch":
            raise ValueError(
                f"unsupported input contract (color={self.color}, resize={self.resize}, fit={self.fit}); "
                f"this version supports gray-to-rgb / {RESIZE_METHOD} / stretch"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pixel_range"] = list(self.pixel_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "InputContract":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "pixel_range" in known:
            known["pixel_range"] = tuple(known["pixel_range"])
        return cls(**known)


@functools.lru_cache(maxsize=64)
def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 matrix of the antialiased triangle filter (PIL-style 'bilinear').

    Output pixel i is centred at (i + 0.5) * n_in / n_out in input coordinates. The triangle's
    radius is max(scale, 1) input pixels, so downscaling averages every input pixel it covers.
    Rows are normalised to sum to 1.
    """
    scale = n_in / n_out
    radius = max(scale, 1.0)
    centers = (np.arange(n_out, dtype=np.float64) + 0.5) * scale
    positions = np.arange(n_in, dtype=np.float64) + 0.5
    weights = 1.0 - np.abs(positions[None, :] - centers[:, None]) / radius
    np.clip(weights, 0.0, None, out=weights)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D float image to (size, size) with the contract's filter; returns float64.

    Rows first, then columns; every output value adds its taps one at a time in increasing input
    index (no BLAS, whose summation order varies by CPU and flips pixels that sit on a .5 tie). So
    the result is bit-identical on every machine and in the Android app, which does the same.
    """
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    vertical = apply_taps(gray.astype(np.float64), resize_weights(gray.shape[0], size))
    return apply_taps(vertical.T, resize_weights(gray.shape[1], size)).T


def apply_taps(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """weights (n_out, n_in) applied along axis 0 of values (n_in, m): out[i] = sum over k in order."""
    n_out, n_in = weights.shape
    support = weights > 0
    first = support.argmax(axis=1)
    rows = np.arange(n_out)
    out = np.zeros((n_out, values.shape[1]))
    for tap in range(int(support.sum(axis=1).max())):
        index = first + tap
        inside = index < n_in
        index = np.where(inside, index, n_in - 1)
        out += np.where(inside, weights[rows, index], 0.0)[:, None] * values[index]
    return out


def to_model_input(gray: np.ndarray, contract: InputContract) -> np.ndarray:
    """Decoded grayscale (H, W) in 0..255 -> model input (size, size, 3) uint8 raw pixels."""
    resized = resize_gray(gray, contract.size)
    pixels = np.clip(np.floor(resized + 0.5), 0, 255).astype(np.uint8)
    return np.repeat(pixels[:, :, None], contract.channels, axis=2)


def load_model_input(path: str | os.PathLike, contract: InputContract) -> np.ndarray:
    """Read an image file and return the model input (size, size, 3) uint8; raises ImageDecodeError."""
    return to_model_input(decode_gray(path), contract)


def load_batch(paths, contract: InputContract) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Load many files as model inputs, skipping bad ones.

    Returns (pixels uint8 (N, size, size, 3), indices of the paths that loaded, [(path, reason)] of
    the ones that did not). Bad files are reported, never fatal.
    """
    from .errors import FractureEdgeError

    arrays, kept, failures = [], [], []
    for i, path in enumerate(paths):
        try:
            arrays.append(load_model_input(path, contract))
            kept.append(i)
        except FractureEdgeError as exc:
            failures.append((str(path), str(exc)))
        except OSError as exc:  # the file changed or vanished between the checks and the read
            failures.append((str(path), f"{path}: cannot read ({exc.strerror or exc})"))
        except MemoryError:
            failures.append((str(path), f"{path}: not enough memory to prepare this image"))
    if arrays:
        pixels = np.stack(arrays)
    else:
        pixels = np.zeros((0, contract.size, contract.size, contract.channels), np.uint8)
    return pixels, kept, failures
