"""bundle.json schema: what every consumer relies on is validated with a clear message."""
import json

import pytest

from fracture_edge.edge_runtime import bundle as B
from fracture_edge.edge_runtime.preprocessing import InputContract


def make_bundle(**overrides):
    b = {"schema_version": 1, "labels": ["not_fractured", "fractured"], "positive_label": "fractured",
         "output": {"kind": "sigmoid", "positive_index": 0},
         "thresholds": {"balanced": 0.4, "screening": 0.1, "default": "balanced"},
         "input": InputContract(size=64).to_dict(), "artifacts": {}}
    b.update(overrides)
    return b


def test_save_and_load_round_trip(tmp_path):
    B.save_bundle(tmp_path, make_bundle())
    loaded = B.load_bundle(tmp_path)
    assert loaded["thresholds"]["balanced"] == 0.4
    assert B.input_contract(loaded).size == 64
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


@pytest.mark.parametrize("overrides,message", [
    ({"schema_version": 99}, "schema_version 99"),
    ({"labels": ["a", "b"]}, "labels"),
    ({"thresholds": {"balanced": 1.5, "screening": 0.1}}, "thresholds.balanced"),
    ({"thresholds": {"balanced": 0.5}}, "thresholds.screening"),
    ({"input": {"size": 64, "fit": "crop"}}, "input contract"),
])
def test_invalid_bundles_are_refused_with_the_reason(overrides, message):
    with pytest.raises(B.BundleError, match=message):
        B.validate_bundle(make_bundle(**overrides))


def test_missing_keys_and_files(tmp_path):
    with pytest.raises(B.BundleError, match="missing key"):
        B.validate_bundle({"schema_version": 1})
    with pytest.raises(B.BundleError, match="no bundle.json"):
        B.load_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(B.BundleError, match="cannot read"):
        B.load_bundle(tmp_path)


@pytest.mark.parametrize("choice,expected", [
    (None, ("balanced", 0.4)), ("screening", ("screening", 0.1)), (0.7, ("custom", 0.7)), ("0.25", ("custom", 0.25))])
def test_resolve_threshold(choice, expected):
    assert B.resolve_threshold(make_bundle(), choice) == expected


@pytest.mark.parametrize("choice", ["strict", 1.5, -0.1])
def test_resolve_threshold_rejects(choice):
    with pytest.raises(ValueError):
        B.resolve_threshold(make_bundle(), choice)


def test_artifact_record(tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(b"abc")
    rec = B.artifact_record(p)
    assert rec == {"file": "m.tflite", "bytes": 3,
                   "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    json.dumps(rec)
