"""What a benchmark worker times: the runtime's Classifier, or one of the three ways users call a Keras model.

Every predictor maps uint8 pixels (N, S, S, 3) to float64 P(fractured) (N,), like
Classifier.predict_pixels, so latency and accuracy are measured through the same call users make.
Imported only inside the worker subprocess (it loads LiteRT, ONNX Runtime or TensorFlow).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

KERAS_MODES = ("eager", "predict", "tf.function")
# How each runtime is configured by edge_runtime.backends (recorded with every row).
BACKEND_SETTINGS = {
    "tflite": "Interpreter(num_threads=N); XNNPACK is LiteRT's default delegate (float and int8 ops)",
    "onnx": "CPUExecutionProvider, intra_op_num_threads=N, graph optimization level ORT_ENABLE_ALL (default)",
}


@dataclass(frozen=True)
class Predictor:
    predict: Callable[[np.ndarray], np.ndarray]
    runtime: str      # "ai-edge-litert 2.3.0", "tensorflow 2.21.0 (keras 3.15.0)"
    details: dict     # anything worth reporting about how it was configured


def import_runtime(job: dict) -> None:
    """Import the row's runtime library (pinned as the job says) without loading a model: the worker's baseline
    RSS is taken after this, so 'model RSS' is the model's own share and not the library's."""
    from ..edge_runtime import backends
    from ..edge_runtime.formats import FORMATS

    pin_tflite_runtime(job)
    if job["backend"] == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras  # noqa: F401 (imports TensorFlow too)
    else:
        backends.RUNTIME_IMPORTS[FORMATS[job["format"]].backend]()


def pin_tflite_runtime(job: dict) -> None:
    """Restrict the TFLite interpreter search to the job's runtime (this process only): e.g. legacy tflite-runtime."""
    from ..edge_runtime import backends

    if job.get("tflite_runtime"):
        backends.TFLITE_RUNTIMES = tuple(r for r in backends.TFLITE_RUNTIMES if r[1] == job["tflite_runtime"])


def load_predictor(job: dict, threads: int) -> Predictor:
    """Build the predictor a job names: backend 'classifier' (tflite/onnx) or 'keras' (with keras_mode)."""
    if job["backend"] == "keras":
        return load_keras_predictor(job["artifact"], job["keras_mode"], threads)
    if job["backend"] == "classifier":
        return load_classifier_predictor(job, threads)
    raise ValueError(f"unknown backend {job['backend']!r}; valid backends: classifier, keras")


def load_classifier_predictor(job: dict, threads: int) -> Predictor:
    """The runtime users run (edge_runtime.classifier.Classifier) on one artifact of the run folder."""
    from ..edge_runtime.classifier import Classifier

    pin_tflite_runtime(job)
    integrity = job.get("integrity", "require")
    if job.get("rejected"):  # quarantined by export: the lone file with its embedded bundle
        verified = verify_rejected(job["artifact"], job["run_dir"], integrity)
        clf = Classifier(job["artifact"], num_threads=threads, integrity="trust-embedded")
    else:
        clf = Classifier(job["run_dir"], num_threads=threads, format=job["format"], integrity=integrity)
        verified = clf.integrity
    settings = BACKEND_SETTINGS.get(clf.format.backend, "")
    details = {"artifact": str(clf.path), "bundle_source": clf.bundle_source, "num_threads": threads,
               "settings": settings, "integrity": verified}
    return Predictor(clf.predict_pixels, clf.runtime, details)


def verify_rejected(artifact: str, run_dir: str, integrity: str) -> str:
    """The integrity rule for a file in RUN/rejected/: its record is the export report's row (bundle.json
    lists only the artifacts that passed). 'verified' or 'unverified'; raises like the runtime does."""
    import json
    from pathlib import Path

    from ..edge_runtime.artifacts import ArtifactMismatchError, UnverifiedArtifactError, check_artifact

    path, report = Path(artifact), Path(run_dir) / "export_report.json"
    try:
        rows = json.loads(report.read_text(encoding="utf-8")).get("rows", [])
        record = next((r for r in rows if isinstance(r, dict) and r.get("file") == f"rejected/{path.name}"), None)
    except (OSError, ValueError, AttributeError, RecursionError):
        record = None
    status = check_artifact(path, record)
    if status == "ok":
        return "verified"
    if status not in ("unrecorded", "missing"):
        raise ArtifactMismatchError(f"{path}: does not match {report}: {status}")
    if integrity == "require":
        raise UnverifiedArtifactError(f"{path}: unverified: {report} records no sha256 for it; "
                                      "pass --allow-unverified to measure it anyway")
    return "unverified"


def load_keras_predictor(path: str, mode: str, threads: int) -> Predictor:
    """A Keras model called eagerly (model(x)), through model.predict, or as a tf.function-compiled call."""
    if mode not in KERAS_MODES:
        raise ValueError(f"unknown keras mode {mode!r}; valid modes: {', '.join(KERAS_MODES)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    # Same value again is a no-op; a different one after TensorFlow started raises RuntimeError.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    model = _keras_model(path)
    runtime = f"tensorflow {tf.__version__} (keras {keras.__version__})"
    return Predictor(_keras_call(model, mode, tf), runtime, {"keras_mode": mode, "num_threads": threads})


@functools.lru_cache(maxsize=2)
def _keras_model(path: str):
    """Load once per process (--quick runs the three Keras paths in one process)."""
    import keras

    return keras.saving.load_model(path, compile=False)


def _keras_call(model, mode: str, tf) -> Callable[[np.ndarray], np.ndarray]:
    def as_probs(out) -> np.ndarray:
        return np.asarray(out, dtype=np.float64).reshape(len(out), -1)[:, 0]

    if mode == "eager":
        return lambda pixels: as_probs(model(pixels.astype(np.float32), training=False).numpy())
    if mode == "predict":
        return lambda pixels: as_probs(model.predict(pixels.astype(np.float32), batch_size=len(pixels), verbose=0))
    shape = (None,) + tuple(model.input_shape[1:])
    compiled = tf.function(lambda x: model(x, training=False),
                           input_signature=[tf.TensorSpec(shape, tf.float32)])
    return lambda pixels: as_probs(compiled(tf.constant(pixels, dtype=tf.float32)).numpy())
