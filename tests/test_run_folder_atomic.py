"""`train --out` is never half-made (issue 25, round 3): the run folder is built out of sight and renamed into
place (atomic.claimed_folder), so a kill -9 or a full disk while it is written leaves --out as it was, and a
second train into the same --out fails with one line instead of mixing files. TF-free: write_run_folder with a
stand-in model (its save writes bytes) and tiny splits; the plots are stubbed."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fracture_edge.edge_runtime import atomic
from fracture_edge.edge_runtime.dataset import Sample
from fracture_edge.edge_runtime.preprocessing import InputContract
from fracture_edge.train import run_folder
from fracture_edge.train.activations import SplitData
from fracture_edge.train.options import TrainOptions

RUN_FILES = {"model.keras", "bundle.json", "metrics.json", "history.json", "predictions.json", "model_card.md",
             "plots.png"}


class Model:
    """Stands in for a Keras model: save() writes a few bytes (or waits, to be killed while saving)."""

    def __init__(self, payload: bytes = b"keras", wait: float = 0.0):
        self.payload, self.wait = payload, wait

    def save(self, path) -> None:
        Path(path).write_bytes(self.payload)
        if self.wait:
            print("saving", flush=True)
            time.sleep(self.wait)


def split(name: str) -> SplitData:
    targets = np.array([1, 0, 1, 0, 1, 0])
    samples = tuple(Sample(Path(f"/data/{name}/{i}.png"), "fractured" if t else "not_fractured", name)
                    for i, t in enumerate(targets))
    return SplitData(name, np.empty((0, 32, 32, 3), np.uint8), targets, samples, ())


def stub_plots(monkeypatch) -> None:
    from fracture_edge.train import plots, sample_grid

    monkeypatch.setattr(run_folder, "versions", lambda: {"fracture_edge": "test"})
    monkeypatch.setattr(plots, "write_training_plots", lambda out, *a: atomic.write_bytes(Path(out) / "plots.png", b"p"))
    monkeypatch.setattr(sample_grid, "write_sample_grid", lambda out, *a: None)


def write(out: Path, model=None, overwrite: bool = False):
    splits = {name: split(name) for name in ("train", "val", "test")}
    probs = {name: np.array([0.9, 0.2, 0.7, 0.4, 0.6, 0.1]) for name in ("val", "test")}
    opts = TrainOptions(data="/data", out=str(out), weights="none", overwrite=overwrite)
    thresholds = {"balanced": 0.5, "screening": 0.3, "screening_target_sensitivity": 0.95}
    return run_folder.write_run_folder(out, model or Model(), opts, InputContract(size=32), splits, probs,
                                       thresholds, {"head": {}}, {"leaks": 0}, 1.0)


def hidden_leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith("."))


def test_a_run_folder_is_written_whole_and_named_as_asked(tmp_path, monkeypatch):
    stub_plots(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()                                   # what train's prepare_out_dir leaves: an empty folder
    summary = write(out)
    assert summary.run_dir == out and RUN_FILES <= {p.name for p in out.iterdir()}
    assert json.loads((out / "bundle.json").read_text())["artifacts"]["keras"]["file"] == "model.keras"
    assert "(run)" in (out / "model_card.md").read_text().splitlines()[0]
    assert hidden_leftovers(out) == []


def test_a_full_disk_leaves_no_half_made_run_folder(tmp_path, monkeypatch):
    stub_plots(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    real = atomic.write_json

    def full(path, obj):
        if Path(path).name == "history.json":    # model.keras, bundle.json, metrics.json are written by now
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)

    monkeypatch.setattr(atomic, "write_json", full)
    with pytest.raises(OSError) as info:
        write(out)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out / "history.json")
    assert list(out.iterdir()) == [] and hidden_leftovers(out) == []       # nothing of the failed run


def test_a_second_train_into_the_same_out_fails_at_once(tmp_path, monkeypatch):
    stub_plots(monkeypatch)
    out = tmp_path / "run"
    first = atomic.claim_folder(out, "fracture-edge train")     # another train is writing this folder
    try:
        (first.build / "model.keras").write_bytes(b"first")
        with pytest.raises(atomic.FolderClaimError) as info:
            write(out)
        assert str(info.value).startswith(f"{out}: another fracture-edge train is writing this folder right now")
        assert "\n" not in str(info.value)
        assert (first.build / "model.keras").read_bytes() == b"first"        # the first one's work is untouched
    finally:
        first.finish()
    assert [p.name for p in out.iterdir()] == ["model.keras"]
    with pytest.raises(atomic.FolderClaimError, match="exists and is not an empty folder"):
        write(out)                                 # without --overwrite, never into the finished first run
    assert (out / "model.keras").read_bytes() == b"first"


CHILD = """
import sys
from pathlib import Path
import pytest
sys.path.insert(0, sys.argv[2])
import test_run_folder_atomic as t
patch = pytest.MonkeyPatch()
t.stub_plots(patch)
t.write(Path(sys.argv[1]), t.Model(wait=60))
"""


def test_a_train_killed_while_writing_leaves_no_half_made_folder(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(Path(__file__).parent)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "saving"      # model.keras is being written
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert list(out.iterdir()) == []                # --out is as train found it
    stub_plots(monkeypatch)
    write(out)                                      # the next train removes what the killed one left
    assert RUN_FILES <= {p.name for p in out.iterdir()} and hidden_leftovers(out) == []


def test_overwrite_replaces_the_run_files_together_and_keeps_the_others(tmp_path, monkeypatch):
    stub_plots(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    write(out, Model(b"old"))
    (out / "notes.txt").write_text("mine")
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    real = atomic.write_json

    def full(path, obj):
        if Path(path).name == "predictions.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)

    monkeypatch.setattr(atomic, "write_json", full)
    with pytest.raises(OSError) as info:
        write(out, Model(b"new"), overwrite=True)
    assert info.value.filename == str(out / "predictions.json")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old          # no new model.keras with the old bundle
    monkeypatch.setattr(atomic, "write_json", real)
    write(out, Model(b"new"), overwrite=True)
    assert (out / "model.keras").read_bytes() == b"new" and (out / "notes.txt").read_text() == "mine"
    record = json.loads((out / "bundle.json").read_text())["artifacts"]["keras"]
    assert record["bytes"] == 3 and hidden_leftovers(out) == []
