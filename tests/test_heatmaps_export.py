"""Extra outputs of every artifact, on a tiny DenseNet121 at 64 px: the heatmap (issue 14, a 2x2 map) and the
pooled features (issue 15, 1,024 values, the input of `fracture-edge adapt`).

One export of every format with both (the real pipeline, synthetic data plus a boxes.csv), and the same
formats exported the old way (no extra output) from the same model and calibration images: the
probability must be bit-for-bit the same, the int8 census and the gates unchanged.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SIZE = 64


def tiny_run(run: Path, data: Path) -> None:
    """model.keras + bundle.json at 64 px, one epoch on the synthetic training split."""
    import keras

    from fracture_edge.edge_runtime.bundle import SCHEMA_VERSION, artifact_record, save_bundle
    from fracture_edge.edge_runtime.dataset import LABELS, POSITIVE
    from fracture_edge.edge_runtime.preprocessing import InputContract
    from fracture_edge.export.calibration import verification_set
    from fracture_edge.train.model import build_model

    keras.utils.set_random_seed(0)
    contract = InputContract(size=SIZE)
    train = verification_set(data, contract, ("train",))
    model = build_model(SIZE, weights="none")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit(train.pixels.astype(np.float32), train.labels.astype(np.float32), epochs=1, batch_size=16, verbose=0)
    model.save(run / "model.keras")
    save_bundle(run, {
        "schema_version": SCHEMA_VERSION, "labels": list(LABELS), "positive_label": POSITIVE,
        "output": {"kind": "sigmoid", "positive_index": 0},
        "thresholds": {"balanced": 0.5, "screening": 0.2, "default": "balanced"}, "input": contract.to_dict(),
        "data": {"source": str(data), "synthetic": True},
        "artifacts": {"keras": artifact_record(run / "model.keras")}})


def write_boxes(data: Path) -> int:
    """A boxes.csv in FracAtlas' layout: one box (upper-left quarter) per fractured test image."""
    from PIL import Image

    rows = []
    for path in sorted((data / "test" / "fractured").iterdir()):
        with Image.open(path) as img:
            w, h = img.size
        rows.append([f"test/fractured/{path.name}", "test", 0, 0, w / 4, h / 4, w, h])
    with open(data / "boxes.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "split", "x0", "y0", "x1", "y1", "image_w", "image_h"])
        writer.writerows(rows)
    return len(rows)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(run folder, rows, context, data folder, number of boxed test images)."""
    pytest.importorskip("tensorflow")
    from fracture_edge.export.pipeline import ExportOptions, run_export
    from fracture_edge.export.report import write_reports
    from fracture_edge.train.synthetic import SyntheticSpec, write_synthetic_dataset

    root = tmp_path_factory.mktemp("heatmaps")
    data = write_synthetic_dataset(root / "data", SyntheticSpec(train=32, val=12, test=16, image_size=80))
    boxed = write_boxes(data)
    run = root / "run"
    run.mkdir()
    tiny_run(run, data)
    rows, context = run_export(ExportOptions(run_dir=run, calib_images=8, num_threads=1))
    write_reports(run, rows, context)
    return run, rows, context, data, boxed


def test_every_format_exported_with_a_row(exported):
    from fracture_edge.edge_runtime.formats import DEFAULT_EXPORT_FORMATS

    run, rows, _, _, _ = exported
    assert [r.format for r in rows] == list(DEFAULT_EXPORT_FORMATS)
    for row in rows:
        assert row.status in ("ok", "gate failed"), f"{row.format}: {row.error}"
        assert (run / row.file).is_file()


def test_bundle_declares_the_extra_outputs_and_every_artifact_returns_them(exported):
    from fracture_edge.edge_runtime.bundle import load_bundle
    from fracture_edge.edge_runtime.classifier import Classifier
    from fracture_edge.edge_runtime.embedded import read_embedded_bundle
    from fracture_edge.export.extra_outputs import classifier_head, keras_outputs
    from fracture_edge.export.pipeline import load_keras_model

    run, rows, _, _, _ = exported
    shapes = {"heatmap": [2, 2], "features": [1024]}
    assert {k: v["shape"] for k, v in load_bundle(run)["output"]["extra"].items()} == shapes
    pixels = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    model = load_keras_model(run, SIZE)
    kernel, bias = classifier_head(model)[1].get_weights()
    reference = keras_outputs(model, pixels.astype(np.float32), ("features",))["features"]
    for row in rows:
        assert {k: v["shape"] for k, v in read_embedded_bundle(run / row.file)["output"]["extra"].items()} == shapes
        clf = Classifier(run / row.file)
        probs, extra = clf.outputs(pixels, ("heatmap", "features"))
        assert clf.extra_outputs == ("heatmap", "features") and extra["heatmap"].shape == (3, 2, 2), row.format
        assert extra["features"].shape == (3, 1024), row.format
        logits = np.log(probs / (1 - probs))     # the map's mean is the logit (GAP + Dense), and so is the
        tolerance = 1e-3 if row.format.endswith(("fp32", "fp16")) else 0.5          # Dense on the features
        assert np.allclose(extra["heatmap"].mean(axis=(1, 2)), logits, atol=tolerance), row.format
        assert np.allclose(extra["features"] @ kernel[:, 0] + bias[0], logits, atol=tolerance), row.format
        if row.format.endswith("int8"):          # the features are Keras' pooled features (int8: its rounding)
            assert np.corrcoef(extra["features"].ravel(), reference.ravel())[0, 1] > 0.9, row.format
        else:
            limit = 1e-4 if row.format.endswith("fp32") else 2e-2
            assert np.abs(extra["features"] - reference).max() <= limit * np.abs(reference).max(), row.format


def test_report_has_correlations_and_pointing_game_for_every_artifact(exported):
    run, rows, context, _, boxed = exported
    keras = context["heatmaps"]["keras"]
    assert keras["pointing_game"]["images"] == boxed and keras["pointing_game"]["margin_px"] == 15
    assert keras["center_baseline"]["images"] == boxed
    for row in rows:
        facts = row.facts["heatmap"]
        assert facts["pointing_game"]["images"] == boxed, row.format
        assert facts["correlation_median"] is not None and facts["correlation_p5"] <= facts["correlation_median"]
        if row.format.endswith("fp32"):
            assert facts["correlation_p5"] > 0.999, row.format
    markdown = (run / "export_report.md").read_text()
    assert "## Heatmaps" in markdown and "Pointing game" in markdown and "correlation" in markdown
    assert (run / "heatmaps_test.png").stat().st_size > 1000


def old_path_artifacts(run: Path, data: Path, out: Path) -> dict[str, Path]:
    """The same model and calibration exported as before issue 14: no extra output (no heatmap, no features)."""
    from fracture_edge.edge_runtime.bundle import input_contract, load_bundle
    from fracture_edge.edge_runtime.formats import DEFAULT_EXPORT_FORMATS, FORMATS
    from fracture_edge.export.calibration import calibration_set
    from fracture_edge.export.exporters import EXPORTERS, ExportContext
    from fracture_edge.export.pipeline import load_keras_model

    contract = input_contract(load_bundle(run))
    model = load_keras_model(run, SIZE)
    ctx = ExportContext(model, contract, lambda: calibration_set(data, contract, 8, 0), extra_outputs=())
    paths = {}
    try:
        for name in DEFAULT_EXPORT_FORMATS:
            paths[name] = out / FORMATS[name].filename
            EXPORTERS[name](ctx, paths[name])
    finally:
        ctx.close()
    return paths


def test_probability_is_bit_for_bit_the_old_one_and_census_unchanged(exported, tmp_path):
    from fracture_edge.edge_runtime.bundle import load_bundle
    from fracture_edge.edge_runtime.classifier import Classifier
    from fracture_edge.export.embed import embed_bundle
    from fracture_edge.export.int8_census import int8_census
    from fracture_edge.export.pipeline import embedded_bundle

    run, rows, _, data, _ = exported
    old = old_path_artifacts(run, data, tmp_path)
    bundle = embedded_bundle(load_bundle(run))
    bundle["output"] = {k: v for k, v in bundle["output"].items() if k != "extra"}
    pixels = np.random.default_rng(1).integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8)
    for row in rows:
        embed_bundle(old[row.format], bundle)
        before = Classifier(old[row.format]).predict_pixels(pixels)
        after = Classifier(run / row.file).predict_pixels(pixels)
        assert np.array_equal(before, after), f"{row.format}: {np.abs(before - after).max()}"
        if row.format.endswith("int8"):
            assert int8_census(old[row.format]) == int8_census(run / row.file) == row.facts["int8_ops"]
            assert row.facts["int8_ops"]["integer_but_classifier"]


def test_old_artifact_without_heatmap_still_runs_and_says_so(exported, tmp_path):
    """A bundle that declares the heatmap beside an artifact without one: probabilities work, heatmaps refuse."""
    from fracture_edge.edge_runtime.bundle import load_bundle
    from fracture_edge.edge_runtime.classifier import Classifier
    from fracture_edge.edge_runtime.errors import FractureEdgeError

    run = exported[0]
    fixtures = Path(__file__).parent / "fixtures" / "models"
    clf = Classifier(fixtures / "model_fp32.tflite", bundle={**load_bundle(fixtures), "output": load_bundle(run)["output"]})
    assert clf.extra_outputs == ()
    pixels = np.zeros((1, 32, 32, 3), np.uint8)
    assert clf.predict_pixels(pixels).shape == (1,)
    with pytest.raises(FractureEdgeError, match="no heatmap output"):
        clf.outputs(pixels, ("heatmap",))
