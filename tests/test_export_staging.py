"""An interrupted export never destroys a verified artifact nor puts a rejected one back (issue 25, item 3).

Fast tests drive export/staging.py on plain files: the moves for passed, rejected and re-exported formats, a
crash (an exception from os.replace) before each rename of the commit, the run lock and the removal of
leftover staging folders. The slow test SIGKILLs a real `fracture-edge export` of the tiny model while it
verifies in its staging folder, then checks the run folder and that the next export cleans up.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
FP32, FP16, INT8 = "model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite"


@dataclass(frozen=True)
class Row:
    """The part of export.pipeline.ExportRow that staging reads."""

    format: str
    file: str
    ok: bool


def write_bundle(run: Path, artifacts: dict[str, str]) -> None:
    """RUN/bundle.json (the fixture bundle) listing {format: file} with the files' real hashes."""
    from fracture_edge.edge_runtime.bundle import artifact_record, save_bundle

    bundle = json.loads((FIXTURES / "bundle.json").read_text())
    records = {name: {**artifact_record(run / file), "format": name} for name, file in artifacts.items()}
    save_bundle(run, {**bundle, "artifacts": records})


def final_bundle(run: Path):
    """The write_bundle callback of commit: list the passed rows (as export's record_export does)."""
    def write(rows: list) -> str:
        from fracture_edge.edge_runtime.bundle import load_bundle

        old = load_bundle(run)["artifacts"]
        listed = {name: record["file"] for name, record in old.items() if name not in {r.format for r in rows}}
        write_bundle(run, {**listed, **{r.format: r.file for r in rows if r.ok}})
        return "written"
    return write


def listed_files_match(run: Path) -> dict[str, str]:
    """{file: check} for every artifact bundle.json lists; each must be 'ok' (or 'missing': never run)."""
    from fracture_edge.edge_runtime.artifacts import check_artifact
    from fracture_edge.edge_runtime.bundle import load_bundle

    return {record["file"]: check_artifact(run / record["file"], record)
            for record in load_bundle(run)["artifacts"].values()}


def assert_consistent(run: Path) -> None:
    """Every listed file matches its hash, and no rejected content is at the top level."""
    checks = listed_files_match(run)
    assert set(checks.values()) <= {"ok", "missing"}, checks
    for path in run.iterdir():
        if path.is_file() and path.suffix == ".tflite":
            assert b"rejected" not in path.read_bytes(), f"{path.name}: a rejected artifact at the top level"


@pytest.fixture
def run(tmp_path):
    """A run folder from an earlier export: fp32 and fp16 passed (listed), int8 rejected (in rejected/)."""
    run = tmp_path / "run"
    (run / "rejected").mkdir(parents=True)
    (run / FP32).write_bytes(b"old fp32, verified")
    (run / FP16).write_bytes(b"old fp16, verified")
    (run / "rejected" / INT8).write_bytes(b"old int8, rejected")
    write_bundle(run, {"tflite-fp32": FP32, "tflite-fp16": FP16})
    return run


def staged(staging, rows_and_contents: list[tuple[Row, bytes | None]]) -> list[Row]:
    """Write each row's artifact into the staging folder (None: the export failed before writing it)."""
    for row, content in rows_and_contents:
        if content is not None:
            (staging.folder / row.file).write_bytes(content)
    return [row for row, _ in rows_and_contents]


def reexport(run: Path) -> list[tuple[Row, bytes | None]]:
    """fp32 passes again, fp16 is now rejected, int8 now passes, onnx-fp32 failed before writing a file."""
    return [(Row("tflite-fp32", FP32, True), b"new fp32, verified"),
            (Row("tflite-fp16", FP16, False), b"new fp16, rejected"),
            (Row("tflite-int8", INT8, True), b"new int8, verified"),
            (Row("onnx-fp32", "model_fp32.onnx", False), None)]


def test_passed_rejected_and_failed_rows_end_where_they_belong(run):
    from fracture_edge.export.staging import commit, staging_folder

    with staging_folder(run) as staging:
        rows, result = commit(staging, staged(staging, reexport(run)), final_bundle(run))
        folder = staging.folder
    assert result == "written" and not folder.exists()
    assert [r.file for r in rows] == [FP32, f"rejected/{FP16}", INT8, "model_fp32.onnx"]
    assert (run / FP32).read_bytes() == b"new fp32, verified" and (run / INT8).read_bytes() == b"new int8, verified"
    assert not (run / FP16).exists() and (run / "rejected" / FP16).read_bytes() == b"new fp16, rejected"
    assert not (run / "rejected" / INT8).exists()                # a passing artifact replaces its old reject
    assert listed_files_match(run) == {FP32: "ok", INT8: "ok"}
    assert_consistent(run)


def test_a_new_reject_replaces_the_old_reject_of_the_same_file(run):
    from fracture_edge.export.staging import commit, staging_folder

    with staging_folder(run) as staging:
        rows, _ = commit(staging, staged(staging, [(Row("tflite-int8", INT8, False), b"newer int8, rejected")]),
                         final_bundle(run))
    assert rows[0].file == f"rejected/{INT8}" and (run / "rejected" / INT8).read_bytes() == b"newer int8, rejected"
    assert listed_files_match(run) == {FP32: "ok", FP16: "ok"}     # the formats not re-exported are untouched


def test_an_export_that_stops_before_commit_changes_nothing(run):
    from fracture_edge.export.staging import staging_folder

    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match="verification crashed"):
        with staging_folder(run) as staging:
            staged(staging, reexport(run))
            raise RuntimeError("verification crashed")
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".export.lock"} == before
    assert not list(run.glob(".export-staging-*"))


class Crash(Exception):
    """Stands for the process dying at that instant."""


def replaces_in_commit(run: Path, tmp_path: Path) -> int:
    """How many os.replace calls a full commit of reexport() makes (the bundle writes included)."""
    trial = tmp_path / "trial"
    shutil.copytree(run, trial)
    from fracture_edge.export.staging import commit, staging_folder

    real, calls = os.replace, []
    with staging_folder(trial) as staging, pytest.MonkeyPatch.context() as patch:
        rows = staged(staging, reexport(trial))
        patch.setattr(os, "replace", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
        commit(staging, rows, final_bundle(trial))
    return len(calls)


def test_a_crash_before_any_rename_of_the_commit_leaves_a_consistent_run(run, tmp_path):
    """Each os.replace of the commit (bundle.json writes and artifact moves) fails in turn: at every one of
    those instants, every file bundle.json lists matches its hash and no rejected artifact is at the top."""
    from fracture_edge.export.staging import commit, staging_folder

    steps = replaces_in_commit(run, tmp_path)
    assert steps == 5     # unlist bundle, fp32, fp16 -> rejected/, int8, final bundle
    real = os.replace
    for step in range(steps):
        copy = tmp_path / f"crash-{step}"
        shutil.copytree(run, copy)
        calls = []

        def crashing(*args, **kwargs):
            calls.append(args)
            if len(calls) > step:
                raise Crash(f"killed before os.replace #{step + 1}")
            return real(*args, **kwargs)

        with pytest.raises(Crash), staging_folder(copy) as staging, pytest.MonkeyPatch.context() as patch:
            rows = staged(staging, reexport(copy))
            patch.setattr(os, "replace", crashing)
            commit(staging, rows, final_bundle(copy))
        assert_consistent(copy)
        assert (copy / FP32).read_bytes() in (b"old fp32, verified", b"new fp32, verified")


def test_a_second_export_into_the_same_run_fails_at_once_with_one_line(run):
    from fracture_edge.edge_runtime.errors import FractureEdgeError
    from fracture_edge.export.staging import ExportBusyError, staging_folder

    with staging_folder(run):
        with pytest.raises(ExportBusyError, match=f"another fracture-edge export is writing this run folder right "
                                                  f"now \\(pid {os.getpid()}\\); wait for it to finish"):
            with staging_folder(run):
                pass
    assert issubclass(ExportBusyError, FractureEdgeError)
    with staging_folder(run):      # the lock was dropped
        pass


def test_a_killed_holder_frees_the_run_and_its_staging_folder_is_removed(run):
    """A real process holding the lock is SIGKILLed: the kernel drops the lock, the next export sweeps."""
    from fracture_edge.export.staging import ExportBusyError, staging_folder

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom fracture_edge.export.staging import staging_folder\n"
         f"with staging_folder({str(run)!r}) as s:\n    (s.folder / 'model_fp32.tflite').write_bytes(b'half')\n"
         "    print(s.folder, flush=True)\n    time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        leftover = Path(holder.stdout.readline().strip())
        assert leftover.parent == run and leftover.is_dir()
        with pytest.raises(ExportBusyError, match=f"pid {holder.pid}"):
            with staging_folder(run):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert leftover.is_dir()                        # SIGKILL ran no clean-up
    with staging_folder(run) as staging:
        assert not leftover.exists() and staging.folder.is_dir()
    assert list(run.glob(".export-staging-*")) == []


def test_a_missing_run_folder_is_one_line(tmp_path):
    from fracture_edge.edge_runtime.errors import FractureEdgeError
    from fracture_edge.export.staging import staging_folder

    with pytest.raises(FractureEdgeError, match="no such run folder"):
        with staging_folder(tmp_path / "nowhere"):
            pass


# ---- a real kill -9 of `fracture-edge export` ------------------------------------------------------------------

def wait_for_verification(proc: subprocess.Popen, log: Path, run: Path, staged_file: str,
                          timeout: float = 900) -> Path:
    """The staging folder, once the log says tflite-fp32 passed and `staged_file` is being verified there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"export ended (exit {proc.returncode}) before it could be killed:\n{log.read_text()[-3000:]}")
        folders = list(run.glob(".export-staging-*"))
        if "tflite-fp32: ok" in log.read_text() and folders and (folders[0] / staged_file).is_file():
            return folders[0]
        time.sleep(0.02)
    pytest.fail(f"no verification seen in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_kill_9_during_verification_keeps_the_run_consistent(tiny_export, tmp_path):
    """The earlier export: fp32 passed (listed), fp16 rejected (in rejected/). The re-export is killed while
    it verifies fp16 (which the default margins reject: 48 images are too few)."""
    from fracture_edge.edge_runtime.bundle import load_bundle, save_bundle
    from fracture_edge.edge_runtime.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_export.run, run)
    (run / "rejected").mkdir(exist_ok=True)
    os.replace(run / FP16, run / "rejected" / FP16)
    bundle = load_bundle(run)
    bundle["artifacts"].pop("tflite-fp16", None)
    save_bundle(run, bundle)
    fp32_before = (run / FP32).read_bytes()

    log = tmp_path / "export.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "fracture_edge.edge_runtime", "export", str(run),
                                 "--formats", "tflite-fp32,tflite-fp16", "--threads", "1"],
                                stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        try:
            leftover = wait_for_verification(proc, log, run, FP16)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert set(listed_files_match(run).values()) == {"ok"}, listed_files_match(run)
    assert (run / FP32).read_bytes() == fp32_before and not (run / FP16).exists()
    assert leftover.is_dir() and (leftover / FP32).is_file()        # the killed export's work, left behind

    assert main(["export", str(run), "--formats", "tflite-fp32", "--threads", "1"]) == 0
    assert not leftover.exists() and list(run.glob(".export-staging-*")) == []
    assert set(listed_files_match(run).values()) == {"ok"} and not (run / FP16).exists()
    rows = json.loads((run / "export_report.json").read_text())["rows"]
    assert [(r["format"], r["file"], r["status"]) for r in rows] == [("tflite-fp32", FP32, "ok")]


@pytest.mark.slow
def test_report_rows_name_the_final_files(tiny_export):
    """export_report.json names each artifact where it ended up (top level or rejected/), never the staging folder."""
    from fracture_edge.edge_runtime.bundle import file_sha256

    report = json.loads((tiny_export.run / "export_report.json").read_text())
    for row in report["rows"]:
        assert ".export-staging-" not in row["file"] and (tiny_export.run / row["file"]).is_file()
        assert row["file"].startswith("rejected/") == (row["status"] != "ok")
        assert file_sha256(tiny_export.run / row["file"]) == row["sha256"]
    assert list(tiny_export.run.glob(".export-staging-*")) == []
