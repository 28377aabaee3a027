"""`fracture-edge serve` as a person and as many clients use it: a real server process on 127.0.0.1.

- The page in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven with selenium;
  `make test` installs them when it runs as root): upload a radiograph, wait for the result and the
  heatmap, save a screenshot in the test's tmp dir. Skipped with the reason when no browser is here.
- A load test: 4 clients x 200 requests on the tiny fixture model, zero errors, every answer the
  probability `predict` gives, p50/p99 and the server's RSS before/after (it must not grow).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures" / "heatmap_models"
SHARED_XRAY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fracatlas" / "test" / "fractured"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
RSS_SLACK_MB = 8.0     # allocator noise; a leak of one overlay or image per request would be far more


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("uvicorn")
    from fracture_edge.benchmarks.serve_load import free_port, start_server, stop_server

    port = free_port()
    proc = start_server(str(FIXTURES), port, ("--format", "tflite-fp32"))
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
