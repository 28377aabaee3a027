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
    run.mkdir()
    for name in ("bundle.json", "model_fp32.tflite", "model_int8.tflite"):
        shutil.copy(FIXTURES / name, run / name)
    rng = np.random.default_rng(2)
    for label, level in (("fractured", 190), ("not_fractured", 60)):
        (data / "test" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.clip(rng.normal(level, 25, (40, 36)), 0, 255).astype(np.uint8)).save(
                data / "test" / label / f"img{i}.png")
    code = main(["bench", str(run), "--data", str(data), "--quick", "--threads", "1", "--no-plots", "--out", str(out),
                 "--formats", "tflite-fp32,tflite-int8", "--worker-python", f"tflite-runtime={python}"])
    report = json.loads((out / "bench.json").read_text())
    assert code == 0
    rows = {r["label"]: r for r in report["rows"]}
    accuracy = {r["label"]: r for r in report["accuracy"]}
    for fmt in ("tflite-fp32", "tflite-int8"):
        legacy = rows[f"{fmt} (tflite-runtime)"]
        assert legacy["status"] == "ok" and legacy["runtime"].startswith("tflite-runtime 2.14")
        assert legacy["details"]["python"]["numpy"].startswith("1.")              # its own numpy<2 venv
        assert rows[fmt]["runtime"].startswith("ai-edge-litert")                  # beside the LiteRT row
        assert legacy["peak_rss_mb"] > 0 and legacy["model_rss_mb"] is not None
        same = np.abs(np.subtract(accuracy[f"{fmt} (tflite-runtime)"]["probs"], accuracy[fmt]["probs"])).max()
        assert same < 1e-6                                                       # same model, same answers
    assert f"| tflite-int8 (tflite-runtime) | tflite-runtime 2.14" in (out / "bench.md").read_text()
