"""Selective int8: find the layers that lose most precision and keep them in float.

Used only when the full-integer model fails its gate (the gate is never loosened). The layers are
ranked with TFLite's QuantizationDebugger by RMSE / scale (the quantization error of a layer's output
in units of its quantization step; the TensorFlow guide flags layers above 0.7). The selective model
is quantized with those output tensors denylisted, keeping uint8 I/O (int8_calibrate.convert_int8,
which uses TensorFlow's private `convert.mlir_quantize`: pinned to the TensorFlow version in pyproject).
"""
from __future__ import annotations

import csv
import io
import logging
import math

import numpy as np

from .tflite_export import make_converter, representative_dataset

log = logging.getLogger(__name__)

DEBUG_IMAGES = 32            # the debugger runs float and quantized models side by side: keep it short
RMSE_SCALE_SUSPECT = 0.7     # TensorFlow's QuantizationDebugger guide


def layer_errors(source, calib_pixels: np.ndarray, debug_images: int = DEBUG_IMAGES) -> list[tuple[str, float]]:
    """[(output tensor name, RMSE/scale)] of every quantized layer, worst first."""
    import tensorflow as tf

    subset = calib_pixels[:debug_images]
    converter = make_converter(source, "int8", subset)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative_dataset(subset))
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    ranked = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale = float(row["scale"] or 0.0)
        mse = float(row["mean_squared_error"] or 0.0)
        if scale > 0:
            ranked.append((row["tensor_name"], math.sqrt(mse) / scale))
    return sorted(ranked, key=lambda item: item[1], reverse=True)


def find_lossy_layers(source, calib_pixels: np.ndarray, max_layers: int) -> list[str]:
    """Output tensor names of up to max_layers layers whose RMSE/scale exceeds the suspect level."""
    ranked = layer_errors(source, calib_pixels)
    suspects = [name for name, err in ranked if err > RMSE_SCALE_SUSPECT][:max_layers]
    if not suspects:  # nothing stands out: keep the worst few anyway, the gate decides
        suspects = [name for name, _ in ranked[:max(1, max_layers // 2)]]
    log.info("keeping %d layer(s) in float: %s", len(suspects),
             ", ".join(f"{n} ({e:.2f})" for n, e in ranked if n in suspects))
    return suspects
