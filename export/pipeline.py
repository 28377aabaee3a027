"""The export loop: every requested format is exported, embedded, checked and verified; one row each.

A format that fails (conversion error, runtime error, a rejecting fidelity verdict) keeps its row with the
reason and never stops the others. Every artifact is written and verified in a staging folder
(export/staging.py) and published only after its verdict: passed ones at the top level, rejected ones in
RUN/rejected/ so the runtime can never pick them up; bundle.json lists only artifacts that passed. The verdict
is docs/fidelity-verdict.md.
"""
from __future__ import annotations

import copy
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..edge_runtime.bundle import artifact_record, input_contract, load_bundle
from ..edge_runtime.confidence import artifact_uncertainty
from ..edge_runtime.errors import FractureEdgeError
from ..edge_runtime.shifts import apply_shift
from ..edge_runtime.site_model import BUNDLE_KEY as SITE_KEY, SITE_FILE
from ..edge_runtime.formats import DEPLOY_PREFERENCE, FORMATS, MIXED_SUFFIX
from ..edge_runtime.image_set import ImageSet
from .calibration import (calibration_set, resolve_data_dir, selection_samples, selection_set, tuning_set,
                          verification_set)
from .compat import check_artifact
from .exporters import EXPORTERS
from .intermediates import ExportSettings, IntermediateStore
from .extra_outputs import FEATURES, declare_extra_outputs
from .heatmap_check import verify_heatmaps
from .site_fit import fit_export_site_model, publish_site_model
from ..edge_runtime.environment import peak_rss_mb, rss_mb
from .footprint import StageMeter, release_memory
from .gates import VerdictRules, is_exact_format
from .options import ExportOptions
from .outcome import GATE_FAILED, deploy_choice
from .staging import Staging, commit, staging_folder

if TYPE_CHECKING:
    from .verify import Verification

log = logging.getLogger(__name__)

OK, EXPORT_FAILED, VERIFY_FAILED = "ok", "export failed", "verify failed"
NOISE_PROBE = "dither-1"   # the invisible perturbation whose flips are the noise floor (docs/fidelity-verdict.md)


@dataclass(frozen=True)
class ExportRow:
    """One format's outcome: what was written, how long it took, how faithful it is."""

    format: str
    file: str                          # in the staging folder until staging.commit; then in the run folder
    status: str                        # ok | export failed | verify failed | gate failed
    seconds: float                     # export (conversion + embedding)
    verify_seconds: float = 0.0
    bytes: int | None = None
    sha256: str | None = None
    error: str | None = None           # why the row is not ok
    compat: dict | None = None         # tflite-runtime 2.14 verdict
    facts: dict = field(default_factory=dict)   # quantization parameters, settings, kept_float
    gate: dict | None = None           # GateResult.to_dict(): the fidelity verdict
    uncertainty: dict | None = None    # 95 % CIs of the metrics and the paired AUC test vs Keras (not gated)
    rss_mb: float | None = None        # process RSS when this format was done
    peak_rss_mb: float | None = None   # process peak RSS when this format was done (all stages so far)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Verifier:
    """Verification images, the Keras reference probabilities on them and on their dither-1 copies (the noise
    floor), computed once."""

    images: ImageSet
    ref_probs: np.ndarray
    thresholds: dict
    gates: VerdictRules
    num_threads: int | None = None
    meter: StageMeter = field(default_factory=StageMeter)
    dither_probs: np.ndarray | None = None

    def check(self, format_name: str, path: Path) -> "Verification":
        from .verify import verify_artifact

        with self.meter.stage(f"{format_name}: verify ({len(self.images)} images)"):
            return verify_artifact(format_name, path, self.images, self.ref_probs, self.thresholds,
                                   self.gates, self.num_threads, self.dither_probs)


def load_keras_model(run_dir: Path, size: int):
    """RUN/model.keras, called once (tf2onnx needs a built model)."""
    import keras

    path = run_dir / FORMATS["keras"].filename
    if not path.is_file():
        raise FractureEdgeError(f"{path}: no Keras model in the run folder (train first)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # corrupt or foreign file: one clear line
        raise FractureEdgeError(f"{path}: cannot load the Keras model ({exc})") from None
    model(np.zeros((1, size, size, 3), np.float32), training=False)
    return model


def embedded_bundle(bundle: dict) -> dict:
    """The bundle carried inside each artifact: everything but the artifact list (keras provenance kept)."""
    embedded = copy.deepcopy(bundle)
    keras_record = bundle.get("artifacts", {}).get("keras")
    embedded["artifacts"] = {"keras": keras_record} if keras_record else {}
    return embedded


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def export_one(name: str, store: IntermediateStore, folder: Path, bundle: dict, verifier: Verifier,
               float_ops: tuple[str, ...] = ()) -> ExportRow:
    """Export, embed, check compatibility and verify one format, written into `folder` (the staging folder)."""
    from .embed import embed_bundle

    fmt = FORMATS[name]
    path = folder / fmt.filename
    start = time.perf_counter()
    try:
        with verifier.meter.stage(f"{name}: export"):
            facts = EXPORTERS[name](store, path, float_ops)
            embed_bundle(path, embedded_bundle(bundle))
            compat = check_artifact(path, fmt.backend).to_dict()
            release_memory()
    except Exception as exc:
        log.debug("%s export failed", name, exc_info=True)
        return ExportRow(name, fmt.filename, EXPORT_FAILED, time.perf_counter() - start, error=error_line(exc))
    row = ExportRow(name, fmt.filename, OK, time.perf_counter() - start, compat=compat, facts=facts,
                    **{k: v for k, v in artifact_record(path).items() if k in ("bytes", "sha256")})
    return verify_row(row, path, verifier)


def verify_row(row: ExportRow, path: Path, verifier: Verifier) -> ExportRow:
    start = time.perf_counter()
    try:
        verification = verifier.check(row.format, path)
    except Exception as exc:
        log.debug("%s verification failed", row.format, exc_info=True)
        return replace(row, status=VERIFY_FAILED, error=error_line(exc), verify_seconds=time.perf_counter() - start)
    gate = verification.gate
    return replace(row, status=OK if gate.passed else GATE_FAILED, error=None if gate.passed else gate.reason,
                   gate=gate.to_dict(), uncertainty=verification.uncertainty,
                   verify_seconds=time.perf_counter() - start)


def export_mixed(name: str, store: IntermediateStore, folder: Path, bundle: dict, verifier: Verifier,
                 opts: ExportOptions) -> ExportRow:
    """An opt-in *-int8-mixed row: the shortest float prefix the selection images accept, then the verdict."""
    from .int8_mixed import SearchTarget, choose_float_prefix

    fmt = FORMATS[name]
    start = time.perf_counter()
    try:
        mixed = store.mixed_int8(name)
        selection = store.selection
        reference = store.selection_reference
        with verifier.meter.stage(f"{name}: float-prefix search ({len(selection)} images)"):
            choice = choose_float_prefix(mixed.names, mixed.quantize, mixed.suffix, selection.pixels,
                                         selection.labels, reference, bundle["thresholds"], SearchTarget(),
                                         embedded_bundle(bundle), opts.num_threads)
    except Exception as exc:
        log.debug("mixed-precision search failed", exc_info=True)
        return ExportRow(name, fmt.filename, EXPORT_FAILED, time.perf_counter() - start,
                         error=f"float-prefix search failed: {error_line(exc)}")
    facts = choice.facts(len(selection), time.perf_counter() - start)
    if choice.prefix is None:
        return ExportRow(name, fmt.filename, GATE_FAILED, time.perf_counter() - start, facts=facts,
                         error="no float prefix met the search target on the selection images")
    row = export_one(name, store, folder, bundle, verifier, choice.prefix.ops)
    return replace(row, facts={**row.facts, **facts},
                   seconds=time.perf_counter() - start - row.verify_seconds)


def load_inputs(opts: ExportOptions, bundle: dict, model,
                meter: StageMeter | None = None) -> tuple[Verifier, Callable, Callable, Callable]:
    """The verification set with Keras reference probabilities, and lazy calibration, selection and tuning loaders.

    The verification images are decoded here, once per export, and every format reuses them.
    """
    from ..train.keras_reference import keras_probs

    meter = meter or StageMeter()
    contract = input_contract(bundle)
    verify_dir = resolve_data_dir(opts.verify_data, bundle, opts.run_dir, "verify")
    with meter.stage("decode verification images"):
        images = verification_set(verify_dir, contract, opts.verify_splits)
    with meter.stage(f"keras reference ({len(images)} images)"):
        reference = keras_probs(model, images.pixels)
    dither = None
    if opts.gates.noise_floor and any(not is_exact_format(name) for name in opts.formats):
        with meter.stage(f"keras reference on the {NOISE_PROBE} copies (the noise floor)"):
            dither = keras_probs(model, apply_shift(NOISE_PROBE, images.pixels, seed=0), f"keras reference ({NOISE_PROBE})")
    verifier = Verifier(images, reference, bundle["thresholds"], opts.gates, opts.num_threads, meter, dither)

    def calib_dir() -> Path:
        return resolve_data_dir(opts.calib_data, bundle, opts.run_dir, "calib")

    def load_calibration() -> ImageSet:
        return calibration_set(calib_dir(), contract, opts.calib_images, opts.calib_seed)

    def load_selection(exclude: tuple[str, ...]) -> ImageSet:
        return selection_set(calib_dir(), contract, opts.selection_images, exclude, opts.calib_seed + 1)

    def load_tuning(calibration: ImageSet) -> ImageSet:
        """Training images for int8-aware tuning, never the selection images (those judge the fallback)."""
        _, selection = selection_samples(calib_dir(), opts.selection_images, calibration.paths, opts.calib_seed + 1)
        return tuning_set(calib_dir(), contract, opts.qat_images, tuple(str(s.path) for s in selection),
                          opts.calib_seed + 2)

    return verifier, load_calibration, load_selection, load_tuning


def copy_android_assets(run_dir: Path, rows: list[ExportRow], dest: str) -> list[str]:
    """Copy the artifact to deploy (under its own file name) and bundle.json into an Android assets folder."""
    from ..edge_runtime import atomic

    choice = deploy_choice(rows)
    if choice is None:
        raise FractureEdgeError(f"{run_dir}: no TFLite artifact passed its verdict ({', '.join(DEPLOY_PREFERENCE)}); "
                                f"nothing to copy into {dest}")
    copied = []
    site = (SITE_FILE,) if (run_dir / SITE_FILE).is_file() else ()   # the app's site check reads it (bundle site_model)
    for name in (choice.file, *site, "bundle.json"):
        with atomic.atomic_path(Path(dest) / name) as tmp:
            shutil.copyfile(run_dir / name, tmp)
        copied.append(str(Path(dest) / name))
    return copied


def export_format(i: int, name: str, store: IntermediateStore, bundle: dict, verifier: Verifier,
                  opts: ExportOptions, folder: Path) -> ExportRow:
    """Step i of the loop, logged: one format exported into the staging folder and verified there."""
    log.info("[%d/%d] %s: exporting", i, len(opts.formats), name)
    row = export_mixed(name, store, folder, bundle, verifier, opts) if name.endswith(MIXED_SUFFIX) \
        else export_one(name, store, folder, bundle, verifier)
    now = rss_mb()
    row = replace(row, rss_mb=None if now is None else round(now, 1), peak_rss_mb=round(peak_rss_mb(), 1))
    log.info("[%d/%d] %s: %s (%.0f s export, %.0f s verify, peak RSS so far %.0f MB)%s", i, len(opts.formats),
             name, row.status, row.seconds, row.verify_seconds, row.peak_rss_mb, f": {row.error}" if row.error else "")
    return row


def qat_options(opts: ExportOptions):
    """QatOptions for int8-aware tuning, or None when it is off (--qat-images 0)."""
    if opts.qat_images <= 0:
        return None
    from .qat import QatOptions

    return QatOptions(images=opts.qat_images, seed=opts.calib_seed)


def with_site_model(opts: ExportOptions, bundle: dict, model, extra_outputs: tuple, folder: Path,
                    meter: StageMeter) -> dict:
    """The bundle with the site check's record (its file staged in `folder`); without one when it is turned off,
    the model has no features output, or the training images are too few to fit it (a warning says so)."""
    bundle = {k: v for k, v in bundle.items() if k != SITE_KEY}
    if opts.site_images < 0 or FEATURES not in extra_outputs:
        return bundle
    try:
        data = resolve_data_dir(opts.calib_data, bundle, opts.run_dir, "calib")
        with meter.stage("site model (training images)"):
            record = fit_export_site_model(model, data, input_contract(bundle), folder, opts.site_images,
                                           opts.calib_seed)
    except (ValueError, FractureEdgeError) as exc:
        log.warning("no site model: %s", exc)
        return bundle
    return {**bundle, SITE_KEY: record}


def run_export(opts: ExportOptions) -> tuple[list[ExportRow], dict]:
    """Export every requested format; returns the rows and the context for the report.

    The run folder is locked for the whole export (a second one fails at once, export/staging.py)."""
    with staging_folder(opts.run_dir) as staging:
        return export_staged(opts, staging)


def export_staged(opts: ExportOptions, staging: Staging) -> tuple[list[ExportRow], dict]:
    """run_export inside its staging folder: export and verify there, then publish (staging.commit)."""
    from .bundle_update import record_export

    start = time.perf_counter()
    meter = StageMeter()
    bundle = load_bundle(opts.run_dir)
    with meter.stage("load keras model"):
        model = load_keras_model(opts.run_dir, input_contract(bundle).size)
    bundle, extra_outputs = declare_extra_outputs(bundle, model)   # every artifact carries them
    bundle = with_site_model(opts, bundle, model, extra_outputs, staging.folder, meter)
    verifier, load_calibration, load_selection, load_tuning = load_inputs(opts, bundle, model, meter)
    settings = ExportSettings(model, input_contract(bundle), load_calibration, load_selection, load_tuning,
                              opts.onnx_opset, opts.onnx_reduce_range, equalize=opts.equalize, qat=qat_options(opts),
                              fold_normalization=opts.fold_normalization, extra_outputs=extra_outputs)
    store = IntermediateStore(settings, meter)
    try:
        rows = [export_format(i, name, store, bundle, verifier, opts, staging.folder)
                for i, name in enumerate(opts.formats, 1)]
    finally:
        store.close()
    verify_dir = resolve_data_dir(opts.verify_data, bundle, opts.run_dir, "verify")
    rows, heatmaps = verify_heatmaps(rows, opts.run_dir, verify_dir, bundle, model, verifier.images, meter,
                                     artifact_dir=staging.folder)

    def publish(placed: list) -> dict:
        publish_site_model(staging.folder / SITE_FILE, opts.run_dir)
        return record_export(opts, bundle, placed, verifier.images, time.perf_counter() - start)

    rows, context = commit(staging, rows, publish)
    context["heatmaps"] = heatmaps
    context["keras_uncertainty"] = artifact_uncertainty(verifier.images.labels, verifier.ref_probs, bundle["thresholds"])
    context["memory"] = meter.to_dict()
    choice = deploy_choice(rows)
    context["deploy"] = {"format": choice.format, "file": choice.file, "order": list(DEPLOY_PREFERENCE)} \
        if choice else None
    if opts.android_assets:
        try:
            context["android_assets"] = {"copied": copy_android_assets(opts.run_dir, rows, opts.android_assets)}
        except (FractureEdgeError, OSError) as exc:
            context["android_assets"] = {"error": error_line(exc)}
    return rows, context
