"""`fracture-edge predict` / `info` end to end on the fixture models: exit codes, output schemas, path expansion."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fracture_edge.edge_runtime.cli import main
from fracture_edge.edge_runtime.predict_cli import ROW_FIELDS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"


@pytest.fixture
def images(tmp_path) -> Path:
    """bright.png, dark.jpg at the top, nested/mid.bmp one level down."""
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    Image.new("L", (48, 40), 235).save(folder / "bright.png")
    Image.new("RGB", (30, 60), (12, 12, 12)).save(folder / "dark.jpg")
    Image.new("L", (33, 33), 128).save(folder / "nested" / "mid.bmp")
    (folder / "readme.txt").write_text("not an image, and not picked from a folder")
    return folder


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def json_rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# (id, path arguments relative to the images folder, --recursive, expected file names)
EXPANSIONS = [
    ("folder", ["."], False, {"bright.png", "dark.jpg"}),
    ("folder-recursive", ["."], True, {"bright.png", "dark.jpg", "mid.bmp"}),
    ("glob", ["*.png"], False, {"bright.png"}),
    ("glob-recursive", ["**/*.bmp"], True, {"mid.bmp"}),
    ("files-deduplicated", ["bright.png", "bright.png", "dark.jpg"], False, {"bright.png", "dark.jpg"}),
]


@pytest.mark.parametrize("name, args, recursive, expected", EXPANSIONS, ids=[e[0] for e in EXPANSIONS])
def test_files_folders_and_globs(capsys, images, name, args, recursive, expected):
    flags = ["--recursive"] if recursive else []
    code, out, _ = run_cli(capsys, "predict", FIXTURES, *[images / a for a in args], "--json", *flags)
    rows = json_rows(out)
    assert code == 0 and sorted(Path(r["path"]).name for r in rows) == sorted(expected)


def test_all_classified_exits_0_with_one_line_per_image(capsys, images):
    code, out, err = run_cli(capsys, "predict", FIXTURES, images / "bright.png", images / "dark.jpg")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and "error" not in err
    assert "bright.png: fractured" in lines[0] and "dark.jpg: not_fractured" in lines[1]
    assert "balanced=0.5000" in lines[0]


@pytest.mark.parametrize("fmt", ["tflite-int8", "tflite-fp32", "onnx-fp32"])
def test_json_rows_follow_the_schema_and_failures_exit_2(capsys, images, fmt):
    bad = images / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = run_cli(capsys, "predict", FIXTURES, images / "bright.png", bad, images / "missing.jpg",
                             "--json", "--format", fmt, "--threshold", "screening")
    rows = {Path(r["path"]).name: r for r in json_rows(out)}
    assert code == 2 and all(tuple(r) == ROW_FIELDS for r in rows.values())
    good = rows["bright.png"]
    assert good["error"] is None and good["label"] == "fractured" and good["threshold_name"] == "screening"
    assert good["threshold"] == 0.25 and 0.5 < good["probability"] <= 1 and good["latency_ms"] >= 0
    assert rows["broken.png"]["label"] is None and rows["broken.png"]["error"]
    assert "file not found" in rows["missing.jpg"]["error"]
    assert f"{bad}: " in err and "1 classified, 2 failed" in err


def test_csv_has_a_header_and_error_rows(capsys, images):
    (images / "empty.png").write_bytes(b"")
    code, out, _ = run_cli(capsys, "predict", FIXTURES, images, "--csv", "--threshold", "0.9")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 2 and tuple(rows[0]) == ROW_FIELDS and len(rows) == 3
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["empty.png"]["error"].startswith("empty file") and by_name["empty.png"]["label"] == ""
    assert by_name["bright.png"]["threshold_name"] == "custom" and float(by_name["bright.png"]["threshold"]) == 0.9


# (id, argument list after "predict", text expected on stderr)
USAGE_ERRORS = [
    ("json-and-csv", [FIXTURES, "IMAGES/bright.png", "--json", "--csv"], "cannot be used together"),
    ("bad-threshold", [FIXTURES, "IMAGES/bright.png", "--threshold", "strict"], "threshold must be"),
    ("bad-threads", [FIXTURES, "IMAGES/bright.png", "--threads", "0"], "--threads"),
    ("missing-model", ["/nonexistent/run", "IMAGES/bright.png"], "model not found"),
    ("no-images", [FIXTURES, "IMAGES/nested/*.png"], "no images to classify"),
    ("not-a-model", ["IMAGES/bright.png", "IMAGES/dark.jpg"], "not a model file"),
]


@pytest.mark.parametrize("name, args, message", USAGE_ERRORS, ids=[u[0] for u in USAGE_ERRORS])
def test_usage_and_model_errors_exit_1(capsys, images, name, args, message):
    argv = [str(a).replace("IMAGES", str(images)) for a in args]
    code, out, err = run_cli(capsys, "predict", *argv)
    assert code == 1 and out == "" and message in err and err.count("\n") == 1


def test_tampered_model_exits_1_before_any_prediction(capsys, images, tmp_path):
    run = Path(shutil.copytree(FIXTURES, tmp_path / "run"))
    with open(run / "model_int8.tflite", "ab") as fh:
        fh.write(b"\0")
    code, out, err = run_cli(capsys, "predict", run, images / "bright.png")
    assert code == 1 and out == "" and "does not match its bundle.json" in err


def test_info_prints_the_bundle_and_checks_hashes(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "info", FIXTURES)
    assert code == 0
    for text in ("labels: not_fractured, fractured", "balanced=0.5000", "32x32x3", "AUC 1.000", "model_int8.tflite"):
        assert text in out
    assert out.count("  ok") == 4      # fp32, int8-dynamic, int8, onnx-fp32
    run = Path(shutil.copytree(FIXTURES, tmp_path / "run"))
    data = bytearray((run / "model_fp32.onnx").read_bytes())
    data[-1] ^= 0xFF
    (run / "model_fp32.onnx").write_bytes(bytes(data))
    code, out, err = run_cli(capsys, "info", run, "--json")
    checks = {c["format"]: c["status"] for c in json.loads(out)["artifact_checks"]}
    assert code == 1 and checks["tflite-int8"] == "ok" and checks["onnx-fp32"].startswith("sha256")
    assert "model_fp32.onnx" in err


def test_info_on_a_lone_artifact_reads_the_embedded_bundle(capsys, tmp_path):
    lone = tmp_path / "model_int8.tflite"
    shutil.copy(FIXTURES / "model_int8.tflite", lone)
    code, out, err = run_cli(capsys, "info", lone)  # described, but nothing vouches for its sha256
    assert code == 1 and "embedded" in out and "positive: fractured" in out and "unverified" in err
    code, out, _ = run_cli(capsys, "info", lone, "--allow-unverified")
    assert code == 0 and "embedded" in out and "unrecorded" in out


def test_info_on_a_tampered_lone_artifact_checks_the_bundle_beside_it(capsys, tmp_path):
    run = Path(shutil.copytree(FIXTURES, tmp_path / "run"))
    with open(run / "model_fp32.tflite", "ab") as fh:
        fh.write(b"\0" * 16)  # still a readable flatbuffer, no longer the exported file
    code, out, err = run_cli(capsys, "info", run / "model_fp32.tflite")
    assert code == 1 and "does not match its bundle.json" in err and "truncated or replaced" in err
