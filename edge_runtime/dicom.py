"""DICOM radiographs -> (H, W) float32 0..255, through the optional `dicom` extra (pydicom).

Display pipeline of DICOM PS3.3 C.11: stored values -> modality LUT (rescale slope/intercept) ->
VOI LUT or window center/width (the first one in the file) -> 0..255 over the VOI's output range.
Without a VOI the image is stretched over its own min..max. MONOCHROME1 (white = low values) is
inverted so that bone is bright, as in MONOCHROME2. Multi-frame files: the first frame.

Memory: the header is read first (without the pixel data) and checked against the limits of pixels.py;
with pydicom 3 only the first frame is then read and decoded (pydicom.pixels.pixel_array(index=0)), and the
LUTs are applied a strip of rows at a time into the float32 result (each value by the same expression as on
the whole frame). So a file holds about 2 (stored 16-bit frame) + 4 (result) bytes per pixel at once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import MissingExtraError, missing_extra
from .pixels import ImageDecodeError, Rows, array_rows, check_dimensions, luma_into, stretch_into

_PROBE = np.array([-1e12, 1e12])  # far outside any pixel range: the VOI clamps them to its output range
_DEFLATED = "1.2.840.10008.1.2.1.99"  # the whole dataset is zlib-compressed: read it the classic way


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
        ds = pydicom.dcmread(_rewound(path, source), stop_before_pixels=True)
        frames = _check_size(ds, path)
        pixels = _first_frame(pydicom, ds, _rewound(path, source), frames)
    except ImageDecodeError:
        raise
    except MemoryError:
        raise ImageDecodeError(f"{path}: not enough memory to decode this image") from None
    except Exception as exc:  # pydicom raises many types for broken or compressed-without-plugin files
        raise ImageDecodeError(f"{path}: cannot read DICOM pixels ({type(exc).__name__}: {exc})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    gray = np.empty(pixels.shape[:2], np.float32)
    if not photometric.startswith("MONOCHROME"):
        if pixels.ndim == 3:
            return luma_into(_rows(lambda strip: strip.astype(np.float32), pixels, 3), gray)
        return stretch_into(array_rows(pixels), gray)
    try:
        _display_values(ds, pixels, modality_lut, voi_lut, gray)
    except Exception as exc:
        raise ImageDecodeError(f"{path}: cannot apply the DICOM LUTs ({type(exc).__name__}: {exc})") from None
    if photometric == "MONOCHROME1":
        for r0, r1 in array_rows(gray).strips():
            gray[r0:r1] = (255.0 - gray[r0:r1]).astype(np.float32)
    return gray


def _rewound(path: Path, source):
    """The file to read from the start: its path, or the file object rewound."""
    if source is None:
        return str(path)
    source.seek(0)
    return source


def _check_size(ds, path: Path) -> int:
    """The pixels.py limits, from the header, before any pixel is read; returns the number of frames."""
    try:
        rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1  # pydicom itself will say what is wrong with the header
    if rows and columns:
        check_dimensions(path, columns, rows, frames if not _reads_one_frame() else 1)
    return frames


def _reads_one_frame() -> bool:
    """pydicom 3 reads and decodes only the first frame; pydicom 2 decodes every frame of the file."""
    try:
        from pydicom.pixels import pixel_array  # noqa: F401
    except ImportError:
        return False
    return True


def _first_frame(pydicom, header, src, frames: int) -> np.ndarray:
    """The first frame's stored values: (rows, columns) or (rows, columns, samples)."""
    syntax = str(getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", "") or "")
    if _reads_one_frame() and syntax != _DEFLATED:
        from pydicom.pixels import pixel_array

        return pixel_array(src, index=0)
    pixels = pydicom.dcmread(src).pixel_array
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("MONOCHROME"):
        return pixels[0] if pixels.ndim == 3 else pixels
    return pixels[0] if pixels.ndim == 4 else pixels


def _rows(convert, values: np.ndarray, channels: int = 1) -> Rows:
    """Rows of `values`, each strip passed through convert."""
    return Rows(lambda r0, r1: convert(values[r0:r1]), values.shape[0], values.shape[1], channels)


def _display_values(ds, pixels: np.ndarray, modality_lut, voi_lut, out: np.ndarray) -> np.ndarray:
    """Modality LUT, then VOI scaled onto 0..255 (or a min..max stretch when the file has no VOI), into out."""
    def modality(strip):
        return np.asarray(modality_lut(strip, ds), dtype=np.float64)

    values = _rows(modality, pixels)
    if "VOILUTSequence" not in ds and "WindowCenter" not in ds:
        return stretch_into(values, out)
    shown = _rows(lambda strip: np.asarray(voi_lut(modality(strip), ds), dtype=np.float64), pixels)
    low, high = np.asarray(voi_lut(_PROBE.copy(), ds), dtype=np.float64)
    if not high > low:
        return stretch_into(shown, out)
    for r0, r1 in shown.strips():
        out[r0:r1] = np.clip((shown.read(r0, r1) - low) * (255.0 / (high - low)), 0.0, 255.0).astype(np.float32)
    return out

