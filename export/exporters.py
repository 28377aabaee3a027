"""One exporter per format, keyed by the names of edge_runtime.formats.FORMATS.

Each exporter writes the artifact (without the embedded bundle) to the path it is given and
returns a dict of facts for the report (quantization parameters, settings). TensorFlow is only
imported inside the functions that convert.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..edge_runtime import atomic
from ..edge_runtime.formats import EXPORT_FORMATS
from ..edge_runtime.preprocessing import InputContract
from .calibration import ImageSet

log = logging.getLogger(__name__)


@dataclass
class ExportContext:
    """What every exporter may need: the loaded Keras model, the input contract, calibration images."""

    model: object
    contract: InputContract
    load_calibration: Callable[[], ImageSet]
    onnx_opset: int = 17
    onnx_reduce_range: bool = False
    int8_denylist: tuple[str, ...] = ()
    equalize: bool = True              # int8 formats quantize a channel-equalized copy (export/equalize.py)
    _cache: dict = field(default_factory=dict, repr=False)

    def calibration(self) -> ImageSet:
        """Calibration images, loaded once on first use (only int8 formats need them)."""
        if "calibration" not in self._cache:
            self._cache["calibration"] = self.load_calibration()
        return self._cache["calibration"]

    def tflite_source(self) -> str:
        """A SavedModel export of the Keras model, made once and shared by the TFLite converters."""
        return self._saved_model("saved_model", self.model)

    def int8_model(self):
        """The model int8 formats quantize: a float-equivalent channel-equalized copy unless disabled."""
        if not self.equalize:
            return self.model
        if "equalized" not in self._cache:
            from .equalize import equalize_model

            start = time.perf_counter()
            result = equalize_model(self.model, self.calibration().pixels)
            self._cache["equalized"] = result
            self._cache["equalization_facts"] = {**result.facts(),
                                                 "equalization_seconds": round(time.perf_counter() - start, 1)}
        return self._cache["equalized"].model

    def int8_facts(self) -> dict:
        """What was done to the model before int8 quantization (for the report)."""
        self.int8_model()
        return dict(self._cache.get("equalization_facts", {"equalized": False}))

    def int8_tflite_source(self) -> str:
        """SavedModel of int8_model() for the int8 TFLite converter and the quantization debugger."""
        return self._saved_model("int8_saved_model", self.int8_model()) if self.equalize else self.tflite_source()

    def _saved_model(self, key: str, model) -> str:
        if key not in self._cache:
            from .tflite_export import export_saved_model

            folder = tempfile.mkdtemp(prefix="fe-savedmodel-")
            self._cache[key] = export_saved_model(model, Path(folder) / "model")
        return self._cache[key]

    def close(self) -> None:
        """Remove the temporary SavedModels."""
        for key in ("saved_model", "int8_saved_model"):
            folder = self._cache.pop(key, None)
            if folder:
                shutil.rmtree(Path(folder).parent, ignore_errors=True)

    def onnx_fp32_bytes(self) -> bytes:
        """The float ONNX graph, converted once and shared by onnx-fp32 and onnx-int8."""
        if "onnx" not in self._cache:
            from .onnx_export import convert_onnx

            self._cache["onnx"] = convert_onnx(self.model, self.contract.size, self.onnx_opset)
        return self._cache["onnx"]

    def onnx_int8_source_bytes(self) -> bytes:
        """The float ONNX graph of int8_model(), the one onnx-int8 quantizes."""
        if not self.equalize:
            return self.onnx_fp32_bytes()
        if "onnx_int8_source" not in self._cache:
            from .onnx_export import convert_onnx

            self._cache["onnx_int8_source"] = convert_onnx(self.int8_model(), self.contract.size, self.onnx_opset)
        return self._cache["onnx_int8_source"]


def calibration_facts(images: ImageSet) -> dict:
    return {"calibration_images": len(images), "calibration_fractured": int(images.labels.sum()),
            "calibration_source": images.source}


def _tflite(precision: str) -> Callable[[ExportContext, Path], dict]:
    def export(ctx: ExportContext, path: Path) -> dict:
        from .tflite_export import convert_tflite, tflite_quantization

        if precision != "int8":
            atomic.write_bytes(path, convert_tflite(ctx.tflite_source(), precision))
            return {"quantization": tflite_quantization(path)}
        from .int8_calibrate import convert_int8

        calib = ctx.calibration()
        atomic.write_bytes(path, convert_int8(ctx.int8_tflite_source(), calib.pixels, ctx.int8_denylist))
        return {"quantization": tflite_quantization(path), **calibration_facts(calib), **ctx.int8_facts(),
                "calibration_stats": "recorded without buffer reuse", "kept_float": list(ctx.int8_denylist)}

    return export


def export_onnx_fp32(ctx: ExportContext, path: Path) -> dict:
    atomic.write_bytes(path, ctx.onnx_fp32_bytes())
    return {"opset": ctx.onnx_opset}


def export_onnx_int8(ctx: ExportContext, path: Path) -> dict:
    from .onnx_export import quantize_onnx

    calib = ctx.calibration()
    with tempfile.TemporaryDirectory(prefix=".fe-onnx-", dir=path.parent) as tmp_dir, \
            atomic.atomic_path(path) as tmp:
        fp32 = Path(tmp_dir) / "fp32.onnx"
        fp32.write_bytes(ctx.onnx_int8_source_bytes())
        settings = quantize_onnx(fp32, tmp, calib.pixels, reduce_range=ctx.onnx_reduce_range)
    return {"opset": ctx.onnx_opset, "quantization": settings, **calibration_facts(calib), **ctx.int8_facts()}


EXPORTERS: dict[str, Callable[[ExportContext, Path], dict]] = {
    "tflite-fp32": _tflite("fp32"),
    "tflite-fp16": _tflite("fp16"),
    "tflite-int8": _tflite("int8"),
    "onnx-fp32": export_onnx_fp32,
    "onnx-int8": export_onnx_int8,
}

if tuple(EXPORTERS) != EXPORT_FORMATS:  # the table in formats.py is the one source of names
    raise RuntimeError(f"exporters {tuple(EXPORTERS)} do not match FORMATS {EXPORT_FORMATS}")
