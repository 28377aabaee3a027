"""Training end to end on synthetic radiographs (slow: TensorFlow), and the training CLI's failure modes."""
import json
from pathlib import Path

import numpy as np
import pytest

from fracture_edge.edge_runtime.bundle import load_bundle
from fracture_edge.edge_runtime.cli import main

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow", reason="training tests need the train extra (TensorFlow)")


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    from fracture_edge.train.synthetic import SyntheticSpec, write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), SyntheticSpec(train=24, val=12, test=12, image_size=48))


@pytest.fixture(scope="module")
def trained_run(synthetic_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", "--data", str(synthetic_data), "--out", str(run), "--weights", "none", "--size", "32",
                 "--views", "2", "--head-epochs", "2", "--finetune-epochs", "1", "--batch-size", "8"])
    assert code == 0
    return run


def test_run_folder_contents(trained_run):
    for name in ("model.keras", "bundle.json", "metrics.json", "history.json", "predictions.json",
                 "history.png", "roc_pr.png", "confusion_test.png"):
        assert (trained_run / name).is_file(), name
    assert not list(trained_run.glob(".*"))  # atomic writes leave no temp files


def test_bundle_records_contract_thresholds_metrics(trained_run, synthetic_data):
    b = load_bundle(trained_run)
    assert b["input"]["size"] == 32 and b["labels"] == ["not_fractured", "fractured"]
    assert 0 <= b["thresholds"]["screening"] <= 1 and b["thresholds"]["chosen_on"] == "val"
    test = b["metrics"]["test"]
    assert test["n"] == 12 and set(test["balanced"]) >= {"accuracy", "precision", "sensitivity", "specificity", "f1"}
    assert b["data"]["source"] == str(Path(synthetic_data).resolve())
    assert "leak" in json.dumps(b["data"]["check"])
    assert b["artifacts"]["keras"]["file"] == "model.keras" and len(b["artifacts"]["keras"]["sha256"]) == 64
    assert b["versions"]["tensorflow"] == tf.__version__


def test_saved_model_reproduces_recorded_test_scores(trained_run):
    """The cached-activation predictions written at training time equal the saved model on real pixels."""
    import keras

    from fracture_edge.edge_runtime.preprocessing import InputContract, load_model_input

    preds = json.loads((trained_run / "predictions.json").read_text())["test"]
    model = keras.models.load_model(trained_run / "model.keras", compile=False)
    pixels = np.stack([load_model_input(p, InputContract(size=32)) for p in preds["paths"]])
    probs = model.predict(pixels.astype(np.float32), verbose=0).ravel()
    assert np.allclose(probs, preds["probabilities"], atol=1e-4)


def test_eval_rescoring_matches_training_metrics(trained_run, capsys):
    assert main(["eval", str(trained_run), "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    recorded = load_bundle(trained_run)["metrics"]["test"]
    assert result["auc"] == pytest.approx(recorded["auc"], abs=1e-6)
    assert result["ci"]["auc"]["value"] == pytest.approx(result["auc"])
    assert result["ci"]["resamples"] >= 2000 and set(result["ci"]["screening"]) == {"sensitivity", "specificity",
                                                                                   "precision", "f1"}
    assert main(["eval", str(trained_run), "--split", "test"]) == 0
    assert "95 % CI" in capsys.readouterr().out


def test_unreadable_images_are_skipped_and_counted(synthetic_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    (data / "train" / "fractured" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--weights", "none", "--size", "32",
                 "--views", "1", "--head-epochs", "1", "--finetune-from", "none", "--batch-size", "8"]) == 0
    assert load_bundle(run)["data"]["splits"]["train"]["skipped_unreadable"] == 1


def test_missing_weights_file_is_one_clear_line(synthetic_data, tmp_path, capsys):
    code = main(["train", "--data", str(synthetic_data), "--out", str(tmp_path / "r"), "--size", "32",
                 "--weights", str(tmp_path / "missing.weights.h5")])
    assert code == 1
    assert "missing.weights.h5: weights file not found" in capsys.readouterr().err


def test_existing_run_folder_is_not_overwritten(trained_run, synthetic_data, capsys):
    code = main(["train", "--data", str(synthetic_data), "--out", str(trained_run), "--weights", "none"])
    assert code == 1
    assert "exists and is not empty" in capsys.readouterr().err


def test_batchnorm_statistics_are_estimated_from_the_images():
    """A random backbone's placeholder statistics (0, 1) are replaced by those of its real inputs."""
    import keras

    from fracture_edge.train.model import build_model, estimate_batchnorm_statistics

    model = build_model(32, "none")
    pixels = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    conv1 = keras.Model(model.input, model.get_layer("conv1_conv").output)
    expected = conv1(pixels.astype(np.float32)).numpy().mean(axis=(0, 1, 2))
    estimate_batchnorm_statistics(model, pixels)
    bn = model.get_layer("conv1_bn")
    assert np.allclose(bn.moving_mean.numpy(), expected, rtol=1e-3, atol=1e-4)
    assert bn.momentum == pytest.approx(0.99)  # restored


def test_eval_shifts_scores_each_named_shift_with_intervals(trained_run, synthetic_data, capsys):
    code = main(["eval", str(trained_run), "--data", str(synthetic_data), "--shifts", "invert,hflip", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["shifts"]) == ["invert", "hflip"] and result["n"] == 12
    for row in result["shifts"].values():
        assert row["auc"]["ci_low"] <= row["auc"]["value"] <= row["auc"]["ci_high"]
        assert "p_value" in row["delta_vs_clean"]
    assert result["worst"]["shift"] in ("invert", "hflip")
    for suffix in ("json", "md", "png"):
        assert (trained_run / f"shifts_keras_test.{suffix}").is_file()
    assert "| invert |" in (trained_run / "shifts_keras_test.md").read_text()


def test_eval_shifts_rejects_an_unknown_shift(trained_run, synthetic_data, capsys):
    code = main(["eval", str(trained_run), "--data", str(synthetic_data), "--shifts", "sepia"])
    assert code == 1
    err = capsys.readouterr().err
    assert "unknown shift(s) sepia" in err and "Traceback" not in err


CARD_SECTIONS = ("## Intended use", "Not a medical device", "## Model", "## Data", "Leakage check",
                 "## Preprocessing contract", "## Performance on the test split", "| balanced |", "| screening |",
                 "## Subgroups", "## Acquisition shifts", "## Exported artifacts", "## Speed",
                 "## Known failure modes", "## What a site must check before use")


def test_run_folder_has_a_model_card_with_every_section_and_intervals(trained_run, capsys):
    card = (trained_run / "model_card.md").read_text()
    for section in CARD_SECTIONS:
        assert section in card, section
    assert load_bundle(trained_run)["model_card"] == "model_card.md"
    test_ci = json.loads((trained_run / "metrics.json").read_text())["test"]["ci"]
    assert test_ci["auc"]["ci_low"] <= test_ci["auc"]["value"] <= test_ci["auc"]["ci_high"]
    assert set(test_ci["balanced"]) == {"sensitivity", "specificity", "precision", "f1"}
    assert (trained_run / "samples_test.png").stat().st_size > 0
    assert main(["info", str(trained_run)]) == 0
    assert f"model card: {trained_run / 'model_card.md'}" in capsys.readouterr().out


def test_shift_suite_lands_in_the_model_card(trained_run, synthetic_data):
    assert main(["eval", str(trained_run), "--data", str(synthetic_data), "--shifts", "gamma-1.6"]) == 0
    card = (trained_run / "model_card.md").read_text()
    assert "| gamma-1.6 |" in card and "Not run yet" not in card


def test_stability_training_trains_the_saved_model_and_records_it(synthetic_data, tmp_path):
    """--stability fits both stages on (view, dithered view) pairs; the pairs share the model's own layers, so the
    saved model is the trained one (its test scores match the ones written at training time)."""
    import keras

    from fracture_edge.edge_runtime.preprocessing import InputContract, load_model_input

    run = tmp_path / "stable"
    code = main(["train", "--data", str(synthetic_data), "--out", str(run), "--weights", "none", "--size", "32",
                 "--views", "2", "--head-epochs", "2", "--finetune-epochs", "1", "--batch-size", "8",
                 "--stability", "0.5"])
    assert code == 0
    bundle = load_bundle(run)
    assert bundle["hparams"]["stability"] == 0.5
    history = json.loads((run / "history.json").read_text())
    assert len(history["head"]["val_auc"]) >= 1 and len(history["finetune"]["val_auc"]) == 1
    preds = json.loads((run / "predictions.json").read_text())["test"]
    model = keras.models.load_model(run / "model.keras", compile=False)
    pixels = np.stack([load_model_input(p, InputContract(size=32)) for p in preds["paths"]])
    assert np.allclose(model.predict(pixels.astype(np.float32), verbose=0).ravel(), preds["probabilities"], atol=1e-4)


def test_a_negative_stability_weight_is_one_clear_line(synthetic_data, tmp_path, capsys):
    assert main(["train", "--data", str(synthetic_data), "--out", str(tmp_path / "x"), "--stability", "-1"]) != 0
    assert "--stability must be >= 0" in capsys.readouterr().err


def test_mixed_precision_trains_in_bfloat16_and_saves_a_float32_model(synthetic_data, tmp_path, monkeypatch):
    """--mixed-precision: the bfloat16 twin trains, the float32 model gets its weights and is what is saved and
    scored (its test scores on real pixels are the ones written at training time)."""
    import keras

    from fracture_edge.edge_runtime.preprocessing import InputContract, load_model_input
    from fracture_edge.train import precision

    seen = {}

    def spy(build, model):
        seen["twin"] = precision_twin(build, model)
        seen["initial"] = [w.copy() for w in seen["twin"].get_weights()]
        return seen["twin"]

    precision_twin = precision.mixed_twin
    monkeypatch.setattr(precision, "mixed_twin", spy)
    run = tmp_path / "bf16"
    code = main(["train", "--data", str(synthetic_data), "--out", str(run), "--weights", "none", "--size", "32",
                 "--views", "2", "--head-epochs", "2", "--finetune-epochs", "1", "--batch-size", "8",
                 "--mixed-precision"])
    assert code == 0
    assert keras.config.dtype_policy().name == "float32"
    assert seen["twin"].get_layer("conv5_block16_2_conv").compute_dtype == "bfloat16"
    assert load_bundle(run)["hparams"]["mixed_precision"] is True
    model = keras.models.load_model(run / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    trained = seen["twin"].get_weights()
    assert all(np.array_equal(saved, mine) for saved, mine in zip(model.get_weights(), trained))
    changed = [not np.array_equal(before, after) for before, after in zip(seen["initial"], trained)]
    assert changed[-1] and changed[-2]   # the output unit was trained (in the twin) before it was copied back
    preds = json.loads((run / "predictions.json").read_text())["test"]
    pixels = np.stack([load_model_input(p, InputContract(size=32)) for p in preds["paths"]])
    assert np.allclose(model.predict(pixels.astype(np.float32), verbose=0).ravel(), preds["probabilities"], atol=1e-4)
