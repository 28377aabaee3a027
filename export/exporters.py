"""One exporter per format, keyed by the names of edge_runtime.formats.FORMATS.

Each exporter writes the artifact (without the embedded bundle) to the path it is given and
returns a dict of facts for the report (quantization parameters, settings). TensorFlow is only
imported inside the functions that convert.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..edge_runtime import atomic
from ..edge_runtime.formats import EXPORT_FORMATS, MIXED_SUFFIX
from ..edge_runtime.preprocessing import InputContract
from .calibration import ImageSet
from .dynamic_range import FloatBudget
from .extra_outputs import EXTRA_OUTPUTS, with_extra_outputs
from .int8_census import dynamic_range_census, int8_census
from .onnx_export import OPSET

log = logging.getLogger(__name__)

PTQ_METHOD = "post-training quantization (MinMax ranges on the calibration images, float classifier)"


@dataclass
class ExportContext:
    """What every exporter may need: the loaded Keras model, the input contract, calibration images."""

    model: object
    contract: InputContract
    load_calibration: Callable[[], ImageSet]
    load_selection: Callable[[tuple[str, ...]], ImageSet] | None = None
    onnx_opset: int = OPSET
    onnx_reduce_range: bool = False
    int8_denylist: tuple[str, ...] = ()       # tflite-int8 ops kept in float (a mixed model)
    onnx_int8_exclude: tuple[str, ...] = ()   # onnx-int8 nodes kept in float
    equalize: bool = True              # int8 formats quantize a channel-equalized copy (export/equalize.py)
    qat: object | None = None          # QatOptions: that copy is tuned for int8 first (export/qat.py)
    fold_normalization: bool = True    # ... and reads raw pixels in conv1 (export/stem_fold.py)
    load_tuning: Callable[[], ImageSet] | None = None
    meter: object | None = None        # footprint.StageMeter: time and memory of each step below
    extra_outputs: tuple[str, ...] = tuple(EXTRA_OUTPUTS)   # beside the probability (extra_outputs.py)
    dynamic_budget: FloatBudget = field(default_factory=FloatBudget)   # tflite-int8-dynamic's float layers
    _cache: dict = field(default_factory=dict, repr=False)

    @contextlib.contextmanager
    def _stage(self, name: str):
        """A measured step; its garbage is released when it ends (see footprint.release_memory)."""
        from .footprint import release_memory

        with self.meter.stage(name) if self.meter is not None else contextlib.nullcontext():
            try:
                yield
            finally:
                release_memory()

    def calibration(self) -> ImageSet:
        """Calibration images, loaded once on first use (only int8 formats need them)."""
        if "calibration" not in self._cache:
            with self._stage("decode calibration images"):
                self._cache["calibration"] = self.load_calibration()
        return self._cache["calibration"]

    def selection(self) -> ImageSet:
        """Held-out training images (never the calibration ones) for choosing mixed-precision layers."""
        if "selection" not in self._cache:
            if self.load_selection is None:
                raise ValueError("no selection images configured")
            calibration_paths = self.calibration().paths
            with self._stage("decode selection images"):
                self._cache["selection"] = self.load_selection(calibration_paths)
        return self._cache["selection"]

    def selection_reference(self):
        """Keras probabilities on the selection images (computed once, shared by both int8 formats)."""
        if "selection_probs" not in self._cache:
            from ..train.keras_reference import keras_probs

            pixels = self.selection().pixels
            with self._stage(f"keras reference on selection images ({len(pixels)})"):
                self._cache["selection_probs"] = keras_probs(self.model, pixels, "keras reference (selection)")
        return self._cache["selection_probs"]

    def int8_calibrated(self) -> bytes:
        """The float .tflite carrying calibration ranges, made once; every int8 variant is quantized from it."""
        if "int8_calibrated" not in self._cache:
            from .int8_calibrate import calibrated_model

            source, pixels = self.int8_tflite_source(), self.calibration().pixels
            with self._stage(f"tflite int8 calibration ranges ({len(pixels)} images)"):
                self._cache["int8_calibrated"] = calibrated_model(source, pixels)
        return self._cache["int8_calibrated"]

    def tflite_source(self) -> str:
        """A SavedModel export of the Keras model, made once and shared by the TFLite converters."""
        return self._saved_model("saved_model", self.model)

    def tflite_fp32_bytes(self) -> bytes:
        """The float32 conversion of tflite_source(), made once: the tflite-fp32 artifact and the float layers of
        tflite-int8-dynamic (dynamic_range.py) are both this."""
        if "tflite_fp32" not in self._cache:
            from .tflite_export import convert_tflite

            with self._stage("TFLite float32 conversion"):
                self._cache["tflite_fp32"] = convert_tflite(self.tflite_source(), "fp32")
        return self._cache["tflite_fp32"]

    def int8_model(self):
        """The model int8 formats quantize: float-equivalent channel-equalized, then int8-tuned (unless disabled)."""
        if not self.equalize and self.qat is None and not self.fold_normalization:
            return self.model
        if "int8_model" not in self._cache:
            self.calibration()
            with self._stage("int8 model (equalize, fold the normalization)"):
                self._cache["int8_model"], self._cache["int8_facts"] = self._prepare_int8_model()
        return self._cache["int8_model"]

    def _prepare_int8_model(self) -> tuple[object, dict]:
        start = time.perf_counter()
        if self.equalize:
            from .equalize import equalize_model

            result = equalize_model(self.model, self.calibration().pixels)
            model, facts = result.model, {**result.facts(),
                                          "equalization_seconds": round(time.perf_counter() - start, 1)}
        else:
            import keras

            model, facts = keras.models.clone_model(self.model), {"equalized": False}
            model.set_weights(self.model.get_weights())
        facts["method"] = PTQ_METHOD
        if self.qat is not None:
            facts.update(self._tune(model))
        if self.fold_normalization:
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

        if self.load_tuning is None:
            raise ValueError("quantization-aware tuning needs tuning images")
        try:
            result = tune_for_int8(model, self.model, self.calibration().pixels, self.load_tuning().pixels, self.qat)
        except UnsupportedModel as exc:
            log.warning("int8-aware tuning skipped: %s", exc)
            return {"qat_skipped": str(exc)}
        return result.facts()

    def int8_facts(self) -> dict:
        """What was done to the model before int8 quantization (for the report)."""
        self.int8_model()
        return dict(self._cache.get("int8_facts", {"equalized": False, "method": PTQ_METHOD}))

    def int8_tflite_source(self) -> str:
        """SavedModel of int8_model() for the int8 TFLite converter."""
        model = self.int8_model()
        return self.tflite_source() if model is self.model else self._saved_model("int8_saved_model", model)

    def _saved_model(self, key: str, model) -> str:
        if key not in self._cache:
            from .tflite_export import export_saved_model

            with self._stage(f"SavedModel ({key})"):
                self._cache[key] = export_saved_model(with_extra_outputs(model, self.extra_outputs),
                                                      self._temp_dir("fe-savedmodel-") / "model")
        return self._cache[key]

    def _temp_dir(self, prefix: str) -> Path:
        """A temporary folder removed by close()."""
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        self._cache.setdefault("temp_dirs", []).append(folder)
        return folder

    def close(self) -> None:
        """Remove the temporary SavedModels and ONNX work folder."""
        for folder in self._cache.pop("temp_dirs", []):
            shutil.rmtree(folder, ignore_errors=True)
        for key in ("saved_model", "int8_saved_model", "onnx_work"):
            self._cache.pop(key, None)

    def onnx_fp32_bytes(self) -> bytes:
        """The onnx-fp32 artifact: the float graph with the extra outputs grafted on (onnx_graft.py)."""
        if "onnx" not in self._cache:
            from .onnx_graft import graft_extra_outputs

            plain = self._onnx_plain("onnx_plain", self.model)
            self._cache["onnx"] = graft_extra_outputs(plain, self.extra_outputs)
        return self._cache["onnx"]

    def onnx_int8_source_bytes(self) -> bytes:
        """The float ONNX graph of int8_model(), without extra outputs: the one onnx-int8 quantizes."""
        model = self.int8_model()
        if model is self.model:
            return self._onnx_plain("onnx_plain", model)
        return self._onnx_plain("onnx_int8_source", model, " of the int8 model")

    def _onnx_plain(self, key: str, model, what: str = "") -> bytes:
        """`model` converted once by tf2onnx, probability output only."""
        if key not in self._cache:
            from .onnx_export import convert_onnx

            with self._stage(f"ONNX conversion{what} (tf2onnx)"):
                self._cache[key] = convert_onnx(model, self.contract.size, self.onnx_opset)
        return self._cache[key]

    def onnx_int8_prepared(self) -> tuple[Path, Path]:
        """(pre-processed float ONNX that onnx-int8 quantizes, its calibration cache), made once."""
        if "onnx_work" not in self._cache:
            from .onnx_export import prepare_for_quantization

            work = self._temp_dir("fe-onnxq-")
            self._cache["onnx_work"] = work
            source = self.onnx_int8_source_bytes()
            with self._stage("ONNX pre-processing for quantization"):
                (work / "fp32.onnx").write_bytes(source)
                prepare_for_quantization(work / "fp32.onnx", work / "prepared.onnx")
        work = self._cache["onnx_work"]
        return work / "prepared.onnx", work / "calibration.json"

    def quantize_onnx_int8(self, out_path: Path, exclude: tuple[str, ...]) -> dict:
        """onnx-int8 with `exclude` nodes in float, extra outputs grafted on; the activation ranges are computed
        on the first call only."""
        from .onnx_export import quantize_onnx

        prepared, cache = self.onnx_int8_prepared()
        pixels = self.calibration().pixels
        with self._stage(f"onnx int8 quantization ({'cached ranges' if cache.is_file() else f'{len(pixels)} images'})"):
            settings = quantize_onnx(prepared, out_path, pixels, self.onnx_reduce_range, exclude, cache)
        if self.extra_outputs:
            from .onnx_graft import graft_extra_outputs

            atomic.write_bytes(out_path, graft_extra_outputs(Path(out_path).read_bytes(), self.extra_outputs))
        return settings

    def mixed_int8(self, format_name: str) -> "MixedInt8":
        """What the float-prefix search needs for one int8 format, base or mixed name (see int8_mixed.py)."""
        format_name = format_name.removesuffix(MIXED_SUFFIX)
        if format_name == "tflite-int8":
            from .int8_calibrate import quantize_calibrated
            from .int8_mixed import op_output_names

            calibrated = self.int8_calibrated()
            return MixedInt8(op_output_names(calibrated), ".tflite", "int8_denylist",
                             lambda ops, path: path.write_bytes(quantize_calibrated(calibrated, ops)))
        if format_name == "onnx-int8":
            from .onnx_export import node_names

            return MixedInt8(node_names(self.onnx_int8_prepared()[0]), ".onnx", "onnx_int8_exclude",
                             lambda ops, path: self.quantize_onnx_int8(path, ops))
        raise ValueError(f"{format_name} has no mixed-precision variant")


@dataclass(frozen=True)
class MixedInt8:
    """An int8 format's op names in execution order and how to quantize it with some of them in float."""

    names: list[str]
    suffix: str                                   # file suffix the runtime recognises
    context_field: str                            # the ExportContext field that carries the float ops
    quantize: Callable[[tuple[str, ...], Path], object]


def calibration_facts(images: ImageSet) -> dict:
    return {"calibration_images": len(images), "calibration_fractured": int(images.labels.sum()),
            "calibration_source": images.source}


def _tflite(precision: str) -> Callable[[ExportContext, Path], dict]:
    def export(ctx: ExportContext, path: Path) -> dict:
        from .tflite_export import convert_tflite, tflite_quantization

        if precision == "int8-dynamic":
            return export_dynamic_range(ctx, path)
        if precision == "fp32":       # the one float32 conversion, shared with dynamic range's float layers
            atomic.write_bytes(path, ctx.tflite_fp32_bytes())
            return {"quantization": tflite_quantization(path)}
        if precision != "int8":
            atomic.write_bytes(path, convert_tflite(ctx.tflite_source(), precision))
            return {"quantization": tflite_quantization(path)}
        from .int8_calibrate import quantize_calibrated

        atomic.write_bytes(path, quantize_calibrated(ctx.int8_calibrated(), ctx.int8_denylist))
        return {"quantization": tflite_quantization(path), **calibration_facts(ctx.calibration()),
                **ctx.int8_facts(), "calibration_stats": "recorded without buffer reuse",
                "int8_ops": int8_census(path)}

    return export


def export_dynamic_range(ctx: ExportContext, path: Path) -> dict:
    """Dynamic-range int8 with the layers its rounding hurts most kept float32, chosen on held-out training
    images within a fixed budget (see dynamic_range.py)."""
    from .dynamic_range import FloatRestorer, choose_float
    from .tflite_export import convert_tflite, tflite_quantization
    from ..edge_runtime.progress import progress

    dynamic = convert_tflite(ctx.tflite_source(), "int8-dynamic")
    restorer = FloatRestorer(dynamic, ctx.tflite_fp32_bytes())
    pixels = ctx.selection().pixels[:ctx.dynamic_budget.images]
    with ctx._stage(f"dynamic int8: choose float layers ({len(pixels)} held-out training images)"):
        choice = choose_float(restorer, lambda model: tflite_logits(model, pixels), ctx.dynamic_budget,
                              len(pixels), progress)
    atomic.write_bytes(path, restorer.build(choice.kept))
    return {"quantization": tflite_quantization(path),
            "int8_weights": {**dynamic_range_census(path), **choice.to_dict()}}


def tflite_logits(model: bytes, pixels, num_threads: int | None = None):
    """Logits (from the probability output) of a .tflite model given as bytes, in runtime-sized batches."""
    import numpy as np

    from ..edge_runtime.backends import TfliteBackend
    from ..edge_runtime.batching import RUNTIME_CHUNK, chunks

    with tempfile.TemporaryDirectory(prefix="fe-dynamic-") as folder:
        path = Path(folder) / "candidate.tflite"
        path.write_bytes(model)
        backend = TfliteBackend(path, num_threads)
        probs = np.concatenate([backend.run(pixels[s]).ravel() for s in chunks(len(pixels), RUNTIME_CHUNK)])
        del backend
    probs = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(probs / (1 - probs))


def export_onnx_fp32(ctx: ExportContext, path: Path) -> dict:
    atomic.write_bytes(path, ctx.onnx_fp32_bytes())
    return {"opset": ctx.onnx_opset}


def export_onnx_int8(ctx: ExportContext, path: Path) -> dict:
    with atomic.atomic_path(path) as tmp:
        settings = ctx.quantize_onnx_int8(Path(tmp), ctx.onnx_int8_exclude)
    return {"opset": ctx.onnx_opset, "quantization": settings, **calibration_facts(ctx.calibration()),
            **ctx.int8_facts(), "int8_ops": int8_census(path)}


# The mixed rows use their base exporter: it reads the float ops the search chose from the context.
EXPORTERS: dict[str, Callable[[ExportContext, Path], dict]] = {
    "tflite-fp32": _tflite("fp32"),
    "tflite-fp16": _tflite("fp16"),
    "tflite-int8-dynamic": _tflite("int8-dynamic"),
    "tflite-int8": _tflite("int8"),
    "onnx-fp32": export_onnx_fp32,
    "onnx-int8": export_onnx_int8,
    "tflite-int8-mixed": _tflite("int8"),
    "onnx-int8-mixed": export_onnx_int8,
}

if tuple(EXPORTERS) != EXPORT_FORMATS:  # the table in formats.py is the one source of names
    raise RuntimeError(f"exporters {tuple(EXPORTERS)} do not match FORMATS {EXPORT_FORMATS}")
