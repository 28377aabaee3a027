"""DICOM radiographs -> (H, W) float32 0..255, through the optional `dicom` extra (pydicom).

Display pipeline of DICOM PS3.3 C.11: stored values -> modality LUT (rescale slope/intercept) ->
VOI LUT or window center/width (the first one in the file) -> 0..255 over the VOI's output range.
Without a VOI the image is stretched over its own min..max. MONOCHROME1 (white = low values) is
inverted so that bone is bright, as in MONOCHROME2. Multi-frame files: the first frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .decoding import MAX_PIXELS, ImageDecodeError, rgb_to_luma, stretch
from .errors import MissingExtraError, missing_extra

_PROBE = np.array([-1e12, 1e12])  # far outside any pixel range: the VOI clamps them to its output range


def _pydicom():
    """(pydicom module, apply_modality_lut, apply_voi_lut) for pydicom 3.x or 2.x."""
    import pydicom

    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return pydicom, apply_modality_lut, apply_voi_lut


def decode_dicom(path: Path, source=None) -> np.ndarray:
    """Decode a DICOM file (or `source`, a file object, e.g. an upload in memory); ImageDecodeError naming
    `path` on any problem."""
    try:
        pydicom, modality_lut, voi_lut = _pydicom()
    except ImportError:
        raise MissingExtraError(f"{path}: {missing_extra('pydicom', 'dicom', 'reading DICOM files')}") from None
    try:
        ds = pydicom.dcmread(str(path) if source is None else source)
        _check_size(ds, path)
        pixels = ds.pixel_array
    except ImageDecodeError:
        raise
    except Exception as exc:  # pydicom raises many types for broken or compressed-without-plugin files
        raise ImageDecodeError(f"{path}: cannot read DICOM pixels ({type(exc).__name__}: {exc})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if not photometric.startswith("MONOCHROME"):
        frame = pixels[0] if pixels.ndim == 4 else pixels
        return rgb_to_luma(frame.astype(np.float32)) if frame.ndim == 3 else stretch(frame)
    if pixels.ndim == 3:
        pixels = pixels[0]
    try:
        gray = _display_values(ds, pixels, modality_lut, voi_lut)
    except Exception as exc:
        raise ImageDecodeError(f"{path}: cannot apply the DICOM LUTs ({type(exc).__name__}: {exc})") from None
    return (255.0 - gray).astype(np.float32) if photometric == "MONOCHROME1" else gray


def _check_size(ds, path: Path) -> None:
    """The decoding.MAX_PIXELS guard, before pydicom decodes every frame of a file into memory."""
    try:
        rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return  # pydicom itself will say what is wrong with the header
    if rows * columns * frames > MAX_PIXELS:
        raise ImageDecodeError(f"{path}: image too large ({columns}x{rows} x {frames} frame(s) = "
                               f"{rows * columns * frames / 1e6:.0f} MP, limit {MAX_PIXELS // 1_000_000} MP)")


def _display_values(ds, pixels: np.ndarray, modality_lut, voi_lut) -> np.ndarray:
    """Modality LUT, then VOI scaled onto 0..255 (or a min..max stretch when the file has no VOI)."""
    values = np.asarray(modality_lut(pixels, ds), dtype=np.float64)
    if "VOILUTSequence" not in ds and "WindowCenter" not in ds:
        return stretch(values)
    shown = np.asarray(voi_lut(values, ds), dtype=np.float64)
    low, high = np.asarray(voi_lut(_PROBE.copy(), ds), dtype=np.float64)
    if not high > low:
        return stretch(shown)
    return np.clip((shown - low) * (255.0 / (high - low)), 0.0, 255.0).astype(np.float32)
