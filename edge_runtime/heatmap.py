"""Heatmap overlays (numpy + Pillow, no matplotlib): where the model looked, drawn on the radiograph.

The heatmap is the artifact's class activation map (export/extra_outputs.py), a small grid over the
model input. The input is the whole image stretched to a square (preprocessing.py, fit 'stretch': no
crop, no letterbox), so cell (i, j) of an (h, w) grid covers rows i*H/h..(i+1)*H/h and columns
j*W/w..(j+1)*W/w of the decoded image (EXIF orientation applied): the grid is resized straight onto it.
Colours: each map is scaled to its own min..max (the colour shows where, not how sure; the
probability is printed beside it).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import atomic
from .pixels import STRIP_BYTES

DISCLAIMER = "Research software, not a medical device: not for diagnosis."
# 'jet'-like ramp: dark blue -> blue -> cyan -> yellow -> red (position, R, G, B)
_ANCHORS = np.array([(0.0, 0, 0, 128), (0.15, 0, 0, 255), (0.4, 0, 255, 255), (0.65, 255, 255, 0),
                     (0.9, 255, 0, 0), (1.0, 128, 0, 0)], np.float64)
MAX_SIDE = 640            # overlays are drawn at most this large (long side), keeping the aspect ratio


def colormap(values: np.ndarray) -> np.ndarray:
    """values in [0, 1] (any shape) -> uint8 RGB (..., 3) on the jet-like ramp."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    rgb = [np.interp(v, _ANCHORS[:, 0], _ANCHORS[:, k]) for k in (1, 2, 3)]
    return np.stack(rgb, axis=-1).round().astype(np.uint8)


def normalized(heatmap: np.ndarray) -> np.ndarray:
    """The map scaled to [0, 1] over its own min..max (a flat map is all 0)."""
    heatmap = np.asarray(heatmap, np.float64)
    low, high = float(heatmap.min()), float(heatmap.max())
    return np.zeros_like(heatmap) if high - low < 1e-12 else (heatmap - low) / (high - low)


def upsampled(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    """The grid resized (bilinear, cell centres aligned) onto a width x height image; float32."""
    grid = Image.fromarray(np.asarray(heatmap, np.float32), mode="F")
    return np.asarray(grid.resize((width, height), Image.BILINEAR), np.float32)


def peak_cell(heatmap: np.ndarray) -> tuple[int, int]:
    """(row, column) of the largest value of the grid (the first one on ties)."""
    heatmap = np.asarray(heatmap)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(heatmap)), heatmap.shape))


def gray8(gray: np.ndarray) -> np.ndarray:
    """(H, W) values -> uint8 (clipped to 0..255, rounded), a strip of rows at a time: the working memory is
    STRIP_BYTES, not two float64 copies of the whole image (16 bytes per pixel, 512 MB at 32 MP)."""
    gray = np.asarray(gray)
    out = np.empty(gray.shape, np.uint8)
    step = max(1, STRIP_BYTES // max(1, gray.shape[1] * 8))
    for r0 in range(0, gray.shape[0], step):
        out[r0:r0 + step] = np.clip(np.asarray(gray[r0:r0 + step], np.float64), 0, 255).round()
    return out


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Decoded grayscale (H, W) 0..255 with the coloured heatmap blended on top, at most MAX_SIDE px.
    Memory: 1 byte per pixel of the decoded image (its 8-bit copy) beyond the image itself."""
    height, width = np.shape(gray)
    scale = min(1.0, MAX_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    base = Image.fromarray(gray8(gray), mode="L").resize(size, Image.BILINEAR).convert("RGB")
    heat = colormap(normalized(upsampled(heatmap, *size)))
    blended = (1 - alpha) * np.asarray(base, np.float64) + alpha * heat
    return Image.fromarray(blended.round().astype(np.uint8), mode="RGB")


def caption_lines(prediction) -> list[str]:
    """What the overlay states: label, probability, the threshold used, and that it is not a diagnosis."""
    return [f"{prediction.label}  p={prediction.probability:.3f}",
            f"threshold {prediction.threshold_name} = {prediction.threshold:.3f}",
            "heatmap: class activation map, own min..max", DISCLAIMER]


def overlay_with_caption(gray: np.ndarray, prediction) -> Image.Image:
    """The overlay with a caption band below it (label, probability, threshold name, disclaimer)."""
    picture = overlay(gray, prediction.heatmap)
    lines = caption_lines(prediction)
    line_height = 14
    canvas = Image.new("RGB", (max(picture.width, 330), picture.height + line_height * len(lines) + 8), "black")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((4, picture.height + 4 + i * line_height), line, fill="white" if i < 2 else (190, 190, 190))
    ramp = Image.fromarray(colormap(np.linspace(0, 1, 96))[None].repeat(8, axis=0), mode="RGB")
    canvas.paste(ramp, (canvas.width - 100, picture.height + 6))
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)   # fast: an API answer, not an archive
    return buffer.getvalue()


def write_overlay(path: str | os.PathLike, gray: np.ndarray, prediction) -> Path:
    """Write the captioned overlay of one prediction (which must carry a heatmap) as a PNG, atomically."""
    return atomic.write_bytes(path, png_bytes(overlay_with_caption(gray, prediction)))


def overlay_name(path: str, taken: set[str]) -> str:
    """'<image stem>.heatmap.png', numbered when two inputs share a stem (a/x.png, b/x.png)."""
    stem = Path(path).stem or "image"
    name, n = f"{stem}.heatmap.png", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.heatmap.png"
    taken.add(name)
    return name
