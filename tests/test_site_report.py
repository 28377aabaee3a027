"""What `check-site`'s report says of the site model (edge_runtime/site_cli.py, issue 22): the method, and for a
"ppca" record its residual_scale and how K was chosen; an old "mahalanobis-pca" record still reads, without them."""
from __future__ import annotations

import numpy as np

from fracture_edge.edge_runtime.site_cli import site_model_line, site_model_summary
from fracture_edge.edge_runtime.site_components import choose_components
from fracture_edge.edge_runtime.site_model import METHOD, PPCA_METHOD, fit_site_model


def features(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(size=(n, 48)) * np.where(np.arange(48) < 6, 3.0, 0.3) + 1.0, 0.0)


def record_as_export_writes(model, **extra) -> dict:
    """export/site_fit.py's record: describe() + file facts, source, images, seed (+ component_choice)."""
    return {**model.describe(), "file": "site_model.f32", "bytes": 1, "sha256": "0" * 64,
            "source": "DATA [train]", "images": 400, "seed": 0, **extra}


def test_a_ppca_record_reports_its_residual_scale_and_the_chosen_k():
    train = features(400, 0)
    choice = choose_components(train, features(60, 1))
    record = record_as_export_writes(choice.model, component_choice={**choice.to_dict(), "on": "DATA [val]",
                                                                     "images": 60})
    summary = site_model_summary(record)
    assert summary["method"] == PPCA_METHOD and summary["components"] == choice.components
    assert summary["residual_scale"] == record["residual_scale"] > 0
    assert summary["component_choice"]["chosen"] == choice.components
    assert summary["component_choice"]["on"] == "DATA [val]" and summary["component_choice"]["images"] == 60
    line = site_model_line(summary)
    assert line.startswith(f"site model: ppca, {choice.components} components (K chosen on 60 images of DATA [val]")
    assert "residual_scale" in line


def test_an_old_subspace_record_reports_its_method_without_a_scale_or_a_choice():
    record = record_as_export_writes(fit_site_model(features(400, 0), components=16))
    summary = site_model_summary(record)
    assert summary == {"method": METHOD, "components": 16, "images": 400, "source": "DATA [train]"}
    assert site_model_line(summary) == "site model: mahalanobis-pca, 16 components"
