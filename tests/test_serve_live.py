"""`fracture-edge serve` as a person and as many clients use it: a real server process on 127.0.0.1.

- The page in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven with selenium;
  `make test` installs them when it runs as root): upload a radiograph, wait for the result and the
  heatmap, save a screenshot in the test's tmp dir. Skipped with the reason when no browser is here.
  A file named with an HTML payload is shown as text and runs no script.
- A load test: 4 clients x 200 requests on the tiny fixture model, zero errors, every answer the
  probability `predict` gives, p50/p99 and the server's RSS before/after (it must not grow).
- Hostile clients on raw sockets (127.0.0.1 only): slow senders hold no model slot and get 408 at the
  body deadline (the server runs with --body-timeout BODY_TIMEOUT_S), Content-Length + chunked gets 400,
  a foreign Host header gets 403.
"""
from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures" / "heatmap_models"
SHARED_XRAY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fracatlas" / "test" / "fractured"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
RSS_SLACK_MB = 8.0     # allocator noise; a leak of one overlay or image per request would be far more
BODY_TIMEOUT_S = 3.0   # the live server's --body-timeout: short, so the deadline test stays fast
SLOW_SENDERS = 6       # more than --max-pending (4), fewer than --max-receiving (16)


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("uvicorn")
    from fracture_edge.benchmarks.serve_load import free_port, start_server, stop_server

    port = free_port()
    proc = start_server(str(FIXTURES), port, ("--format", "tflite-fp32", "--body-timeout", f"{BODY_TIMEOUT_S:g}"))
    yield port, proc
    stop_server(proc)


def radiograph(tmp_path: Path) -> Path:
    """A real FracAtlas radiograph when ../shared is here, else a synthetic one (labelled as such)."""
    real = sorted(SHARED_XRAY.glob("*.jpg"))[:1] if SHARED_XRAY.is_dir() else []
    if real:
        return real[0]
    from fracture_edge.train.synthetic import draw_radiograph

    path = tmp_path / "synthetic_radiograph.png"
    draw_radiograph(np.random.default_rng(0), 256, True).save(path)
    return path


def predict_probability(image: Path) -> float:
    """What `fracture-edge predict --json` says for the image (rounded there to 6 decimals)."""
    out = subprocess.run([sys.executable, "-m", "fracture_edge.edge_runtime", "predict", str(FIXTURES), str(image),
                          "--format", "tflite-fp32", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["probability"]


def test_load_4_clients_x_200_requests(server, tmp_path):
    from fracture_edge.benchmarks.serve_load import run_load

    port, proc = server
    image = radiograph(tmp_path)
    result = run_load(port, image.read_bytes(), clients=4, requests=200, pid=proc.pid, warmup=50, time_limit_s=120)
    print(f"\nserve load (tiny fixture model): {json.dumps(result.to_dict())}")
    (tmp_path / "load.json").write_text(json.dumps(result.to_dict(), indent=2))
    assert result.errors == 0 and result.unsent == 0 and result.requests == 800, result.error_examples
    assert len(result.probabilities) == 1 and round(result.probabilities[0], 6) == predict_probability(image)
    assert result.rss_after_mb - result.rss_before_mb <= RSS_SLACK_MB, result


def browser_or_skip():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no chromium/chromedriver here (Debian: apt-get install chromium chromium-driver; "
                    "`make test` installs them when run as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_page_in_headless_chromium(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port, _ = server
    image = radiograph(tmp_path)
    driver = browser_or_skip()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 20).until(lambda d: "tflite-fp32" in d.find_element(By.ID, "model").text)
        upload = driver.find_element(By.ID, "file")
        driver.execute_script("arguments[0].style.display = 'block';", upload)
        upload.send_keys(str(image.resolve()))
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "done")))
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "const i = document.getElementById('overlay'); return i.complete && i.naturalWidth > 0;"))
        shot = tmp_path / "serve_page.png"
        driver.save_screenshot(str(shot))
        text = driver.find_element(By.TAG_NAME, "body").text
        decisions = {e.get_attribute("data-decision"): e.text
                     for e in driver.find_elements(By.CSS_SELECTOR, "td[data-decision]")}
    finally:
        driver.quit()
    assert "not a medical device" in text and "P(fractured)" in text
    assert set(decisions) == {"balanced", "screening"}
    assert all(label in ("fractured", "not_fractured") for label in decisions.values())
    with Image.open(shot) as picture:
        assert picture.size[0] >= 800
    print(f"\nscreenshot: {shot}")


def test_page_shows_a_hostile_file_name_as_text_and_runs_no_script(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port, _ = server
    source = radiograph(tmp_path)
    name = f"<img src=x onerror=window.__pwned=1><i>x&amp;y{source.suffix}"     # no '/' in a file name
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / name).write_bytes(source.read_bytes())
    driver = browser_or_skip()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 20).until(lambda d: "tflite-fp32" in d.find_element(By.ID, "model").text)
        upload = driver.find_element(By.ID, "file")
        driver.execute_script("arguments[0].style.display = 'block';", upload)
        upload.send_keys(str((hostile / name).resolve()))
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "done")))
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "const i = document.getElementById('overlay'); return i.complete && i.naturalWidth > 0;"))
        time.sleep(1.0)                            # an injected <img src=x> would have failed and fired by now
        pwned = driver.execute_script("return typeof window.__pwned;")
        injected = driver.execute_script(
            "return document.querySelectorAll('#result img:not(#overlay), #result i, #status img').length;")
        latency = driver.find_element(By.ID, "latency").text
        shown = [e.text for e in driver.find_elements(By.ID, "filename")]
        # and the CSP is a second wall: markup injected some other way runs no inline handler either
        driver.execute_script("document.getElementById('heatnote').innerHTML = "
                              "'<img src=x onerror=window.__csp_bypassed=1>';")
        time.sleep(1.0)
        csp_bypassed = driver.execute_script("return typeof window.__csp_bypassed;")
    finally:
        driver.quit()
    assert pwned == "undefined", f"the file name ran script in the page (window.__pwned is {pwned})"
    assert injected == 0 and shown == [name] and name in latency, (injected, shown, latency)
    assert csp_bypassed == "undefined", "the page's Content-Security-Policy let an inline handler run"


def slow_sender(port: int, declared: int = 100_000) -> socket.socket:
    """A client that sends its headers and one byte of a body it will never finish."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {declared}\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + b"\x89")
    return sock


def trickle_until_answered(socks: list, seconds: float) -> tuple[list, int]:
    """Send 1 byte per 0.5 s on every unanswered socket; return what each received and how many the server closed."""
    replies, closed = {s: b"" for s in socks}, set()
    deadline = time.monotonic() + seconds
    while len(closed) < len(socks) and time.monotonic() < deadline:
        for sock in socks:
            if sock not in closed and not replies[sock]:
                try:
                    sock.send(b"\0")
                except OSError:
                    pass
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.5)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:                       # reset after the answer: closed all the same
                data = b""
            if data:
                replies[sock] += data
            else:
                closed.add(sock)
    return [replies[s] for s in socks], len(closed)


def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send raw bytes, read until the server closes (or the timeout): (reply, closed by the server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (socket.timeout, ConnectionResetError):
            return reply, False
        return reply, True


def test_slow_senders_hold_no_model_slot_and_get_408_at_the_deadline(server, tmp_path):
    from fracture_edge.benchmarks.serve_load import post

    port, _ = server
    image = radiograph(tmp_path).read_bytes()
    url = f"http://127.0.0.1:{port}/v1/predict?overlay=0"
    opened = time.monotonic()
    slow = [slow_sender(port) for _ in range(SLOW_SENDERS)]
    try:
        time.sleep(0.3)                                   # the server has them all by now
        status, answer = post(url, image, timeout=10)
        normal_s = time.monotonic() - opened
        replies, closed = trickle_until_answered(slow, BODY_TIMEOUT_S + 10)
        answered_s = time.monotonic() - opened
    finally:
        for sock in slow:
            sock.close()
    assert status == 200 and "probability" in answer, answer     # not 503: the slow ones hold no model slot
    assert normal_s < BODY_TIMEOUT_S, normal_s
    assert all(reply.startswith(b"HTTP/1.1 408") and b"too slow" in reply for reply in replies), replies
    assert closed == SLOW_SENDERS                                  # and the server closed their connections
    assert BODY_TIMEOUT_S - 0.5 <= answered_s <= BODY_TIMEOUT_S + 5, answered_s
    assert post(url, image, timeout=10)[0] == 200


def test_content_length_with_chunked_is_400_and_closed(server):
    port, _ = server
    reply, closed = raw_exchange(port, f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                       "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       "4\r\nabcd\r\n".encode())        # no last chunk: a held-open body
    assert reply.startswith(b"HTTP/1.1 400") and b"Transfer-Encoding" in reply and closed, reply


def test_foreign_host_is_403_on_the_real_server(server):
    port, _ = server
    reply, _ = raw_exchange(port, b"GET /v1/info HTTP/1.1\r\nHost: attacker.example\r\n"
                                  b"Connection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403") and b"--allowed-host" in reply, reply
    assert b"content-security-policy: default-src 'none'" in reply.lower()
    reply, _ = raw_exchange(port, f"GET /v1/info HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
                            .encode())
    assert reply.startswith(b"HTTP/1.1 200"), reply
