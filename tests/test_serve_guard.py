"""`fracture-edge serve`'s HTTP-level guards, in process (starlette's TestClient): the security headers on
every response, the page's no-inline-script design, the Host check (DNS rebinding), the framing rule and
the bound on uploads being received. Slow senders and the body deadline need real sockets: they are in
tests/test_serve_live.py.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

FIXTURES = Path(__file__).parent / "fixtures" / "heatmap_models"
SERVE = Path(__file__).resolve().parents[1] / "edge_runtime" / "serve"
TOKEN = "s3cret-token"
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def make_client(host_header: str = "127.0.0.1:8000", **options):
    from starlette.testclient import TestClient

    from fracture_edge.edge_runtime.classifier import open_classifier
    from fracture_edge.edge_runtime.serve.app import ServeOptions, create_app

    opts = ServeOptions(model=str(FIXTURES), **options)
    clf = open_classifier(FIXTURES, format="tflite-fp32", integrity="require")
    return TestClient(create_app(clf, opts), base_url=f"http://{host_header}")


@pytest.fixture(scope="module")
def client():
    return make_client()


@pytest.fixture(scope="module")
def xray_png():
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 48), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_response_carries_the_security_headers(client, xray_png):
    from fracture_edge.edge_runtime.serve.guard import SECURITY_HEADERS

    guarded = make_client(host="0.0.0.0", token=TOKEN)
    responses = {
        "page": client.get("/"), "script": client.get("/page.js"), "style": client.get("/page.css"),
        "health": client.get("/healthz"), "info": client.get("/v1/info"),
        "predict": client.post("/v1/predict?overlay=0", content=xray_png),
        "bad upload": client.post("/v1/predict", content=b"not an image"),
        "empty": client.post("/v1/predict", content=b""),
        "404": client.get("/nope"), "405": client.get("/v1/predict"),
        "foreign host": client.get("/", headers={"Host": "attacker.example"}),
        "framing": client.post("/v1/predict", content=xray_png, headers={"Transfer-Encoding": "chunked"}),
        "401": guarded.get("/v1/info"),
    }
    assert responses["predict"].status_code == 200 and responses["page"].status_code == 200
    for what, response in responses.items():
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (what, name, response.headers)
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy


def test_page_has_no_inline_script_style_or_html_sinks(client):
    page = client.get("/").text
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/page.js" defer>']
    assert "</script>" in page and not re.search(r"<script[^>]*>\s*\S+\s*</script>", page)   # nothing inline
    assert not re.search(r"\son[a-z]+\s*=", page, re.I) and " style=" not in page and "<style" not in page
    script = (SERVE / "page.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert client.get("/page.js").text == script


FOREIGN_HOSTS = ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example", "localhost.evil.example",
                 "evil.localhost", "192.168.1.5:8000", "0.0.0.0:8000", "2130706433", "[2001:db8::1]:8000",
                 "localhost:8000@attacker.example", "[::1", ""]
LOOPBACK_HOSTS = ["localhost", "localhost:8000", "LOCALHOST:1", "localhost.", "127.0.0.1", "127.0.0.1:8000",
                  "127.8.9.10:80", "[::1]", "[::1]:8000", "[0:0:0:0:0:0:0:1]:9"]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_foreign_host_is_refused_without_token(client, xray_png, host):
    for response in (client.get("/v1/info", headers={"Host": host}),
                     client.post("/v1/predict", content=xray_png, headers={"Host": host}),
                     client.get("/", headers={"Host": host})):
        assert response.status_code == 403, (host, response.text)
        error = response.json()["error"]
        assert list(response.json()) == ["error"] and "Host" in error and "--allowed-host" in error
        assert "rebinding" in error


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_hosts_are_served(client, xray_png, host):
    assert client.get("/v1/info", headers={"Host": host}).status_code == 200, host
    assert client.post("/v1/predict?overlay=0", content=xray_png, headers={"Host": host}).status_code == 200


def test_allowed_host_adds_names_without_token():
    named = make_client(allowed_hosts=("pi.local", "[fd00::7]"))
    for host in ("pi.local", "PI.LOCAL:8000", "pi.local.", "[fd00::7]:80", "localhost:8000"):
        assert named.get("/v1/info", headers={"Host": host}).status_code == 200, host
    for host in ("other.local", "pi.local.attacker.example", "attacker.example"):
        assert named.get("/v1/info", headers={"Host": host}).status_code == 403, host


def test_with_token_any_host_unless_allowed_host_narrows_it():
    auth = {"Authorization": f"Bearer {TOKEN}"}
    open_host = make_client(host="0.0.0.0", token=TOKEN)
    assert open_host.get("/v1/info", headers={"Host": "192.168.1.5:8000", **auth}).status_code == 200
    assert open_host.get("/v1/info", headers={"Host": "attacker.example"}).status_code == 401   # still needs the token
    narrowed = make_client(host="0.0.0.0", token=TOKEN, allowed_hosts=("pi.local",))
    assert narrowed.get("/v1/info", headers={"Host": "pi.local:8000", **auth}).status_code == 200
    assert narrowed.get("/v1/info", headers={"Host": "127.0.0.1:8000", **auth}).status_code == 200
    refused = narrowed.get("/v1/info", headers={"Host": "192.168.1.5:8000", **auth})
    assert refused.status_code == 403 and "pi.local" in refused.json()["error"]


@pytest.mark.parametrize("name", ["http://pi.local", "pi.local:8000", "pi.local/x", "pi local", "", "a..b"])
def test_bad_allowed_host_is_a_clear_error(name):
    from fracture_edge.edge_runtime.serve.app import ServeOptions

    with pytest.raises(ValueError, match="--allowed-host"):
        ServeOptions(model=str(FIXTURES), allowed_hosts=(name,))


def test_content_length_with_transfer_encoding_is_400_and_closes(client, xray_png):
    response = client.post("/v1/predict", content=xray_png, headers={"Transfer-Encoding": "chunked"})
    assert response.request.headers["content-length"] and response.request.headers["transfer-encoding"]
    assert response.status_code == 400 and "Transfer-Encoding" in response.json()["error"]
    assert response.headers["connection"] == "close"
    assert client.post("/v1/predict?overlay=0", content=xray_png).status_code == 200


def test_too_many_uploads_being_received_answers_503(client, xray_png):
    uploads = client.app.state.uploads
    uploads.receiving = uploads.max_receiving
    try:
        response = client.post("/v1/predict", content=xray_png)
    finally:
        uploads.receiving = 0
    assert response.status_code == 503 and "being received" in response.json()["error"]
    assert response.headers["retry-after"]
    assert client.post("/v1/predict?overlay=0", content=xray_png).status_code == 200


def test_new_limits_are_validated_and_reported():
    from fracture_edge.edge_runtime.serve.app import ServeOptions

    for bad in ({"body_timeout_s": 0}, {"body_timeout_s": 7200}, {"max_receiving": 0}):
        with pytest.raises(ValueError):
            ServeOptions(model=str(FIXTURES), **bad)
    info = make_client(body_timeout_s=7.5, max_receiving=9).get("/v1/info").json()
    assert info["body_timeout_s"] == 7.5 and info["max_receiving"] == 9 and info["max_pending"] == 4
