"""Extra outputs of every artifact, on a tiny DenseNet121 at 64 px: the heatmap (issue 14, a 2x2 map) and the
pooled features (issue 15, 1,024 values, the input of `fracture-edge adapt`).

The session's one export of every format with both (tests/export_fixture.py: the real pipeline, synthetic data
plus a boxes.csv), and the same formats exported the old way (no extra output) from the same model and
calibration images: the probability must be bit-for-bit the same, the int8 census and the gates unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export_fixture import SIZE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tiny_export):
    """(run folder, rows, context, data folder, number of boxed test images) of the shared export."""
    return tiny_export.run, tiny_export.rows, tiny_export.context, tiny_export.data, tiny_export.boxed


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


# The formats that existed before issue 14, fp16 aside (the same converter path as fp32, at half the cost
# of CI time); tflite-int8-dynamic came later and chooses its float layers by measuring this very graph.
OLD_PATH_FORMATS = ("tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8")


def old_path_artifacts(run: Path, data: Path, out: Path, opts) -> dict[str, Path]:
    """The same model and calibration (opts: the export's options) exported as before issue 14: no extra
    output (no heatmap, no features)."""
    from fracture_edge.edge_runtime.bundle import input_contract, load_bundle
    from fracture_edge.edge_runtime.formats import FORMATS
    from fracture_edge.export.calibration import calibration_set
    from fracture_edge.export.exporters import EXPORTERS
    from fracture_edge.export.intermediates import ExportSettings, IntermediateStore
    from fracture_edge.export.pipeline import load_keras_model

    contract = input_contract(load_bundle(run))
    model = load_keras_model(run, SIZE)
    store = IntermediateStore(ExportSettings(
        model, contract, lambda: calibration_set(data, contract, opts.calib_images, opts.calib_seed), extra_outputs=()))
    paths = {}
    try:
        for name in OLD_PATH_FORMATS:
            paths[name] = out / FORMATS[name].filename
            EXPORTERS[name](store, paths[name])
    finally:
        store.close()
    return paths


def test_probability_is_bit_for_bit_the_old_one_and_census_unchanged(exported, tiny_export, tmp_path):
    from fracture_edge.edge_runtime.bundle import load_bundle
    from fracture_edge.edge_runtime.classifier import Classifier
    from fracture_edge.export.embed import embed_bundle
    from fracture_edge.export.int8_census import int8_census
    from fracture_edge.export.pipeline import embedded_bundle

    run, rows, _, data, _ = exported
    old = old_path_artifacts(run, data, tmp_path, tiny_export.opts)
    bundle = embedded_bundle(load_bundle(run))
    bundle["output"] = {k: v for k, v in bundle["output"].items() if k != "extra"}
    bundle.pop("site_model", None)       # the old path predates the site model, which reads the features output
    pixels = np.random.default_rng(1).integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8)
    for row in (r for r in rows if r.format in old):
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
