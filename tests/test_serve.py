"""`fracture-edge serve`: the JSON API and its safety rules, in process (starlette's TestClient).

The tiny heatmap fixture models (tests/fixtures/heatmap_models, scripts/make_fixture_models.py --heatmap)
stand in for a real run: P(fractured) rises with brightness and the heatmap follows bright regions.
The HTTP-level guards (CSP, Host check, framing, upload bounds) are in tests/test_serve_guard.py.
"""
from __future__ import annotations

import base64
import builtins
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

FIXTURES = Path(__file__).parent / "fixtures" / "heatmap_models"
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def png(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


def make_client(**options):
    from starlette.testclient import TestClient

    from fracture_edge.edge_runtime.classifier import open_classifier
    from fracture_edge.edge_runtime.serve.app import ServeOptions, create_app

    opts = ServeOptions(model=str(FIXTURES), **options)
    clf = open_classifier(FIXTURES, format=opts.format or "tflite-fp32", integrity="require")
    return TestClient(create_app(clf, opts), base_url="http://127.0.0.1:8000")   # a loopback Host: served


@pytest.fixture(scope="module")
def client():
    return make_client()


@pytest.fixture(scope="module")
def xray_png():
    gray = np.full((120, 100), 30, np.uint8)
    gray[10:50, 60:95] = 230                 # a bright patch, upper right: the heatmap's peak
    return png(gray)


def test_health_info_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/info").json()
    assert info["format"] == "tflite-fp32" and info["extra_outputs"] == ["heatmap"]
    assert set(info["thresholds"]) == {"balanced", "screening"} and "not a medical device" in info["disclaimer"]
    page = client.get("/")
    assert page.status_code == 200 and "not a medical device" in page.text and 'src="/page.js"' in page.text
    script = client.get("/page.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "/v1/predict" in script.text
    assert client.get("/page.css").headers["content-type"].startswith("text/css")


def test_predict_matches_the_runtime_and_returns_the_heatmap(client, xray_png, tmp_path):
    from fracture_edge.edge_runtime.classifier import Classifier

    answer = client.post("/v1/predict?name=x.png", content=xray_png).json()
    path = tmp_path / "x.png"
    path.write_bytes(xray_png)
    expected = Classifier(FIXTURES, format="tflite-fp32").predict_file(path, heatmap=True)
    assert answer["probability"] == expected.probability           # the same float, not just close
    assert answer["decisions"]["balanced"]["threshold"] == 0.5 and answer["decisions"]["screening"]["threshold"] == 0.25
    for d in answer["decisions"].values():
        assert d["label"] == ("fractured" if answer["probability"] >= d["threshold"] else "not_fractured")
    heatmap = answer["heatmap"]
    assert heatmap["shape"] == [30, 30] and np.allclose(heatmap["grid"], expected.heatmap, atol=1e-4)
    row, col = heatmap["peak_cell"]
    assert row < 15 and col >= 15                                   # the bright patch, upper right
    header, data = heatmap["overlay_png"].split(",", 1)
    assert header == "data:image/png;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (100, 120)
    assert set(answer["latency_ms"]) == {"decode", "model", "total"}
    no_overlay = client.post("/v1/predict?overlay=0", content=xray_png).json()
    assert "overlay_png" not in no_overlay["heatmap"] and no_overlay["probability"] == answer["probability"]


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def dicom_like() -> bytes:
    return b"\0" * 128 + b"DICM" + b"\0" * 64


@pytest.mark.parametrize("name, body, status, words", [
    ("empty", b"", 400, "empty"),
    ("text", b"hello, this is not an image at all", 415, "not an image"),
    ("truncated png", None, 422, "truncat"),
])
def test_bad_uploads_are_4xx_json_and_the_server_goes_on(client, xray_png, name, body, status, words):
    body = truncated(xray_png) if body is None else body
    response = client.post("/v1/predict", content=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"].lower() and list(response.json()) == ["error"]
    assert client.post("/v1/predict", content=xray_png).status_code == 200


def test_dicom_without_the_extra_is_415_naming_it(client, xray_png, monkeypatch):
    import fracture_edge.edge_runtime.dicom as dicom

    def missing():
        raise ImportError("no pydicom")

    monkeypatch.setattr(dicom, "_pydicom", missing)
    response = client.post("/v1/predict", content=dicom_like())
    assert response.status_code == 415 and "fracture-edge[dicom]" in response.json()["error"]
    assert client.post("/v1/predict", content=xray_png).status_code == 200


def test_upload_limit(xray_png):
    small = make_client(max_upload_mb=0.0001)          # 100 bytes
    response = small.post("/v1/predict", content=xray_png)
    assert response.status_code == 413 and "too large" in response.json()["error"]
    chunked = small.post("/v1/predict", content=iter([xray_png[:60], xray_png[60:]]))   # no Content-Length
    assert chunked.status_code == 413
    assert small.get("/healthz").status_code == 200


def test_saturated_server_answers_503(client, xray_png):
    service = client.app.state.service
    service.pending = service.opts.max_pending
    try:
        response = client.post("/v1/predict", content=xray_png)
    finally:
        service.pending = 0
    assert response.status_code == 503 and "busy" in response.json()["error"] and response.headers["retry-after"]
    assert client.post("/v1/predict", content=xray_png).status_code == 200


def test_decoding_runs_inside_the_model_bound_one_at_a_time(client, xray_png, monkeypatch):
    """4 concurrent uploads: every decode runs holding the model lock, never two at once, while the others wait."""
    import fracture_edge.edge_runtime.decoding as decoding

    service, real_decode = client.app.state.service, decoding.decode_gray_bytes
    seen = {"now": 0, "most": 0, "unlocked": 0, "pending": 0}
    guard = threading.Lock()

    def watched_decode(data, name="upload"):
        with guard:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
            seen["unlocked"] += not service.lock.locked()
        time.sleep(0.05)                                    # long enough for the others to arrive
        with guard:
            seen["pending"] = max(seen["pending"], service.pending)
            seen["now"] -= 1
        return real_decode(data, name)

    monkeypatch.setattr(decoding, "decode_gray_bytes", watched_decode)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: client.post("/v1/predict?overlay=0", content=xray_png).status_code,
                                 range(4)))
    assert statuses == [200] * 4
    assert seen["pending"] >= 2, seen       # the requests really were concurrent
    assert seen["most"] == 1 and seen["unlocked"] == 0, seen


def test_token_is_required_off_loopback_and_checked_on_every_api_call(xray_png):
    from fracture_edge.edge_runtime.serve.app import ServeOptions

    with pytest.raises(ValueError, match="token"):
        ServeOptions(model=str(FIXTURES), host="0.0.0.0")
    guarded = make_client(host="0.0.0.0", token="s3cret-token")
    for call in (lambda h: guarded.post("/v1/predict", content=xray_png, headers=h),
                 lambda h: guarded.get("/v1/info", headers=h)):
        assert call({}).status_code == 401
        assert call({"Authorization": "Bearer wrong-token"}).status_code == 401
        assert call({"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert guarded.get("/healthz").status_code == 200


def test_uploads_are_never_written_to_disk(client, xray_png, monkeypatch):
    import tempfile

    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"the server tried to write {file}")
        return real_open(file, mode, *args, **kwargs)

    def no_temp(*args, **kwargs):
        raise AssertionError("the server tried to make a temporary file")

    monkeypatch.setattr(builtins, "open", read_only_open)
    for name in ("mkstemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, no_temp)
    assert client.post("/v1/predict", content=xray_png).status_code == 200


def test_unknown_route_and_method_are_json(client):
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
    assert client.get("/v1/predict").status_code == 405 and "error" in client.get("/v1/predict").json()


def test_cli_refuses_public_host_without_token(capsys, monkeypatch):
    from fracture_edge.edge_runtime.cli import main

    monkeypatch.delenv("FRACTURE_EDGE_TOKEN", raising=False)
    assert main(["serve", str(FIXTURES), "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fracture-edge: error:") and "token" in err[0]


@pytest.mark.parametrize("flag, value, words", [
    ("--allowed-host", "http://pi.local", "--allowed-host"), ("--body-timeout", "0", "--body-timeout"),
    ("--max-receiving", "0", "--max-receiving"),
])
def test_cli_bad_new_limits_are_one_error_line(capsys, flag, value, words):
    from fracture_edge.edge_runtime.cli import main

    assert main(["serve", str(FIXTURES), flag, value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fracture-edge: error:") and words in err[0]


def test_serve_help_shows_the_new_flags_with_defaults():
    import argparse

    from fracture_edge.edge_runtime.serve import cli as serve_cli

    subparsers = argparse.ArgumentParser(prog="fracture-edge").add_subparsers()
    serve_cli.register(subparsers)
    text = " ".join(subparsers.choices["serve"].format_help().split())
    assert "--body-timeout S" in text and "(default 30)" in text
    assert "--max-receiving N" in text and "(default 16)" in text
    assert "--allowed-host NAME" in text and "repeatable" in text and "(default 4)" in text
