"""A full disk (issue 25, item 10): every write error names the path in one `fracture-edge: error: <path>:
<reason>` line (exit 1), and predict --heatmaps keeps every prediction when an overlay cannot be written
(stderr line + the row's error field, exit 2). The disk is simulated: files opened for writing under a folder
fail with ENOSPC on their first write, as on a full file system (creating them still works)."""
from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime import atomic
from fracture_edge.edge_runtime.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
HEATMAP_MODELS = Path(__file__).resolve().parent / "fixtures" / "heatmap_models"
ADAPT_MODELS = Path(__file__).resolve().parent / "fixtures" / "adapt_models"


class FullFile(io.RawIOBase):
    """A file on a full disk: opening worked, every write fails."""

    def __init__(self, real):
        self.real = real

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.real.close()
        super().close()


@contextlib.contextmanager
def full_disk(folder: Path):
    """Files opened for writing anywhere under `folder` (created or not yet) fail with ENOSPC when written."""
    root = os.path.abspath(folder)
    real_open = builtins.open

    def opening(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        inside = not isinstance(file, int) and os.path.abspath(os.fsdecode(file)).startswith(root + os.sep)
        if not inside or not any(flag in mode for flag in "wax+"):
            return handle
        raw = FullFile(handle)
        return raw if "b" in mode and kwargs.get("buffering", -1) == 0 else (
            io.BufferedWriter(raw) if "b" in mode else io.TextIOWrapper(io.BufferedWriter(raw)))

    patch = pytest.MonkeyPatch()
    patch.setattr(builtins, "open", opening)
    patch.setattr(io, "open", opening)
    try:
        yield
    finally:
        patch.undo()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        Image.new("L", (40, 36), 60 + 60 * i).save(folder / f"x{i}.png")
        paths.append(folder / f"x{i}.png")
    return paths


def test_an_atomic_write_on_a_full_disk_names_the_file_not_its_temporary(tmp_path):
    target = tmp_path / "full" / "report.json"
    with full_disk(tmp_path / "full"), pytest.raises(OSError) as info:
        atomic.write_json(target, {"a": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list((tmp_path / "full").iterdir()) == []         # no temporary file left behind


def test_predict_heatmaps_on_a_full_disk_keeps_every_prediction(tmp_path, capsys):
    paths = images(tmp_path / "in")
    maps = tmp_path / "maps"
    maps.mkdir()
    with full_disk(maps):
        code, out, err = run(capsys, "predict", HEATMAP_MODELS, *paths, "--heatmaps", maps, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 2 and [r["path"] for r in rows] == [str(p) for p in paths]
    for path, row in zip(paths, rows):
        assert row["label"] in ("fractured", "not_fractured") and isinstance(row["probability"], float)
        overlay = maps / f"{path.stem}.heatmap.png"
        assert row["error"] == f"classified, but its heatmap cannot be written: {overlay}: No space left on device"
        assert f"fracture-edge: {path}: {row['error']}" in err.splitlines()
    assert "3 classified, 0 failed, 3 heatmap(s) not written" in err and "Traceback" not in err
    assert list(maps.iterdir()) == []


def test_predict_heatmaps_text_mode_prints_the_prediction_and_the_overlay_failure(tmp_path, capsys):
    paths = images(tmp_path / "in", 1)
    with full_disk(tmp_path / "maps"):
        code, out, err = run(capsys, "predict", HEATMAP_MODELS, *paths, "--heatmaps", tmp_path / "maps")
    assert code == 2 and out.startswith(f"{paths[0]}: ") and "p=" in out
    assert "heatmap cannot be written" in err and "No space left on device" in err


def test_predict_with_stdout_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("sys.stdout", Full())
    code = main(["predict", str(FIXTURES), str(images(tmp_path / "in", 1)[0]), "--json"])
    err = capsys.readouterr().err
    assert code == 1 and err == "fracture-edge: error: standard output: cannot write the results (No space left on device)\n"


def test_bench_out_on_a_full_disk_names_the_file(tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    data = tmp_path / "data"
    for label, level in (("fractured", 220), ("not_fractured", 30)):
        images(data / "test" / label, 2)
    out = tmp_path / "bench"
    with full_disk(out):
        code, _, err = run(capsys, "bench", FIXTURES, "--data", data, "--formats", "tflite-int8", "--quick",
                           "--threads", "1", "--batch", "1", "--no-plots", "--out", out)
    lines = err.strip().splitlines()
    assert code == 1 and lines[-1] == f"fracture-edge: error: {out / 'bench.json'}: No space left on device"
    assert "Traceback" not in err


def local_set(root: Path, per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for label, level in (("fractured", 150), ("not_fractured", 100)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            gray = rng.normal(level + rng.normal(0, 30), 40, (40 + i % 7, 36 + i % 5))
            Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).save(root / label / f"{label}_{i}.png")
    return root


def test_adapt_out_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, capsys):
    data, out = local_set(tmp_path / "local"), tmp_path / "sites" / "new"
    out.parent.mkdir()
    with full_disk(out.parent):
        code, _, err = run(capsys, "-q", "adapt", ADAPT_MODELS, "--data", data, "--out", out, "--format", "onnx-fp32")
    assert code == 1 and err.startswith(f"fracture-edge: error: {out}{os.sep}") and err.count("\n") == 1
    assert err.rstrip().endswith(": No space left on device") and "Traceback" not in err
    assert list(out.parent.iterdir()) == []                 # no half-made run, no hidden work folder
    assert run(capsys, "-q", "adapt", ADAPT_MODELS, "--data", data, "--out", out, "--format", "onnx-fp32")[0] == 0
    assert (out / "bundle.json").is_file() and sorted(p.name for p in out.parent.iterdir()) == ["new"]


def test_eval_on_a_full_disk_names_the_result_file(tmp_path, capsys):
    data = tmp_path / "data"
    for label in ("fractured", "not_fractured"):
        images(data / "test" / label, 2)
    run_dir = Path(shutil.copytree(FIXTURES, tmp_path / "run"))
    with full_disk(run_dir):
        code, _, err = run(capsys, "eval", run_dir, "--data", data, "--format", "tflite-fp32")
    assert code == 1 and err.startswith(f"fracture-edge: error: {run_dir}{os.sep}eval_tflite-fp32_test_on-data-")
    assert err.rstrip().endswith(".json: No space left on device") and err.count("\n") == 1
