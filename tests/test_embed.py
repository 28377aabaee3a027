"""export/embed.py writes the bundle into an artifact; edge_runtime/embedded.py reads it back without TensorFlow."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fracture_edge.edge_runtime.bundle import BundleError, load_bundle
from fracture_edge.edge_runtime.classifier import Classifier
from fracture_edge.edge_runtime.embedded import METADATA_KEY, read_embedded_bundle

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
PIXELS = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 100, 200, 255)])


def changed_bundle() -> dict:
    bundle = load_bundle(FIXTURES)
    bundle["thresholds"] = {**bundle["thresholds"], "balanced": 0.42}
    return bundle


def embed_and_check(tmp_path: Path, name: str) -> None:
    """Embed twice (replace, not append), read back, and check that the model still computes the same."""
    from fracture_edge.export.embed import embed_bundle

    path = Path(shutil.copy(FIXTURES / name, tmp_path / name))
    before = Classifier(path).predict_pixels(PIXELS)
    embed_bundle(path, load_bundle(FIXTURES))
    embed_bundle(path, changed_bundle())
    embedded = read_embedded_bundle(path)
    assert embedded["thresholds"]["balanced"] == 0.42
    own = next(r for r in embedded["artifacts"].values() if r["file"] == name)
    assert "sha256" not in own and "bytes" not in own  # a file cannot carry its own hash
    assert path.read_bytes().count(METADATA_KEY.encode()) == 1
    clf = Classifier(path)
    assert clf.threshold == 0.42 and clf.bundle_source == "embedded"
    np.testing.assert_allclose(clf.predict_pixels(PIXELS), before, atol=1e-7)


def test_onnx_embed_round_trip(tmp_path):
    pytest.importorskip("onnx")
    embed_and_check(tmp_path, "model_fp32.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model_fp32.tflite", "model_int8.tflite"])
def test_tflite_embed_round_trip(tmp_path, name):
    pytest.importorskip("tensorflow")
    embed_and_check(tmp_path, name)


def test_embed_refuses_a_bad_bundle_and_an_unknown_file(tmp_path):
    from fracture_edge.export.embed import embed_bundle

    bundle = load_bundle(FIXTURES)
    del bundle["labels"]
    with pytest.raises(BundleError, match="labels"):
        embed_bundle(tmp_path / "model.onnx", bundle)
    with pytest.raises(ValueError, match="cannot embed"):
        embed_bundle(tmp_path / "model.keras", load_bundle(FIXTURES))


@pytest.mark.parametrize("name, content, expected", [
    ("plain.tflite", None, None),           # a model without an embedded bundle
    ("model.keras", b"PK", None),           # not a format that embeds one
])
def test_read_embedded_bundle_when_there_is_none(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is None:
        shutil.copy(FIXTURES / "model_fp32.tflite", path)
        data = path.read_bytes().replace(METADATA_KEY.encode(), b"x" * len(METADATA_KEY))
        path.write_bytes(data)
    else:
        path.write_bytes(content)
    assert read_embedded_bundle(path) is expected


@pytest.mark.parametrize("name, content", [
    ("cut.tflite", (FIXTURES / "model_int8.tflite").read_bytes()[:1500]),
    ("text.tflite", b"hello, not a flatbuffer at all"),
    ("junk.onnx", b"\xff\xfe garbage that is not protobuf"),
])
def test_read_embedded_bundle_of_a_broken_file_says_so(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BundleError, match="corrupt or truncated"):
        read_embedded_bundle(path)


def test_embedded_json_is_the_bundle(tmp_path):
    embedded = read_embedded_bundle(FIXTURES / "model_int8.tflite")
    on_disk = json.loads((FIXTURES / "bundle.json").read_text())
    assert {k: v for k, v in embedded.items() if k != "artifacts"} == {k: v for k, v in on_disk.items() if k != "artifacts"}
