"""export/site_fit.py's choice of the ppca model's K, with the Keras forward pass replaced by constructed features."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fracture_edge.edge_runtime.bundle_schema import SITE_METHOD, SITE_METHOD_PPCA
from fracture_edge.edge_runtime.dataset import Sample
from fracture_edge.edge_runtime.preprocessing import InputContract
from fracture_edge.export import site_fit

D = 96


def _features(n: int, seed: int) -> np.ndarray:
    """16 strong directions plus isotropic noise (test_site_components.strong_directions, smaller)."""
    basis = np.linalg.qr(np.random.default_rng(99).standard_normal((D, 16)))[0].T
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 16)) * np.linspace(10, 3, 16) @ basis + rng.standard_normal((n, D))).astype(
        np.float32)


@pytest.fixture
def fake_forward(monkeypatch):
    """Training and val samples in a constructed dataset; image_features gives constructed features per path."""
    def dataset(val: int):
        samples = [Sample(Path(f"train/{i}.png"), "fractured", "train") for i in range(400)]
        samples += [Sample(Path(f"val/{i}.png"), "fractured", "val") for i in range(val)]
        monkeypatch.setattr(site_fit, "read_dataset", lambda data: samples)
        monkeypatch.setattr("fracture_edge.export.calibration.read_dataset", lambda data: samples)

    def image_features(model, paths, contract, what):
        return _features(len(paths), seed=1 if "val" in what else 0)

    monkeypatch.setattr(site_fit, "image_features", image_features)
    return dataset


@pytest.mark.parametrize("val, on, images", [(60, "data [val]", 60), (5, "held-out training images", 100)])
def test_export_records_the_chosen_k_and_what_chose_it(fake_forward, tmp_path, val, on, images, caplog):
    fake_forward(val)
    record = site_fit.fit_export_site_model(None, "data", InputContract(size=64), tmp_path, n=400)
    record = json.loads(json.dumps(record))
    choice = record["component_choice"]
    assert record["method"] == SITE_METHOD_PPCA and record["residual_scale"] > 0 and record["components"] == 16
    assert choice["on"] == on and choice["images"] == images and choice["chosen"] == 16
    assert set(choice["mean_log_likelihood"]) == {"8", "16", "32", "64"}
    assert (tmp_path / record["file"]).stat().st_size == 4 * record["layout"]["values"]
    assert ("held-out training images choose" in caplog.text) == (val < site_fit.MIN_CHOICE_IMAGES)


def test_too_few_features_for_any_candidate_keep_the_subspace_distance(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(site_fit, "training_features", lambda *a: (_features(400, 0)[:, :8], "data [train]"))
    monkeypatch.setattr(site_fit, "val_features", lambda *a: pytest.fail("no val pass without a candidate"))
    record = site_fit.fit_export_site_model(None, "data", InputContract(size=64), tmp_path, n=400)
    assert record["method"] == SITE_METHOD and "component_choice" not in record and "subspace" in caplog.text
