"""What the exporters share: the frozen settings of one export and the store of intermediate results (images,
the Keras reference on them, SavedModels, converted graphs), each computed once on first use.

TensorFlow is only imported inside the methods that convert.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

from ..edge_runtime import atomic
from ..edge_runtime.formats import FORMATS, MIXED_SUFFIX
from ..edge_runtime.preprocessing import InputContract
from ..edge_runtime.image_set import ImageSet
from .dynamic_range import FloatBudget
from .extra_outputs import EXTRA_OUTPUTS, with_extra_outputs
from .onnx_export import OPSET

log = logging.getLogger(__name__)

PTQ_METHOD = "post-training quantization (MinMax ranges on the calibration images, float classifier)"


@dataclass(frozen=True)
class ExportSettings:
    """What one export starts from and how it converts: the loaded Keras model, the input contract, the image
    loaders and the conversion settings; fixed for the whole export."""

    model: object
    contract: InputContract
    load_calibration: Callable[[], ImageSet]
    load_selection: Callable[[tuple[str, ...]], ImageSet] | None = None   # given the calibration paths to avoid
    load_tuning: Callable[[ImageSet], ImageSet] | None = None             # given the calibration images
    onnx_opset: int = OPSET
    onnx_reduce_range: bool = False
    equalize: bool = True              # int8 formats quantize a channel-equalized copy (export/equalize.py)
    qat: object | None = None          # QatOptions: that copy is tuned for int8 first (export/qat.py)
    fold_normalization: bool = True    # ... and reads raw pixels in conv1 (export/stem_fold.py)
    extra_outputs: tuple[str, ...] = tuple(EXTRA_OUTPUTS)   # beside the probability (extra_outputs.py)
    dynamic_budget: FloatBudget = field(default_factory=FloatBudget)   # tflite-int8-dynamic's float layers


class IntermediateStore:
    """What the exporters share, each computed once on first use from the settings: images, the Keras reference
    on them, SavedModels and converted graphs. close() removes its temporary folders."""

    def __init__(self, settings: ExportSettings, meter=None):
        self.settings = settings
        self.meter = meter                 # footprint.StageMeter: time and memory of each step below
        self._temp_dirs: list[Path] = []

    @contextlib.contextmanager
    def stage(self, name: str):
        """A measured step; its garbage is released when it ends (see footprint.release_memory)."""
        from .footprint import release_memory

        with self.meter.stage(name) if self.meter is not None else contextlib.nullcontext():
            try:
                yield
            finally:
                release_memory()

    @cached_property
    def calibration(self) -> ImageSet:
        """Calibration images (only int8 formats need them)."""
        with self.stage("decode calibration images"):
            return self.settings.load_calibration()

    @cached_property
    def selection(self) -> ImageSet:
        """Held-out training images (never the calibration ones) for choosing mixed-precision layers."""
        if self.settings.load_selection is None:
            raise ValueError("no selection images configured")
        calibration_paths = self.calibration.paths
        with self.stage("decode selection images"):
            return self.settings.load_selection(calibration_paths)

    @cached_property
    def selection_reference(self):
        """Keras probabilities on the selection images (shared by both int8 formats)."""
        from ..train.keras_reference import keras_probs

        pixels = self.selection.pixels
        with self.stage(f"keras reference on selection images ({len(pixels)})"):
            return keras_probs(self.settings.model, pixels, "keras reference (selection)")

    @cached_property
    def int8_calibrated(self) -> bytes:
        """The float .tflite carrying calibration ranges; every int8 variant is quantized from it."""
        from .int8_calibrate import calibrated_model

        source, pixels = self.int8_tflite_source, self.calibration.pixels
        with self.stage(f"tflite int8 calibration ranges ({len(pixels)} images)"):
            return calibrated_model(source, pixels)

    @cached_property
    def tflite_source(self) -> str:
        """A SavedModel export of the Keras model, shared by the TFLite converters."""
        return self._saved_model("saved_model", self.settings.model)

    @cached_property
    def tflite_fp32_bytes(self) -> bytes:
        """The float32 conversion of tflite_source: the tflite-fp32 artifact and the float layers of
        tflite-int8-dynamic (dynamic_range.py) are both this."""
        from .tflite_export import convert_tflite

        with self.stage("TFLite float32 conversion"):
            return convert_tflite(self.tflite_source, "fp32")

    @cached_property
    def _int8_preparation(self) -> tuple[object, dict]:
        """(the model int8 formats quantize, what was done to it)."""
        settings = self.settings
        if not settings.equalize and settings.qat is None and not settings.fold_normalization:
            return settings.model, {"equalized": False, "method": PTQ_METHOD}
        _ = self.calibration   # decoded in its own stage, not inside the next one
        with self.stage("int8 model (equalize, fold the normalization)"):
            return self._prepare_int8_model()

    @property
    def int8_model(self):
        """The model int8 formats quantize: float-equivalent channel-equalized, then int8-tuned (unless disabled)."""
        return self._int8_preparation[0]

    @property
    def int8_facts(self) -> dict:
        """What was done to the model before int8 quantization (for the report)."""
        return dict(self._int8_preparation[1])

    def _prepare_int8_model(self) -> tuple[object, dict]:
        start = time.perf_counter()
        model = self.settings.model
        if self.settings.equalize:
            from .equalize import equalize_model

            result = equalize_model(model, self.calibration.pixels)
            model, facts = result.model, {**result.facts(),
                                          "equalization_seconds": round(time.perf_counter() - start, 1)}
        else:
            import keras

            model, facts = keras.models.clone_model(model), {"equalized": False}
            model.set_weights(self.settings.model.get_weights())
        facts["method"] = PTQ_METHOD
        if self.settings.qat is not None:
            facts.update(self._tune(model))
        if self.settings.fold_normalization:
            model, facts["normalization_folded"] = self._fold(model)
        return model, facts

    @staticmethod
    def _fold(model) -> tuple[object, bool]:
        """The model with its input normalization folded into conv1, or as it is when it has none."""
        from .stem_fold import fold_input_normalization

        try:
            return fold_input_normalization(model), True
        except ValueError as exc:
            log.warning("input normalization not folded: %s", exc)
            return model, False

    def _tune(self, model) -> dict:
        """Quantization-aware tuning of `model` in place; a model the simulation cannot run is left as is."""
        from .int8_sim import UnsupportedModel
        from .qat import tune_for_int8

        settings = self.settings
        if settings.load_tuning is None:
            raise ValueError("quantization-aware tuning needs tuning images")
        try:
            result = tune_for_int8(model, settings.model, self.calibration.pixels,
                                   settings.load_tuning(self.calibration).pixels, settings.qat)
        except UnsupportedModel as exc:
            log.warning("int8-aware tuning skipped: %s", exc)
            return {"qat_skipped": str(exc)}
        return result.facts()

    @cached_property
    def int8_tflite_source(self) -> str:
        """SavedModel of int8_model for the int8 TFLite converter."""
        model = self.int8_model
        return self.tflite_source if model is self.settings.model else self._saved_model("int8_saved_model", model)

    def _saved_model(self, name: str, model) -> str:
        from .tflite_export import export_saved_model

        with self.stage(f"SavedModel ({name})"):
            return export_saved_model(with_extra_outputs(model, self.settings.extra_outputs),
                                      self._temp_dir("fe-savedmodel-") / "model")

    def _temp_dir(self, prefix: str) -> Path:
        """A temporary folder removed by close()."""
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        self._temp_dirs.append(folder)
        return folder

    def close(self) -> None:
        """Remove the temporary SavedModels and ONNX work folder (and forget the paths into them)."""
        for folder in self._temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        self._temp_dirs.clear()
        for name in ("tflite_source", "int8_tflite_source", "_onnx_work"):
            vars(self).pop(name, None)

    @cached_property
    def _onnx_plain(self) -> bytes:
        """The Keras model converted by tf2onnx, probability output only."""
        return self._convert_onnx(self.settings.model)

    @cached_property
    def onnx_fp32_bytes(self) -> bytes:
        """The onnx-fp32 artifact: the float graph with the extra outputs grafted on (onnx_graft.py)."""
        from .onnx_graft import graft_extra_outputs

        return graft_extra_outputs(self._onnx_plain, self.settings.extra_outputs)

    @cached_property
    def onnx_int8_source_bytes(self) -> bytes:
        """The float ONNX graph of int8_model, without extra outputs: the one onnx-int8 quantizes."""
        model = self.int8_model
        return self._onnx_plain if model is self.settings.model else self._convert_onnx(model, " of the int8 model")

    def _convert_onnx(self, model, what: str = "") -> bytes:
        from .onnx_export import convert_onnx

        with self.stage(f"ONNX conversion{what} (tf2onnx)"):
            return convert_onnx(model, self.settings.contract.size, self.settings.onnx_opset)

    @cached_property
    def _onnx_work(self) -> Path:
        """A folder holding the pre-processed float ONNX that onnx-int8 quantizes (and its calibration cache)."""
        from .onnx_export import prepare_for_quantization

        work = self._temp_dir("fe-onnxq-")
        source = self.onnx_int8_source_bytes
        with self.stage("ONNX pre-processing for quantization"):
            (work / "fp32.onnx").write_bytes(source)
            prepare_for_quantization(work / "fp32.onnx", work / "prepared.onnx")
        return work

    @property
    def onnx_int8_prepared(self) -> tuple[Path, Path]:
        """(pre-processed float ONNX that onnx-int8 quantizes, its calibration cache)."""
        return self._onnx_work / "prepared.onnx", self._onnx_work / "calibration.json"

    def quantize_onnx_int8(self, out_path: Path, exclude: tuple[str, ...]) -> dict:
        """onnx-int8 with `exclude` nodes in float, extra outputs grafted on; the activation ranges are computed
        on the first call only."""
        from .onnx_export import quantize_onnx

        prepared, cache = self.onnx_int8_prepared
        pixels = self.calibration.pixels
        with self.stage(f"onnx int8 quantization ({'cached ranges' if cache.is_file() else f'{len(pixels)} images'})"):
            settings = quantize_onnx(prepared, out_path, pixels, self.settings.onnx_reduce_range, exclude, cache)
        if self.settings.extra_outputs:
            from .onnx_graft import graft_extra_outputs

            atomic.write_bytes(out_path, graft_extra_outputs(Path(out_path).read_bytes(), self.settings.extra_outputs))
        return settings

    def mixed_int8(self, format_name: str) -> "MixedInt8":
        """What the float-prefix search needs for one int8 format, base or mixed name (see int8_mixed.py)."""
        base = FORMATS.get(format_name.removesuffix(MIXED_SUFFIX))
        if base is None or base.name + MIXED_SUFFIX not in FORMATS:
            raise ValueError(f"{format_name} has no mixed-precision variant")
        names, quantize = {"tflite": self._tflite_float_ops, "onnx": self._onnx_float_ops}[base.backend]()
        return MixedInt8(names, Path(base.filename).suffix, quantize)

    def _tflite_float_ops(self) -> tuple[list[str], Callable[[tuple[str, ...], Path], object]]:
        from .int8_calibrate import quantize_calibrated
        from .int8_mixed import op_output_names

        calibrated = self.int8_calibrated
        return op_output_names(calibrated), lambda ops, path: path.write_bytes(quantize_calibrated(calibrated, ops))

    def _onnx_float_ops(self) -> tuple[list[str], Callable[[tuple[str, ...], Path], object]]:
        from .onnx_export import node_names

        return node_names(self.onnx_int8_prepared[0]), lambda ops, path: self.quantize_onnx_int8(path, ops)


@dataclass(frozen=True)
class MixedInt8:
    """An int8 format's op names in execution order and how to quantize it with some of them in float."""

    names: list[str]
    suffix: str                                   # file suffix the runtime recognises
    quantize: Callable[[tuple[str, ...], Path], object]
