"""`bench --out` (issue 25, round 3): the outputs of one bench appear together or not at all (a full disk or a
kill leaves the previous bench.json, bench.md and plots whole), a plot of an earlier bench is not left beside a
new report, and a second bench into the same folder fails at once with one line instead of interleaving.
TF-free: the tiny fixture models, one format, --quick."""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.benchmarks import bench
from fracture_edge.edge_runtime import atomic
from fracture_edge.edge_runtime.cli import main

fcntl = pytest.importorskip("fcntl")
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"


def dataset(root: Path) -> Path:
    for label, level in (("fractured", 220), ("not_fractured", 30)):
        (root / "test" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((40, 36), level + i, np.uint8)).save(root / "test" / label / f"{i}.png")
    return root


def bench_into(capsys, out: Path, data: Path, *extra) -> tuple[int, str]:
    """bench of a copy of the fixture run (bench renders the run's model card: never into tests/fixtures)."""
    pytest.importorskip("ai_edge_litert")
    run = out.parent / "run"
    if not run.exists():
        shutil.copytree(FIXTURES, run)
    code = main(["bench", str(run), "--data", str(data), "--formats", "tflite-int8", "--quick", "--threads", "1",
                 "--batch", "1", "--out", str(out), *extra])
    return code, capsys.readouterr().err


def contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != bench.LOCK_FILE}


def test_a_second_bench_into_the_same_out_fails_at_once(tmp_path, capsys):
    out, data = tmp_path / "out", dataset(tmp_path / "data")
    out.mkdir()
    (out / "bench.json").write_text("{}")                      # the first bench's file
    fd = os.open(out / bench.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)          # a first bench is running
        started = time.perf_counter()
        code, err = bench_into(capsys, out, data, "--no-plots")
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
    assert code == 1 and err.strip().splitlines() == [
        f"fracture-edge: error: {out}: another fracture-edge bench is writing this folder right now; wait for it "
        "to finish, or choose another --out"]
    assert elapsed < 5 and (out / "bench.json").read_text() == "{}"    # nothing measured, nothing written
    code, _ = bench_into(capsys, out, data, "--no-plots")          # once the first is done, it runs
    assert code == 0 and json.loads((out / "bench.json").read_text())["rows"]


def test_a_full_disk_leaves_the_previous_bench_whole(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    out, data = tmp_path / "out", dataset(tmp_path / "data")
    assert bench_into(capsys, out, data)[0] == 0
    before = contents(out)
    assert {"bench.json", "bench.md", "roc.png"} <= set(before)
    real = atomic.write_text

    def full(path, text):
        if Path(path).name == "bench.md":                 # the plots and bench.json of the new bench are written
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(atomic, "write_text", full)
    code, err = bench_into(capsys, out, data, "--seed", "1")
    assert code == 1 and err.strip().splitlines()[-1] == f"fracture-edge: error: {out / 'bench.md'}: No space left on device"
    assert contents(out) == before                           # not one new file beside the old ones
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [bench.LOCK_FILE]


def test_the_folder_holds_one_bench_and_what_a_killed_one_left_is_removed(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, data = tmp_path / "out", dataset(tmp_path / "data")
    assert bench_into(capsys, out, data)[0] == 0
    assert (out / "roc.png").is_file()
    killed = out / f"{bench.STAGING_PREFIX}abc123"             # a bench killed while writing its outputs
    killed.mkdir()
    (killed / "bench.json").write_text("{")
    assert bench_into(capsys, out, data, "--no-plots")[0] == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["plots"] == [] and not any(out.glob("*.png"))       # no plot of the earlier bench
    assert not killed.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([bench.LOCK_FILE, "bench.json", "bench.md"])
