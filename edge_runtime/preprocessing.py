"""The single preprocessing implementation, shared by training, export calibration, runtime and bench.

The model takes raw pixels: ImageNet normalisation lives inside the model graph. So the device only
decodes to grayscale (decoding.py), resizes with a fully specified filter, rounds to uint8 and
repeats the gray channel three times. Every step is written out here in plain numpy (no library
resize whose rounding differs between versions) so that the Android app can reproduce it exactly
from the description in bundle.json.

Memory (issue 25): the filter is kept as a band per axis (Taps: each output pixel reads only the few input
pixels under its triangle, about 2 x n_in values per axis instead of an n_out x n_in matrix), built a few MB
of dense rows at a time so that every weight, and every row's normalising sum, is bit-identical to the dense
formulation's; the bands of at most CACHE_ENTRIES sizes and CACHE_BYTES are cached (LRU). The resize runs the
vertical pass on a block of input columns at a time (BLOCK_VALUES float64 values), so it holds no float64
copy of the image. Same float64 arithmetic, same order of additions: the same bits as before, which
tests/test_preprocessing.py checks against the dense formulation on many random sizes. Image size limits
are decoding's (pixels.py).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np

from .decoding import decode_gray

RESIZE_METHOD = "triangle-antialias"
WEIGHT_CHUNK_BYTES = 4 << 20    # dense filter rows built at once while computing a band
BLOCK_VALUES = 1 << 20          # float64 values of the vertical pass held at once (8 MB)
CACHE_ENTRIES, CACHE_BYTES = 32, 16 << 20    # the band cache: at most 32 sizes and 16 MB


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


@dataclass(frozen=True)
class Taps:
    """The contract's filter along one axis (n_in -> n_out) as a band: output i adds, for t = 0, 1, ..., the
    input index[i, t] times weight[i, t]. weight is the dense matrix's value at first[i] + t, 0 past the end of
    the axis (index then clamped to n_in - 1), exactly what the dense formulation read."""

    n_in: int
    n_out: int
    index: np.ndarray      # (n_out, taps) int64, nondecreasing down each column
    weight: np.ndarray     # (n_out, taps) float64

    @property
    def nbytes(self) -> int:
        return int(self.index.nbytes + self.weight.nbytes)


def _dense_rows(start: int, stop: int, n_in: int, n_out: int) -> np.ndarray:
    """Rows start..stop of the (n_out, n_in) float64 matrix of the antialiased triangle filter (PIL-style
    'bilinear'): output pixel i is centred at (i + 0.5) * n_in / n_out in input coordinates, the triangle's
    radius is max(scale, 1) input pixels (downscaling averages every input pixel it covers), each row is
    normalised to sum to 1. Summed over the whole row, so each row's sum (numpy's pairwise order over n_in
    values) and hence every weight is bit-identical to the matrix built in one piece."""
    scale = n_in / n_out
    radius = max(scale, 1.0)
    centers = (np.arange(start, stop, dtype=np.float64) + 0.5) * scale
    positions = np.arange(n_in, dtype=np.float64) + 0.5
    weights = 1.0 - np.abs(positions[None, :] - centers[:, None]) / radius
    np.clip(weights, 0.0, None, out=weights)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def _band(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first positive column, its run of values up to the widest row's support) of dense rows."""
    support = dense > 0
    first = support.argmax(axis=1)
    columns = first[:, None] + np.arange(int(support.sum(axis=1).max()))
    inside = columns < dense.shape[1]
    clamped = np.minimum(columns, dense.shape[1] - 1)
    return first, np.where(inside, dense[np.arange(len(dense))[:, None], clamped], 0.0)


def compute_taps(n_in: int, n_out: int) -> Taps:
    """The band of the filter, built WEIGHT_CHUNK_BYTES of dense rows at a time (never the whole matrix)."""
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resize {n_in} pixels to {n_out}")
    step = max(1, WEIGHT_CHUNK_BYTES // (8 * n_in))
    firsts, bands = [], []
    for start in range(0, n_out, step):
        first, band = _band(_dense_rows(start, min(start + step, n_out), n_in, n_out))
        firsts.append(first)
        bands.append(band)
    width = max(b.shape[1] for b in bands)
    weight = np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]))) for b in bands])
    index = np.minimum(np.concatenate(firsts)[:, None] + np.arange(width), n_in - 1).astype(np.int64)
    for array in (index, weight):
        array.flags.writeable = False       # shared through the cache
    return Taps(n_in, n_out, index, weight)


class _TapsCache:
    """A small LRU cache of Taps, bounded by entries and bytes (a server sees many odd sizes)."""

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[tuple[int, int], Taps] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, n_in: int, n_out: int) -> Taps:
        key = (int(n_in), int(n_out))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        taps = compute_taps(*key)
        with self._lock:
            self._items[key] = taps
            while self._items and (len(self._items) > self.max_entries or self.nbytes > self.max_bytes):
                self._items.popitem(last=False)
        return taps

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


TAPS_CACHE = _TapsCache(CACHE_ENTRIES, CACHE_BYTES)


def filter_taps(n_in: int, n_out: int) -> Taps:
    """compute_taps through the bounded cache."""
    return TAPS_CACHE.get(n_in, n_out)


def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """The dense (n_out, n_in) float64 filter matrix (see _dense_rows), expanded from its band.

    For tests and the Android golden vectors only: the resize itself never builds it."""
    taps = compute_taps(n_in, n_out)
    dense = np.zeros((taps.n_out, taps.n_in))
    columns = taps.index[:, :1] + np.arange(taps.index.shape[1])
    inside = columns < taps.n_in
    dense[np.nonzero(inside)[0], columns[inside]] = taps.weight[inside]
    return dense


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D image to (size, size) with the contract's filter; returns float64.

    Rows first, then columns; every output value adds its taps one at a time in increasing input
    index (no BLAS, whose summation order varies by CPU and flips pixels that sit on a .5 tie). So
    the result is bit-identical on every machine and in the Android app, which does the same.
    Memory: the vertical pass runs on a block of input columns at a time (about BLOCK_VALUES float64
    values), and only the columns the block's outputs read, so no float64 copy of the image is made.
    """
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    rows, columns = filter_taps(gray.shape[0], size), filter_taps(gray.shape[1], size)
    out = np.empty((size, size))
    for j0, j1 in column_blocks(columns, max(1, BLOCK_VALUES // size)):
        x0, x1 = int(columns.index[j0, 0]), int(columns.index[j0:j1].max()) + 1
        out[:, j0:j1] = _horizontal(_vertical(gray, rows, x0, x1), columns, j0, j1, x0)
    return out


def column_blocks(columns: Taps, span: int):
    """(j0, j1) runs of output columns whose inputs span at most `span` columns (at least one output each)."""
    j0 = 0
    while j0 < columns.n_out:
        reach = columns.index[j0:, -1] - columns.index[j0, 0] + 1
        j1 = j0 + max(1, int(np.searchsorted(reach, span, side="right")))
        yield j0, j1
        j0 = j1


def _vertical(gray: np.ndarray, rows: Taps, x0: int, x1: int) -> np.ndarray:
    """The rows pass on input columns x0..x1: (n_out, x1 - x0) float64, taps added in order."""
    out = np.zeros((rows.n_out, x1 - x0))
    for tap in range(rows.index.shape[1]):
        out += rows.weight[:, tap][:, None] * gray[rows.index[:, tap], x0:x1].astype(np.float64)
    return out


def _horizontal(vertical: np.ndarray, columns: Taps, j0: int, j1: int, x0: int) -> np.ndarray:
    """The columns pass for output columns j0..j1 of `vertical` (which starts at input column x0)."""
    out = np.zeros((vertical.shape[0], j1 - j0))
    for tap in range(columns.index.shape[1]):
        out += columns.weight[j0:j1, tap][None, :] * vertical[:, columns.index[j0:j1, tap] - x0]
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
