"""Keras -> ONNX float32 (tf2onnx) and static QDQ int8 (onnxruntime.quantization, per-channel weights)."""
from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "pixels"


def convert_onnx(model, size: int, opset: int = OPSET) -> bytes:
    """Keras model -> serialized ONNX model with a dynamic batch and input named 'pixels'."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    return proto.SerializeToString()


class PixelReader:
    """onnxruntime CalibrationDataReader over raw-pixel images (float32, one at a time)."""

    def __init__(self, pixels: np.ndarray, input_name: str = INPUT_NAME):
        self._pixels = pixels
        self._input_name = input_name
        self._next = 0

    def get_next(self) -> dict | None:
        if self._next >= len(self._pixels):
            return None
        batch = self._pixels[self._next:self._next + 1].astype(np.float32)
        self._next += 1
        return {self._input_name: batch}

    def rewind(self) -> None:
        self._next = 0


def prepare_for_quantization(fp32_path: str | os.PathLike, prepared_path: str | os.PathLike) -> None:
    """onnxruntime's pre-processing (shape inference, graph clean-up) before static quantization."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(prepared_path), skip_symbolic_shape=True)


def node_names(path: str | os.PathLike) -> list[str]:
    """Node names of an ONNX graph in its (topological) order: the units `nodes_to_exclude` takes."""
    import onnx

    return [node.name for node in onnx.load(str(path), load_external_data=False).graph.node]


def classifier_nodes(path: str | os.PathLike) -> tuple[str, ...]:
    """Names of the nodes that read the last global average pool, directly or not: the classifier and its
    sigmoid (kept float)."""
    import onnx

    nodes = list(onnx.load(str(path), load_external_data=False).graph.node)
    pools = [i for i, node in enumerate(nodes) if node.op_type in ("GlobalAveragePool", "ReduceMean")]
    if not pools:
        return ()
    reached, head = set(nodes[pools[-1]].output), []
    for node in nodes[pools[-1] + 1:]:
        if reached & set(node.input):
            reached |= set(node.output)
            head.append(node.name)
    return tuple(head)


def quantize_onnx(prepared_path: str | os.PathLike, out_path: str | os.PathLike, calib_pixels: np.ndarray,
                  reduce_range: bool = False, exclude: tuple[str, ...] = (),
                  calibration_cache: str | os.PathLike | None = None) -> dict:
    """Static QDQ int8 (uint8 activations, int8 per-channel weights) of a prepared model; returns the settings.

    Nodes in `exclude` stay float, and so does the classifier after the global average pool (as in
    tflite-int8: it costs nothing and keeps the logit exact). With `calibration_cache`, the activation
    ranges are computed once and reused by later calls (onnxruntime's calibration_cache_path).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if calib_pixels is None or len(calib_pixels) == 0:
        raise ValueError("int8 quantization needs calibration images")
    settings = {"quant_format": "QDQ", "float_classifier": True, "activation_type": "QUInt8",
                "weight_type": "QInt8", "per_channel": True, "reduce_range": reduce_range, "calibrate_method": "MinMax",
                "calibration_images": int(len(calib_pixels))}
    quantize_static(str(prepared_path), str(out_path), PixelReader(calib_pixels),
                    quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(exclude) + list(classifier_nodes(prepared_path)) or None,
                    calibrate_method=CalibrationMethod.MinMax,
                    calibration_cache_path=None if calibration_cache is None else str(calibration_cache),
                    # onnxruntime's default op list plus Max, which makes conv1's 255-plane (stem_fold.py)
                    op_types_to_quantize=sorted(set(QDQRegistry) | set(QLinearOpsRegistry) | {"Max"}))
    return settings
