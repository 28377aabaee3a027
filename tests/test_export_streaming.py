"""`run_export` decodes each verification image once per export and streams it in batches (no TensorFlow).

Only the heavy parts are replaced: the "Keras model" is the fixture float TFLite model, and each
converter copies a fixture artifact. The rest is the real pipeline: the dataset read, the decoding,
the Keras-reference and verification loops through edge_runtime, the gates, the reports. Counters on
the decoder and on both model calls prove the images are decoded once and fed CHUNK at a time, as
uint8 until a batch is fed (what keeps export inside a laptop's memory, issue 11).
"""
from __future__ import annotations

import collections
import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
SOURCES = {"tflite-fp32": "model_fp32.tflite", "tflite-fp16": "model_fp32.tflite",
           "tflite-int8-dynamic": "model_fp32.tflite", "tflite-int8": "model_int8.tflite",
           "onnx-fp32": "model_fp32.onnx", "onnx-int8": "model_fp32.onnx"}
KERAS_CHUNK, RUNTIME_CHUNK = 4, 3


class Calls:
    """What the patched decoder and model calls saw."""

    def __init__(self):
        self.decoded = collections.Counter()            # path -> times decoded
        self.keras_batches: list[tuple[int, str]] = []  # (images, dtype) per Keras reference batch
        self.runtime_batches = collections.defaultdict(list)  # artifact file name -> [(images, dtype)]


@pytest.fixture
def patched(tmp_path, monkeypatch):
    """(run folder, Calls) with the converters, the Keras model and the decoder replaced by counting fakes."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    from fracture_edge.edge_runtime import preprocessing
    from fracture_edge.edge_runtime.bundle import save_bundle
    from fracture_edge.edge_runtime.classifier import Classifier
    from fracture_edge.export import bundle_update, embed, exporters, pipeline, verify
    from fracture_edge.train import keras_reference
    from fracture_edge.train.synthetic import SyntheticSpec, write_synthetic_dataset

    calls = Calls()
    data = write_synthetic_dataset(tmp_path / "data", SyntheticSpec(train=10, val=7, test=6, image_size=48))
    run = tmp_path / "run"
    run.mkdir()
    bundle = json.loads((FIXTURES / "bundle.json").read_text())
    save_bundle(run, {**bundle, "artifacts": {}, "data": {"source": str(data), "synthetic": True}})

    real_decode = preprocessing.decode_gray
    real_predict = Classifier.predict_pixels
    reference = Classifier(FIXTURES / "model_fp32.tflite")   # stands in for model.keras

    def decode(path, *args, **kwargs):
        calls.decoded[str(path)] += 1
        return real_decode(path, *args, **kwargs)

    def predict(self, pixels):
        calls.runtime_batches[Path(self.path).name].append((len(pixels), np.asarray(pixels).dtype.name))
        return real_predict(self, pixels)

    def forward(model):
        def run_batch(batch):
            calls.keras_batches.append((len(batch), batch.dtype.name))
            return real_predict(reference, batch.astype(np.uint8))[:, None]
        return run_batch

    def converter(name):
        def export(store, path, float_ops=()):
            if name.endswith("int8"):
                store.calibration
            shutil.copy(FIXTURES / SOURCES[name], path)
            return {}
        return export

    monkeypatch.setattr(preprocessing, "decode_gray", decode)
    monkeypatch.setattr(Classifier, "predict_pixels", predict)
    monkeypatch.setattr(keras_reference, "compiled_forward", forward)
    monkeypatch.setattr(keras_reference, "CHUNK", KERAS_CHUNK)
    monkeypatch.setattr(verify, "RUNTIME_CHUNK", RUNTIME_CHUNK)
    monkeypatch.setattr(pipeline, "load_keras_model", lambda run_dir, size: object())
    monkeypatch.setattr(pipeline, "check_artifact", lambda path, backend: types.SimpleNamespace(to_dict=dict))
    monkeypatch.setattr(embed, "embed_bundle", lambda path, bundle: None)
    monkeypatch.setattr(bundle_update, "environment", dict)
    for name in SOURCES:
        monkeypatch.setitem(exporters.EXPORTERS, name, converter(name))
    return run, calls


def test_verification_images_are_decoded_once_and_streamed_to_every_format(patched):
    from fracture_edge.export.options import ExportOptions
    from fracture_edge.export.pipeline import run_export
    from fracture_edge.export.report import write_reports

    run, calls = patched
    rows, context = run_export(ExportOptions(run_dir=run, calib_images=4, num_threads=1))
    write_reports(run, rows, context)
    n = context["verification"]["images"]
    assert n == 13 and len(rows) == 6 and all(r.status in ("ok", "gate failed") for r in rows)

    verified = [p for p in calls.decoded if "/train/" not in p]
    calibration = [p for p in calls.decoded if "/train/" in p]
    assert len(verified) == n and len(calibration) == 4       # 4 calibration images, shared by both int8 formats
    assert set(calls.decoded.values()) == {1}                 # nothing decoded twice in the whole export

    assert sum(k for k, _ in calls.keras_batches) == 2 * n        # the images, then their dither-1 copies
    assert max(k for k, _ in calls.keras_batches) == KERAS_CHUNK and {d for _, d in calls.keras_batches} == {"float32"}
    assert len(calls.runtime_batches) == 6
    for batches in calls.runtime_batches.values():            # each format: every image once, a few at a time, uint8
        assert sum(k for k, _ in batches) == n
        assert max(k for k, _ in batches) == RUNTIME_CHUNK and {d for _, d in batches} == {"uint8"}


def test_report_records_time_and_memory_per_stage_and_format(patched):
    from fracture_edge.export.options import ExportOptions
    from fracture_edge.export.pipeline import run_export
    from fracture_edge.export.report import write_reports

    run, _ = patched
    rows, context = run_export(ExportOptions(run_dir=run, formats=("tflite-fp32", "tflite-int8"), calib_images=4, num_threads=1))
    write_reports(run, rows, context)
    report = json.loads((run / "export_report.json").read_text())
    stages = {s["name"]: s for s in report["memory"]["stages"]}
    for name in ("load keras model", "decode verification images", "keras reference (13 images)",
                 "tflite-fp32: export", "tflite-fp32: verify (13 images)", "decode calibration images"):
        assert stages[name]["seconds"] >= 0 and stages[name]["process_peak_mb"] > 0
    assert stages["decode calibration images"]["within"] == "tflite-int8: export"
    peaks = [row["peak_rss_mb"] for row in report["rows"]]
    assert all(p > 0 for p in peaks) and peaks == sorted(peaks) and report["memory"]["peak_rss_mb"] >= peaks[-1]
    markdown = (run / "export_report.md").read_text()
    assert "peak RSS MB" in markdown and "## Time and memory per stage" in markdown
