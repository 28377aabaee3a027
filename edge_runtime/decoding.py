"""Decode an image file to one 2-D grayscale float32 array in 0..255, or say clearly why not."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import FractureEdgeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm")


class ImageDecodeError(FractureEdgeError):
    """An input file that is not a usable image; the message names the file and the reason."""


def decode_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode `path` to (H, W) float32 luma in 0..255 (EXIF orientation applied)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "P", "PA"):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                img = Image.alpha_composite(background, img)
            if img.mode == "L":
                return np.asarray(img, dtype=np.float32)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32)
                return arr * (255.0 / 65535.0)
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{path}: cannot decode image ({exc})") from None
    return rgb_to_luma(rgb)


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of an (H, W, 3) array, float32, no rounding (rounding happens once, after resize)."""
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)
