"""One exporter per format, keyed by the names of edge_runtime.formats.FORMATS.

Each exporter writes the artifact (without the embedded bundle) to the path it is given and
returns a dict of facts for the report (quantization parameters, settings). TensorFlow is only
imported inside the functions that convert.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
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
    _cache: dict = field(default_factory=dict, repr=False)

    def calibration(self) -> ImageSet:
        """Calibration images, loaded once on first use (only int8 formats need them)."""
        if "calibration" not in self._cache:
            self._cache["calibration"] = self.load_calibration()
        return self._cache["calibration"]

    def tflite_source(self) -> str:
        """A SavedModel export of the Keras model, made once and shared by the TFLite converters."""
        if "saved_model" not in self._cache:
            from .tflite_export import export_saved_model

            folder = tempfile.mkdtemp(prefix="fe-savedmodel-")
            self._cache["saved_model"] = export_saved_model(self.model, Path(folder) / "model")
        return self._cache["saved_model"]

    def close(self) -> None:
        """Remove the temporary SavedModel."""
        folder = self._cache.pop("saved_model", None)
        if folder:
            shutil.rmtree(Path(folder).parent, ignore_errors=True)

    def onnx_fp32_bytes(self) -> bytes:
        """The float ONNX graph, converted once and shared by onnx-fp32 and onnx-int8."""
        if "onnx" not in self._cache:
            from .onnx_export import convert_onnx

            self._cache["onnx"] = convert_onnx(self.model, self.contract.size, self.onnx_opset)
        return self._cache["onnx"]


def calibration_facts(images: ImageSet) -> dict:
    return {"calibration_images": len(images), "calibration_fractured": int(images.labels.sum()),
            "calibration_source": images.source}


def _tflite(precision: str) -> Callable[[ExportContext, Path], dict]:
    def export(ctx: ExportContext, path: Path) -> dict:
        from .tflite_export import convert_tflite, tflite_quantization

        calib = ctx.calibration() if precision == "int8" else None
        if calib is not None and ctx.int8_denylist:
            from .int8_debug import convert_selective_int8

            data = convert_selective_int8(ctx.tflite_source(), calib.pixels, ctx.int8_denylist)
        else:
            data = convert_tflite(ctx.tflite_source(), precision, calib.pixels if calib is not None else None)
        atomic.write_bytes(path, data)
        facts = {"quantization": tflite_quantization(path)}
        if calib is not None:
            facts.update(calibration_facts(calib), kept_float=list(ctx.int8_denylist))
        return facts

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
        fp32.write_bytes(ctx.onnx_fp32_bytes())
        settings = quantize_onnx(fp32, tmp, calib.pixels, reduce_range=ctx.onnx_reduce_range)
    return {"opset": ctx.onnx_opset, "quantization": settings, **calibration_facts(calib)}


EXPORTERS: dict[str, Callable[[ExportContext, Path], dict]] = {
    "tflite-fp32": _tflite("fp32"),
    "tflite-fp16": _tflite("fp16"),
    "tflite-int8": _tflite("int8"),
    "onnx-fp32": export_onnx_fp32,
    "onnx-int8": export_onnx_int8,
}

if tuple(EXPORTERS) != EXPORT_FORMATS:  # the table in formats.py is the one source of names
    raise RuntimeError(f"exporters {tuple(EXPORTERS)} do not match FORMATS {EXPORT_FORMATS}")
