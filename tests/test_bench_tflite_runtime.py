"""`bench --worker-python tflite-runtime=PY`: the legacy runtime's rows, run in its own numpy<2 venv, in the same table.

The venv is built by `make test` (Makefile target tflite-runtime-venv); without it the test skips with the reason.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-tflite-runtime"
FIXTURES = Path(__file__).parent / "fixtures" / "models"


def legacy_python() -> Path:
    python = VENV / "bin" / "python"
    if (VENV / "UNAVAILABLE").is_file():
        pytest.skip((VENV / "UNAVAILABLE").read_text().strip())
    if not python.is_file():
        pytest.skip(f"{VENV.name}/ not built: `make tflite-runtime-venv` (make test does it) creates it")
    return python


def test_tflite_runtime_rows_run_under_their_own_python_beside_litert(tmp_path):
    from fracture_edge.edge_runtime.cli import main

    python = legacy_python()
    run, data, out = tmp_path / "run", tmp_path / "data", tmp_path / "out"
    (run / "rejected").mkdir(parents=True)
    for name in ("bundle.json", "model_fp32.tflite"):
        shutil.copy(FIXTURES / name, run / name)
    shutil.copy(FIXTURES / "model_int8.tflite", run / "rejected" / "model_int8.tflite")   # as export quarantines
    rng = np.random.default_rng(2)
    for label, level in (("fractured", 190), ("not_fractured", 60)):
        (data / "test" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.clip(rng.normal(level, 25, (40, 36)), 0, 255).astype(np.uint8)).save(
                data / "test" / label / f"img{i}.png")
    code = main(["bench", str(run), "--data", str(data), "--quick", "--threads", "1", "--no-plots", "--out", str(out),
                 "--formats", "tflite-fp32,tflite-int8", "--include-rejected", "--allow-unverified",
                 "--worker-python", f"tflite-runtime={python}"])
    report = json.loads((out / "bench.json").read_text())
    assert code == 0
    rows = {r["label"]: r for r in report["rows"]}
    accuracy = {r["label"]: r for r in report["accuracy"]}
    for fmt, legacy_label in (("tflite-fp32", "tflite-fp32 (tflite-runtime)"),
                              ("tflite-int8 (rejected)", "tflite-int8 (rejected, tflite-runtime)")):
        legacy = rows[legacy_label]
        assert legacy["status"] == "ok" and legacy["runtime"].startswith("tflite-runtime 2.14")
        assert legacy["details"]["python"]["numpy"].startswith("1.")              # its own numpy<2 venv
        assert rows[fmt]["runtime"].startswith("ai-edge-litert")                  # beside the LiteRT row
        assert legacy["peak_rss_mb"] > 0 and legacy["model_rss_mb"] is not None
        same = np.abs(np.subtract(accuracy[legacy_label]["probs"], accuracy[fmt]["probs"])).max()
        assert same < 1e-6                                                       # same model, same answers
    assert "| tflite-int8 (rejected, tflite-runtime) | tflite-runtime 2.14" in (out / "bench.md").read_text()
