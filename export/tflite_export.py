"""Keras -> TFLite: float32, float16 weights, and full-integer int8 with uint8 pixel input.

Imported lazily (from the export handler): TensorFlow is imported inside the functions anyway.
The converters start from `model.export()`'s SavedModel (or `from_keras_model`), never from
`from_concrete_functions([cf], obj)`, which silently produces a model without weights on TF 2.21.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)


def pin_input_range(pixels: np.ndarray) -> np.ndarray:
    """A copy whose first image holds one 0 and one 255 pixel.

    The converter picks the input quantization from the calibration min/max; pinning them to 0 and
    255 gives scale 1 / zero point 0, so raw uint8 pixels map onto the int8 input exactly.
    """
    pinned = np.array(pixels, dtype=np.uint8, copy=True)
    pinned[0, 0, 0, :] = 0
    pinned[0, -1, -1, :] = 255
    return pinned


def representative_dataset(pixels: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Calibration generator: one float32 raw-pixel image at a time (as the Keras model takes them)."""
    pinned = pin_input_range(pixels)

    def generate() -> Iterator[list[np.ndarray]]:
        for i in range(len(pinned)):
            yield [pinned[i:i + 1].astype(np.float32)]

    return generate


def make_converter(source, precision: str, calib_pixels: np.ndarray | None = None):
    """A configured TFLiteConverter for 'fp32' | 'fp16' | 'int8-dynamic' | 'int8' from a Keras model or a
    SavedModel folder.

    int8-dynamic is dynamic-range quantization: no representative dataset, so the converter stores the
    weights of every convolution and dense layer as per-channel int8 and keeps activations, input and output
    float32; XNNPACK quantizes each layer's input per image at run time (../shared/notes/int8-dynamic.md).
    """
    import tensorflow as tf

    if isinstance(source, (str, os.PathLike)):
        converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(source))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(source)
    if precision == "fp32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return converter
    if precision == "int8-dynamic":
        return converter
    if precision != "int8":
        raise ValueError(f"unknown TFLite precision {precision!r}; valid: fp32, fp16, int8-dynamic, int8")
    if calib_pixels is None or len(calib_pixels) == 0:
        raise ValueError("int8 quantization needs calibration images")
    converter.representative_dataset = representative_dataset(calib_pixels)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter


def convert_tflite(source, precision: str, calib_pixels: np.ndarray | None = None) -> bytes:
    """Convert a Keras model (or its SavedModel export) to a .tflite flatbuffer."""
    return make_converter(source, precision, calib_pixels).convert()


def export_saved_model(model, folder) -> str:
    """Export the Keras model once as a SavedModel: three converter runs then skip re-tracing it."""
    model.export(os.fspath(folder), format="tf_saved_model", verbose=False)
    return os.fspath(folder)


def tensor_quantization(detail: dict) -> dict:
    """dtype, scale and zero point of one interpreter tensor (scale 0: not quantized)."""
    scale, zero_point = detail["quantization"]
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(v) for v in detail["shape"]], "scale": float(scale), "zero_point": int(zero_point)}


def raw_pixels_exact(q: dict) -> bool:
    """True when every raw pixel 0..255 quantizes to itself on this input tensor."""
    if q["dtype"] != "uint8" or q["scale"] == 0.0:
        return False
    pixels = np.arange(256, dtype=np.float64)
    return bool(np.array_equal(np.round(pixels / q["scale"]) + q["zero_point"], pixels))


def tflite_quantization(path) -> dict:
    """Input/output quantization parameters of a .tflite file (read with the deployed runtime)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    inputs = [tensor_quantization(d) for d in interpreter.get_input_details()]
    outputs = [tensor_quantization(d) for d in interpreter.get_output_details()]
    probability = [q for q in outputs if int(np.prod(q["shape"][1:])) == 1]   # extra outputs are larger
    info = {"input": inputs[0], "output": (probability or outputs)[0]}
    if inputs[0]["dtype"] == "uint8":
        info["raw_pixels_exact"] = raw_pixels_exact(inputs[0])
    return info
