"""The site check through the pipeline (issue 22): export fits and stores the site model, every prediction carries
its in_distribution score, `check-site` judges a folder, and the bundle schema and integrity rules hold."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime.bundle import load_bundle, save_bundle
from fracture_edge.edge_runtime.bundle_schema import bundle_problems
from fracture_edge.edge_runtime.cli import main
from fracture_edge.edge_runtime.site_model import PPCA_METHOD, SITE_FILE, load_site_model

pytestmark = pytest.mark.slow


def test_export_stores_a_site_model_fitted_on_training_images_only(tiny_export):
    bundle = load_bundle(tiny_export.run)
    record = bundle["site_model"]
    assert bundle_problems(bundle) == []
    assert record["file"] == SITE_FILE and "[train]" in record["source"]
    assert record["images"] == 80 and record["held_out"] == 20 and record["fitted_on"] == 60
    assert record["features"] == bundle["output"]["extra"]["features"]["shape"][0]
    site = load_site_model(tiny_export.run / SITE_FILE, record)
    assert site.held_out.size == 20 and np.all(np.diff(site.held_out) >= 0)


def test_export_chooses_the_ppca_components_on_the_val_images(tiny_export):
    """The residual design (docs/site-check.md): K from the candidates the 60 fitting images support, by the mean
    log-likelihood of the data's 24 val images, recorded with every candidate's value."""
    record = load_bundle(tiny_export.run)["site_model"]
    choice = record["component_choice"]
    assert record["method"] == PPCA_METHOD and record["residual_scale"] > 0
    assert choice["on"].endswith("[val]") and choice["images"] == 24
    likelihood = {int(k): v for k, v in choice["mean_log_likelihood"].items()}
    assert set(likelihood) == {8, 16, 32} and choice["chosen"] == record["components"] == max(likelihood,
                                                                                            key=likelihood.get)
    site = load_site_model(tiny_export.run / SITE_FILE, record)
    assert site.residual_scale == record["residual_scale"] and site.components.shape[0] == choice["chosen"]
    assert (tiny_export.run.parent / "assets" / SITE_FILE).is_file()   # --android-assets copies it


def test_every_format_scores_the_same_images_alike(tiny_export, capsys):
    """The same site model serves every artifact; a compressed one moves the scores only by its own error."""
    test_images = str(tiny_export.data / "test")
    scores = {}
    for fmt in ("tflite-fp32", "tflite-fp16", "onnx-fp32"):
        assert main(["predict", str(tiny_export.run), test_images, "--recursive", "--json", "--format", fmt]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert all(0.0 < r["in_distribution"] <= 1.0 and isinstance(r["outside_training_data"], bool) for r in rows)
        assert all(r["outside_training_data"] == (r["in_distribution"] < 0.05) for r in rows)
        scores[fmt] = np.array([r["in_distribution"] for r in rows])
    assert np.array_equal(scores["tflite-fp32"], scores["onnx-fp32"])
    assert np.max(np.abs(scores["tflite-fp16"] - scores["tflite-fp32"])) <= 0.1


def _noise_folder(folder, n=24, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (80, 80), dtype=np.uint8)).save(folder / f"noise_{i:02d}.png")
    return folder


def test_check_site_says_like_for_held_out_synthetic_images_and_different_for_noise(tiny_export, tmp_path, capsys):
    like = main(["check-site", str(tiny_export.run), "--data", str(tiny_export.data / "test"), "--recursive",
                 "--out", str(tmp_path / "like"), "--json"])
    verdict = json.loads(capsys.readouterr().out)
    assert like == 0 and verdict["verdict"] == "like the training data" and verdict["images"] == 24
    report = json.loads((tmp_path / "like" / "site_check.json").read_text())
    assert len(report["images"]) == 24 and report["verdict"]["flagged"] == sum(
        item["outside_training_data"] for item in report["images"])
    site = report["site_model"]          # what the bundle's record says of the shipped model and its K
    assert site["method"] == PPCA_METHOD and site["residual_scale"] > 0
    assert site["component_choice"]["chosen"] == site["components"] and site["component_choice"]["on"].endswith("[val]")
    assert (tmp_path / "like" / "site_scores.png").stat().st_size > 1000
    assert (tmp_path / "like" / "site_scores.csv").read_text().startswith("path,in_distribution")

    noise = _noise_folder(tmp_path / "noise")
    (noise / "broken.png").write_bytes(b"not an image")
    different = main(["check-site", str(tiny_export.run), "--data", str(noise), "--out", str(tmp_path / "different")])
    out, err = capsys.readouterr()
    assert different == 3 and "different from the training data" in out and "24 of 24" in out
    assert f"site model: {PPCA_METHOD}, {site['components']} components (K chosen on 24 images" in out
    assert "broken.png" in err          # skipped and named, the rest judged


def test_check_site_refuses_too_few_images_and_a_run_without_a_site_model(tiny_export, tmp_path, capsys):
    few = _noise_folder(tmp_path / "few", n=5)
    assert main(["check-site", str(tiny_export.run), "--data", str(few)]) == 1
    assert "too few images" in capsys.readouterr().err
    run = tmp_path / "run"
    shutil.copytree(tiny_export.run, run)
    bundle = load_bundle(run)
    del bundle["site_model"]
    save_bundle(run, bundle)
    assert main(["check-site", str(run), "--data", str(tiny_export.data / "test"), "--recursive"]) == 1
    assert "no site model" in capsys.readouterr().err
    assert main(["predict", str(run), str(tiny_export.data / "test"), "--recursive", "--json"]) == 0
    assert all(json.loads(line)["in_distribution"] is None for line in capsys.readouterr().out.splitlines())


def test_a_tampered_site_model_is_refused_in_one_line(tiny_export, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_export.run, run)
    data = bytearray((run / SITE_FILE).read_bytes())
    data[0] ^= 0xFF
    (run / SITE_FILE).write_bytes(bytes(data))
    assert main(["predict", str(run), str(tiny_export.data / "test"), "--recursive"]) == 1
    err = capsys.readouterr().err
    assert "site model does not match the sha256" in err and "Traceback" not in err


def test_the_schema_names_a_site_model_that_does_not_fit_the_features_output(tiny_export):
    bundle = load_bundle(tiny_export.run)
    wrong = {**bundle, "site_model": {**bundle["site_model"], "features": 7, "flag_below": 2}}
    problems = bundle_problems(wrong)
    assert any(p.startswith("site_model.features") for p in problems)
    assert any(p.startswith("site_model.flag_below") for p in problems)


def test_serve_answers_carry_the_site_check(tiny_export):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from fracture_edge.edge_runtime.classifier import open_classifier
    from fracture_edge.edge_runtime.serve.app import ServeOptions, create_app

    opts = ServeOptions(model=str(tiny_export.run))
    clf = open_classifier(tiny_export.run, format="tflite-fp32", integrity="require")
    client = TestClient(create_app(clf, opts), base_url="http://127.0.0.1:8000")
    image = next((tiny_export.data / "test" / "fractured").iterdir())
    answer = client.post("/v1/predict?name=x.png", content=image.read_bytes()).json()
    expected = clf.predict_file(image).in_distribution
    assert answer["in_distribution"]["score"] == pytest.approx(expected, abs=1e-4)
    assert answer["in_distribution"]["outside_training_data"] == (expected < 0.05)


def test_the_own_check_opens_every_exported_format_and_the_rejected_ones_from_rejected(tiny_export):
    """experiments/site_check_eval.open_format: a passing artifact through the run's bundle, one export rejected
    from RUN/rejected/ (checked against the export report), labelled '<format> (rejected)'."""
    from fracture_edge.experiments.site_check_eval import open_format

    for row in tiny_export.rows:
        label, clf = open_format(str(tiny_export.run), row.format)
        assert clf.path == tiny_export.run / row.file
        assert label == (row.format if row.ok else f"{row.format} (rejected)")
