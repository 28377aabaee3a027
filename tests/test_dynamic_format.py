"""The tflite-int8-dynamic row through every command on the tiny fixture models (no TensorFlow needed).

The fixtures' dynamic-range model has int8 conv weights and a float32 input (scripts/make_fixture_models.py),
as the real export's has: predict, info, eval, bench, serve and adapt must treat it like any other format.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FORMAT = "tflite-int8-dynamic"


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, level in (("dark.png", 20), ("mid.png", 128), ("bright.png", 235)):
        Image.new("L", (40, 36), level).save(folder / name)
    return folder


def test_the_fixture_is_a_dynamic_range_model_with_a_float_input():
    from fracture_edge.edge_runtime.classifier import Classifier

    clf = Classifier(FIXTURES / "models", format=FORMAT)
    assert clf.format.name == FORMAT and clf.integrity == "verified"
    pixels = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (20, 128, 235)])
    dynamic, fp32 = clf.predict_pixels(pixels), Classifier(FIXTURES / "models", format="tflite-fp32").predict_pixels(pixels)
    assert np.all(np.diff(dynamic) > 0) and np.abs(dynamic - fp32).max() < 5e-3   # int8 weights: close, not equal


def test_predict_json_and_info(capsys, images):
    assert main(["predict", str(FIXTURES / "models"), str(images), "--format", FORMAT, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(r["error"] is None for r in rows)
    by_name = {Path(r["path"]).name: r["probability"] for r in rows}
    assert by_name["dark.png"] < by_name["mid.png"] < by_name["bright.png"]
    from fracture_edge.edge_runtime.classifier import Classifier

    expected = Classifier(FIXTURES / "models", format=FORMAT).predict_file(images / "mid.png").probability
    assert by_name["mid.png"] == pytest.approx(expected, abs=1e-6)     # the dynamic artifact answered
    assert main(["info", str(FIXTURES / "models")]) == 0
    out = capsys.readouterr().out
    assert FORMAT in out and "model_int8_dynamic.tflite" in out


def test_eval_scores_the_dynamic_artifact(tmp_path):
    from fracture_edge.train.synthetic import SyntheticSpec, write_synthetic_dataset

    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "models", run)
    data = write_synthetic_dataset(tmp_path / "data", SyntheticSpec(train=4, val=4, test=12, image_size=40))
    assert main(["eval", str(run), "--data", str(data), "--split", "test", "--format", FORMAT]) == 0
    written = list(run.glob(f"eval_{FORMAT}_test*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["n"] == 12


def test_bench_measures_the_dynamic_row(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "models", run)
    data = tmp_path / "data" / "test"
    for label, level in (("fractured", 220), ("not_fractured", 30)):
        (data / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (40, 40), level + i).save(data / label / f"{i}.png")
    code = main(["bench", str(run), "--data", str(tmp_path / "data"), "--quick", "--threads", "2", "--no-plots",
                 "--formats", f"tflite-fp32,{FORMAT}", "--out", str(tmp_path / "bench")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    rows = {r["label"]: r for r in report["rows"]}
    assert rows[FORMAT]["status"] == "ok" and rows[FORMAT]["latency"]["p50_ms"] > 0
    targets = {t["key"]: t for t in report["targets"]}
    assert targets["dynamic_vs_fp32"]["measured"] is not None and targets["dynamic_size"]["measured"] < 0.01


def test_serve_answers_with_the_dynamic_artifact():
    from starlette.testclient import TestClient

    from fracture_edge.edge_runtime.classifier import open_classifier
    from fracture_edge.edge_runtime.serve.app import ServeOptions, create_app

    folder = FIXTURES / "heatmap_models"
    clf = open_classifier(folder, format=FORMAT, integrity="require")
    client = TestClient(create_app(clf, ServeOptions(model=str(folder), format=FORMAT)), base_url="http://127.0.0.1:8000")
    import io

    buffer = io.BytesIO()
    Image.new("L", (50, 40), 200).save(buffer, format="PNG")
    answer = client.post("/v1/predict?overlay=0", content=buffer.getvalue()).json()
    assert answer["model"]["format"] == FORMAT and 0 < answer["probability"] < 1 and answer["heatmap"]["shape"]


def test_adapt_reads_the_dynamic_artifacts_features(tmp_path, synthetic_xray):
    site = tmp_path / "site"
    for label, offset in (("fractured", 60), ("not_fractured", 0)):
        (site / label).mkdir(parents=True)
        for i in range(12):
            gray = np.clip(synthetic_xray(100 * offset + i, (48, 48)).astype(int) + offset, 0, 255).astype(np.uint8)
            Image.fromarray(gray).save(site / label / f"{i}.png")
    assert main(["adapt", str(FIXTURES / "adapt_models"), "--data", str(site), "--out", str(tmp_path / "new"),
                 "--format", FORMAT]) == 0
    bundle = json.loads((tmp_path / "new" / "bundle.json").read_text())
    assert bundle["adapted_head"] and FORMAT in bundle["artifacts"]
