"""Decode an image file to one 2-D grayscale float32 array in 0..255, or say clearly why not.

Accepted: JPEG, PNG, BMP, TIFF (first frame) in any Pillow mode, and DICOM through the optional
`dicom` extra (dicom.py). Decisions, applied the same way everywhere:
- EXIF orientation is applied before anything else.
- Colour (RGB, CMYK, YCbCr, palette) -> ITU-R 601 luma, no rounding (rounding happens once, after resize).
- Transparency (RGBA, LA, PA, palette with a transparent colour) is composited onto BLACK, the
  background of a radiograph, so transparent padding looks like the film's unexposed border.
- Integer grayscale above 8 bits (16-bit PNG/TIFF): scaled by the smallest standard detector bit depth
  (8, 10, 12, 14 or 16 bits) that holds the image's maximum, e.g. max <= 4095 -> 12-bit -> x * 255/4095.
  Never clipped. Signed or 32-bit float images are stretched over their own min..max.
- Limits: more than MAX_PIXELS pixels (decompression-bomb guard), empty, truncated (Pillow's
  LOAD_TRUNCATED_IMAGES is never switched on; the file is decoded fully) or non-image files raise
  ImageDecodeError "<path>: <reason>".
"""
from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import FractureEdgeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
MAX_PIXELS = 100_000_000          # 100 MP: far above any radiograph (a 43x43 cm detector is ~10 MP)
DETECTOR_BITS = (8, 10, 12, 14, 16)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_INTEGER_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageDecodeError(FractureEdgeError):
    """An input file that is not a usable image; the message names the file and the reason."""


def decode_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode `path` to (H, W) float32 luma in 0..255 (EXIF orientation applied)."""
    path = Path(path)
    _check_file(path)
    try:
        dicom = is_dicom(path)
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if dicom:
        from .dicom import decode_dicom

        return decode_dicom(path)
    return _decode_guarded(path, path)


def decode_gray_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode an image held in memory (an upload: never written to disk) like decode_gray; `name` is for messages."""
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    if data[128:132] == b"DICM":
        from .dicom import decode_dicom

        return decode_dicom(Path(name), io.BytesIO(data))
    return _decode_guarded(io.BytesIO(data), name)


def _decode_guarded(source, path) -> np.ndarray:
    """Pillow decoding of a path or file object; every failure is an ImageDecodeError naming `path`."""
    try:
        return _decode_pillow(source, path)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{path}: image too large, over the {MAX_PIXELS // 1_000_000} MP limit ({exc})") from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except MemoryError:
        raise ImageDecodeError(f"{path}: not enough memory to decode this image") from None
    except Exception as exc:  # decoders of untrusted files raise many types; a batch must go on
        raise ImageDecodeError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None


def _check_file(path: Path) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "file not found"
        raise ImageDecodeError(f"{path}: {reason}") from None
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):  # a pipe would block, a device never end
        raise ImageDecodeError(f"{path}: not a regular file (a {_kind(info.st_mode)}), not an image")
    if info.st_size == 0:
        raise ImageDecodeError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ImageDecodeError(f"{path}: cannot read (permission denied)")


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
             (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def is_dicom(path: Path) -> bool:
    """A .dcm/.dicom suffix or the 'DICM' magic at byte 128 (DICOM Part 10 files)."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    with open(path, "rb") as fh:
        head = fh.read(132)
    return head[128:132] == b"DICM"


def _decode_pillow(source, path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies below
        with Image.open(source) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(f"{path}: image too large ({width}x{height} = "
                                       f"{width * height / 1e6:.0f} MP, limit {MAX_PIXELS // 1_000_000} MP)")
            if width == 0 or height == 0:
                raise ImageDecodeError(f"{path}: image has no pixels ({width}x{height})")
            img.load()  # decode everything now: a truncated file fails here, not later
            return image_to_gray(ImageOps.exif_transpose(img))


def image_to_gray(img: Image.Image) -> np.ndarray:
    """A loaded Pillow image in any mode -> (H, W) float32 in 0..255."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), rgba).convert("RGB")
    if img.mode == "L":
        return np.asarray(img, dtype=np.float32)
    if img.mode in _INTEGER_GRAY_MODES:
        return scale_integer_gray(np.asarray(img))
    if img.mode == "F":
        return stretch(np.asarray(img, dtype=np.float64))
    if img.mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32)
    return rgb_to_luma(np.asarray(img.convert("RGB"), dtype=np.float32))


def scale_integer_gray(values: np.ndarray) -> np.ndarray:
    """High-bit-depth grayscale -> 0..255 by its detector bit depth (see the module docstring)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 2 ** DETECTOR_BITS[-1] - 1:
        return stretch(values)
    bits = next(b for b in DETECTOR_BITS if high <= 2 ** b - 1)
    return (values * (255.0 / (2 ** bits - 1))).astype(np.float32)


def stretch(values: np.ndarray) -> np.ndarray:
    """Map min..max linearly onto 0..255 (a constant image becomes 0); NaNs become 0."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return ((values - low) * (255.0 / (high - low))).astype(np.float32)


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of an (H, W, 3) array, float32, no rounding (rounding happens once, after resize)."""
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)
