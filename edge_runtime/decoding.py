"""Decode an image file to one 2-D grayscale float32 array in 0..255, or say clearly why not.

Accepted: JPEG, PNG, BMP, TIFF (first frame) in any Pillow mode, and DICOM through the optional
`dicom` extra (dicom.py). Decisions, applied the same way everywhere:
- EXIF orientation is applied before anything else (as Pillow's exif_transpose would; done here as a
  numpy view of the result, so no second copy of the image is made).
- Colour (RGB, CMYK, YCbCr, palette) -> ITU-R 601 luma, no rounding (rounding happens once, after resize).
- Transparency (RGBA, LA, PA, palette with a transparent colour) is composited onto BLACK, the
  background of a radiograph, so transparent padding looks like the film's unexposed border.
- Integer grayscale above 8 bits (16-bit PNG/TIFF): scaled by the smallest standard detector bit depth
  (8, 10, 12, 14 or 16 bits) that holds the image's maximum, e.g. max <= 4095 -> 12-bit -> x * 255/4095.
  Never clipped. Signed or 32-bit float images are stretched over their own min..max.
- Memory budget (pixels.py): an image over 32 MP (MAX_PIXELS), with a side over 16,384 px (MAX_SIDE) or
  an aspect ratio over 20:1 (MAX_ASPECT) is refused from its header, before any pixel is decoded, with
  ImageDecodeError "<path>: image too large (...; the limit is ...)". Within the limits, decoding holds
  Pillow's decoded copy (1-4 bytes per pixel) and the float32 result (4 bytes per pixel), nothing else of
  image size: conversions run a strip of rows at a time. So an accepted image needs at most ~260 MB.
- Empty, truncated (Pillow's LOAD_TRUNCATED_IMAGES is never switched on; the file is decoded fully) or
  non-image files raise ImageDecodeError "<path>: <reason>".
"""
from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .pixels import (DETECTOR_BITS, MAX_ASPECT, MAX_PIXELS, MAX_SIDE, ImageDecodeError, Rows, check_dimensions,
                     copy_into, integer_gray_into, luma_into, rgb_to_luma, scale_integer_gray, stretch, stretch_into)

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "MAX_SIDE", "MAX_ASPECT", "DETECTOR_BITS", "ImageDecodeError",
           "decode_gray", "decode_gray_bytes", "image_to_gray", "is_dicom", "rgb_to_luma", "scale_integer_gray",
           "stretch"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_INTEGER_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the view of the displayed (oriented) array that has the stored image's shape and
# pixels: the inverse of the transpose Pillow's ImageOps.exif_transpose applies for that orientation
_STORED_VIEW = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.T,
                6: lambda a: a.T[::-1], 7: lambda a: a.T[::-1, ::-1], 8: lambda a: a.T[:, ::-1]}


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
        raise ImageDecodeError(f"{path}: image too large ({exc}; the limit is {MAX_PIXELS / 1e6:.0f} MP)") from None
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


def _decode_pillow(source, path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limits apply below
        with Image.open(source) as img:
            check_dimensions(path, *img.size)    # from the header: nothing decoded yet
            img.load()  # decode everything now: a truncated file fails here, not later
            return image_to_gray(img, orientation(img))


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8) Pillow's exif_transpose would apply; 1 when there is none."""
    value = img.getexif().get(_EXIF_ORIENTATION, 1)
    return value if value in _STORED_VIEW else 1


def image_to_gray(img: Image.Image, orientation: int = 1) -> np.ndarray:
    """A loaded Pillow image in any mode -> (H, W) float32 in 0..255, turned to its EXIF `orientation`.

    The result is allocated once, in its displayed orientation; each strip of the stored image is converted
    and written through a view of it, so neither a transposed nor a float copy of the whole image is made."""
    width, height = img.size
    shown = np.empty((width, height) if orientation >= 5 else (height, width), np.float32)
    stored = _STORED_VIEW[orientation](shown) if orientation != 1 else shown
    fill, convert, channels = _conversion(img)
    fill(Rows(lambda r0, r1: convert(img.crop((0, r0, width, r1))), height, width, channels), stored)
    return shown


def _conversion(img: Image.Image):
    """(fill function, strip -> numpy array, channels) for the image's mode: the same steps, per strip, as the
    whole-image conversion (every Pillow convert used here maps each pixel on its own)."""
    mode = img.mode
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return luma_into, lambda strip: np.asarray(_on_black(strip), dtype=np.float32), 3
    if mode == "L":
        return copy_into, lambda strip: np.asarray(strip, dtype=np.float32), 1
    if mode in _INTEGER_GRAY_MODES:
        return integer_gray_into, np.asarray, 1
    if mode == "F":
        return stretch_into, lambda strip: np.asarray(strip, dtype=np.float64), 1
    if mode == "1":
        return copy_into, lambda strip: np.asarray(strip.convert("L"), dtype=np.float32), 1
    return luma_into, lambda strip: np.asarray(strip.convert("RGB"), dtype=np.float32), 3


def _on_black(img: Image.Image) -> Image.Image:
    """Composite onto opaque black (transparent padding looks like the film's unexposed border) -> RGB."""
    rgba = img.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), rgba).convert("RGB")
