"""One exporter per format, found by the backend and quantization of its edge_runtime.formats.FORMATS row.

Each exporter writes the artifact (without the embedded bundle) to the path it is given, from the export's
IntermediateStore (intermediates.py), and returns a dict of facts for the report (quantization parameters,
settings). TensorFlow is only imported inside the functions that convert.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from ..edge_runtime import atomic
from ..edge_runtime.formats import EXPORT_FORMATS, FORMATS
from ..edge_runtime.image_set import ImageSet
from .int8_census import dynamic_range_census, int8_census
from .intermediates import IntermediateStore


def calibration_facts(images: ImageSet) -> dict:
    return {"calibration_images": len(images), "calibration_fractured": int(images.labels.sum()),
            "calibration_source": images.source}


# Every exporter: (the export's intermediate store, artifact path, ops kept in float) -> facts for the report.
# The float ops are a *-int8-mixed row's chosen prefix; only the int8 exporters read them.
Exporter = Callable[[IntermediateStore, Path, tuple[str, ...]], dict]


def export_tflite_fp32(store: IntermediateStore, path: Path, float_ops: tuple[str, ...] = ()) -> dict:
    """The one float32 conversion, shared with dynamic range's float layers."""
    from .tflite_export import tflite_quantization

    atomic.write_bytes(path, store.tflite_fp32_bytes)
    return {"quantization": tflite_quantization(path)}


def export_tflite_fp16(store: IntermediateStore, path: Path, float_ops: tuple[str, ...] = ()) -> dict:
    from .tflite_export import convert_tflite, tflite_quantization

    atomic.write_bytes(path, convert_tflite(store.tflite_source, "fp16"))
    return {"quantization": tflite_quantization(path)}


def export_tflite_int8(store: IntermediateStore, path: Path, float_ops: tuple[str, ...] = ()) -> dict:
    """Full-integer int8 quantized from the calibrated float model, `float_ops` kept in float."""
    from .int8_calibrate import quantize_calibrated
    from .tflite_export import tflite_quantization

    atomic.write_bytes(path, quantize_calibrated(store.int8_calibrated, float_ops))
    return {"quantization": tflite_quantization(path), **calibration_facts(store.calibration),
            **store.int8_facts, "calibration_stats": "recorded without buffer reuse",
            "int8_ops": int8_census(path)}


def export_dynamic_range(store: IntermediateStore, path: Path, float_ops: tuple[str, ...] = ()) -> dict:
    """Dynamic-range int8 with the layers its rounding hurts most kept float32, chosen on held-out training
    images within a fixed budget (see dynamic_range.py), then the int8 weights' bias corrected where that
    lowers the logit error on those images (bias_correction.py)."""
    from .bias_correction import correct_biases
    from .dynamic_range import FloatRestorer, choose_float
    from .tflite_export import convert_tflite, tflite_quantization
    from ..edge_runtime.progress import progress

    budget = store.settings.dynamic_budget
    dynamic = convert_tflite(store.tflite_source, "int8-dynamic")
    restorer = FloatRestorer(dynamic, store.tflite_fp32_bytes)
    pixels = store.selection.pixels[:budget.images]
    with store.stage(f"dynamic int8: choose float layers ({len(pixels)} held-out training images)"):
        choice = choose_float(restorer, lambda model: tflite_logits(model, pixels), budget, len(pixels), progress)
    calibration = store.calibration.pixels
    with store.stage(f"dynamic int8: bias correction (input means on {len(calibration)} calibration images)"):
        model, correction = correct_biases(restorer.build(choice.kept), store.tflite_fp32_bytes, calibration,
                                           lambda model: tflite_logits(model, pixels), len(pixels), progress)
    atomic.write_bytes(path, model)
    return {"quantization": tflite_quantization(path), "bias_correction": correction.to_dict(),
            "int8_weights": {**dynamic_range_census(path), **choice.to_dict()}}


def tflite_logits(model: bytes, pixels, num_threads: int | None = None):
    """Logits (from the probability output) of a .tflite model given as bytes, in runtime-sized batches."""
    import numpy as np

    from ..edge_runtime.backends import TfliteBackend
    from ..edge_runtime.batching import RUNTIME_CHUNK, chunks
    from ..edge_runtime.metrics import probability_logits

    with tempfile.TemporaryDirectory(prefix="fe-dynamic-") as folder:
        path = Path(folder) / "candidate.tflite"
        path.write_bytes(model)
        backend = TfliteBackend(path, num_threads)
        probs = np.concatenate([backend.run(pixels[s]).ravel() for s in chunks(len(pixels), RUNTIME_CHUNK)])
        del backend
    return probability_logits(probs)


def export_onnx_fp32(store: IntermediateStore, path: Path, float_ops: tuple[str, ...] = ()) -> dict:
    atomic.write_bytes(path, store.onnx_fp32_bytes)
    return {"opset": store.settings.onnx_opset}


def export_onnx_int8(store: IntermediateStore, path: Path, float_ops: tuple[str, ...] = ()) -> dict:
    """Static QDQ int8 with `float_ops` nodes kept in float."""
    with atomic.atomic_path(path) as tmp:
        settings = store.quantize_onnx_int8(Path(tmp), float_ops)
    return {"opset": store.settings.onnx_opset, "quantization": settings, **calibration_facts(store.calibration),
            **store.int8_facts, "int8_ops": int8_census(path)}


# One exporter per (backend, quantization) of a FORMATS row: a mixed row uses its base int8 row's exporter.
EXPORTER_KINDS: dict[tuple[str, str], Exporter] = {
    ("tflite", "fp32"): export_tflite_fp32,
    ("tflite", "fp16"): export_tflite_fp16,
    ("tflite", "int8-dynamic"): export_dynamic_range,
    ("tflite", "int8"): export_tflite_int8,
    ("onnx", "fp32"): export_onnx_fp32,
    ("onnx", "int8"): export_onnx_int8,
}


def exporters_by_format() -> dict[str, Exporter]:
    """The exporter of every exported FORMATS row, looked up by its backend and quantization."""
    missing = [name for name in EXPORT_FORMATS
               if (FORMATS[name].backend, FORMATS[name].quantization) not in EXPORTER_KINDS]
    if missing:  # the table in formats.py is the one source of names
        raise RuntimeError(f"no exporter for {', '.join(missing)} (add its (backend, quantization) to EXPORTER_KINDS)")
    return {name: EXPORTER_KINDS[FORMATS[name].backend, FORMATS[name].quantization] for name in EXPORT_FORMATS}


EXPORTERS: dict[str, Exporter] = exporters_by_format()
