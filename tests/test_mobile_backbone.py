"""A MobileNetV2-0.35 student end to end (slow: TensorFlow): distilled from a tiny DenseNet121 teacher run,
recorded in its bundle, exported in every default format, and run by the edge runtime.

Random weights at 64 px (the heatmap is then a 2x2 map), synthetic radiographs: the numbers mean nothing; the test
checks that every stage accepts the backbone, not how well it classifies.
"""
import json

import numpy as np
import pytest

from fracture_edge.edge_runtime.bundle import load_bundle
from fracture_edge.edge_runtime.cli import main

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow", reason="training and export need the train/export extras (TensorFlow)")

SIZE = 64
COMMON = ["--weights", "none", "--views", "2", "--head-epochs", "2", "--finetune-epochs", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from fracture_edge.train.synthetic import SyntheticSpec, write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("mobile-data"), SyntheticSpec(train=40, val=24, test=24, image_size=80))


@pytest.fixture(scope="module")
def student(data, tmp_path_factory):
    """(teacher run, distilled student run)."""
    root = tmp_path_factory.mktemp("mobile-runs")
    assert main(["train", "--data", str(data), "--out", str(root / "teacher"), "--size", "32", *COMMON]) == 0
    assert main(["train", "--data", str(data), "--out", str(root / "student"), "--backbone", "mobilenetv2-0.35",
                 "--size", str(SIZE), "--teacher", str(root / "teacher"), "--distill-alpha", "0.3", *COMMON]) == 0
    return root / "teacher", root / "student"


def test_the_student_bundle_records_backbone_contract_and_teacher(student):
    teacher, run = student
    bundle = load_bundle(run)
    assert (bundle["model"], bundle["backbone"]) == ("MobileNetV2-0.35", "mobilenetv2-0.35")
    assert bundle["input"]["size"] == SIZE and bundle["input"]["normalization"] == "in-graph mobilenet x/127.5 - 1"
    assert bundle["hparams"]["finetune_from"] == "block13" and bundle["hparams"]["distill_alpha"] == 0.3
    record = bundle["distillation"]
    assert record["run"] == str(teacher.resolve()) and record["model"] == "DenseNet121" and record["input_size"] == 32
    assert record["images"] == 40 and (record["alpha"], record["temperature"]) == (0.3, 2.0)
    card = (run / "model_card.md").read_text()
    assert "MobileNetV2-0.35 (backbone `mobilenetv2-0.35`" in card and "distilled from DenseNet121 `teacher`" in card
    history = json.loads((run / "history.json").read_text())
    assert history["head"]["val_auc"] and len(history["finetune"]["val_auc"]) == 1


def test_the_saved_student_reproduces_its_recorded_scores(student):
    import keras

    from fracture_edge.edge_runtime.preprocessing import InputContract, load_model_input

    _, run = student
    preds = json.loads((run / "predictions.json").read_text())["test"]
    model = keras.models.load_model(run / "model.keras", compile=False)
    pixels = np.stack([load_model_input(p, InputContract(size=SIZE)) for p in preds["paths"]])
    assert np.allclose(model.predict(pixels.astype(np.float32), verbose=0).ravel(), preds["probabilities"], atol=1e-4)


def test_every_default_format_exports_and_the_runtime_predicts_with_heatmaps(student, data, tmp_path):
    from fracture_edge.export.gates import VerdictRules
    from fracture_edge.export.options import ExportOptions
    from fracture_edge.export.pipeline import run_export

    _, run = student
    opts = ExportOptions(run_dir=run, calib_images=16, selection_images=8, site_images=-1,
                         gates=VerdictRules(margin_sensitivity=0.3, margin_specificity=0.3))
    rows, _ = run_export(opts)
    for row in rows:
        assert row.status in ("ok", "gate failed"), f"{row.format}: {row.error}"
        assert (run / row.file).is_file()
    by_format = {row.format: row for row in rows}
    assert by_format["tflite-fp32"].ok and by_format["onnx-fp32"].ok
    extra = load_bundle(run)["output"]["extra"]
    assert extra["heatmap"]["shape"] == [2, 2] and extra["features"]["shape"] == [1280]
    image = next((data / "test" / "fractured").iterdir())
    maps = tmp_path / "maps"
    assert main(["predict", str(run), str(image), "--format", "tflite-fp32", "--json", "--heatmaps", str(maps)]) == 0
    assert any(maps.iterdir())
