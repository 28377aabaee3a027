"""Issue 12: every path from the command line to the output survives a hostile file system and a broken bundle.

One section per point of the issue, then the other paths found while fixing them. Unreadable folders are
tested for real (chmod 000, as a normal user) and simulated (PermissionError from os/open: works as root).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime import bundle as B
from fracture_edge.edge_runtime.artifacts import UnverifiedArtifactError
from fracture_edge.edge_runtime.classifier import Classifier
from fracture_edge.edge_runtime.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
ROOT = Path(__file__).resolve().parents[1]
LITERT_MODULES = ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter",
                  "tensorflow")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def json_rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def save_image(path: Path, level: int = 200) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (40, 36), level).save(path)
    return path


def copy_run(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES, tmp_path / "run"))


def cli_subprocess(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fracture_edge.edge_runtime", *map(str, argv)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, **kwargs)


# --- 1. glob mode with --recursive never follows a link to a folder -------------------------------------

@pytest.fixture
def linked_tree(tmp_path) -> Path:
    """3 images in dir/, dir/a/, dir/a/b/, and a link from dir/a/b back to its parent (a loop for glob)."""
    root = tmp_path / "dir"
    for name in ("x.png", "a/y.png", "a/b/z.png"):
        save_image(root / name)
    os.symlink("..", root / "a" / "b" / "parent")
    return root


@pytest.mark.parametrize("pattern", ["{root}/**/*.png", "{root}"], ids=["glob", "folder"])
def test_recursive_inputs_do_not_follow_links_to_folders(capsys, linked_tree, pattern):
    code, out, _ = run_cli(capsys, "predict", FIXTURES, pattern.format(root=linked_tree), "--recursive", "--json")
    names = sorted(Path(r["path"]).name for r in json_rows(out))
    assert code == 0 and names == ["x.png", "y.png", "z.png"]


def test_two_links_to_an_ancestor_end_quickly(capsys, linked_tree):
    os.symlink(str(linked_tree), linked_tree / "a" / "root")  # with the '..' link: exponential for glob.glob
    code, out, _ = run_cli(capsys, "predict", FIXTURES, f"{linked_tree}/**/*.png", "--recursive", "--json")
    assert code == 0 and len(json_rows(out)) == 3


# --- 2. one integrity rule for predict, info, bench and eval --------------------------------------------

def grow(path: Path) -> None:
    with open(path, "ab") as fh:
        fh.write(b"\0" * 16)  # still a loadable flatbuffer, no longer the exported file


def test_predict_refuses_a_modified_lone_artifact_that_its_neighbour_records(capsys, tmp_path):
    run = copy_run(tmp_path)
    grow(run / "model_fp32.tflite")
    image = save_image(tmp_path / "a.png")
    for command in (["predict", run / "model_fp32.tflite", image], ["info", run / "model_fp32.tflite"]):
        code, out, err = run_cli(capsys, *command, "--allow-unverified")  # the flag never excuses a mismatch
        assert code == 1 and "does not match its bundle.json" in err and "Traceback" not in err


def test_a_lone_artifact_that_nothing_records_needs_the_flag(capsys, caplog, tmp_path):
    lone = Path(shutil.copy(FIXTURES / "model_int8.tflite", tmp_path / "model_int8.tflite"))
    image = save_image(tmp_path / "img" / "a.png")
    code, out, err = run_cli(capsys, "predict", lone, image)
    assert code == 1 and out == "" and "unverified" in err and "--allow-unverified" in err
    code, out, err = run_cli(capsys, "predict", lone, image, "--allow-unverified")
    assert code == 0 and "a.png: fractured" in out and "unverified" in caplog.text  # never silent
    caplog.clear()
    shutil.copy(FIXTURES / "bundle.json", tmp_path / "bundle.json")  # a neighbour that records it: verified
    code, out, err = run_cli(capsys, "predict", lone, image)
    assert code == 0 and "unverified" not in caplog.text + err


def test_a_run_folder_artifact_without_a_recorded_hash_is_unverified(capsys, tmp_path):
    run = copy_run(tmp_path)
    bundle = json.loads((run / "bundle.json").read_text())
    del bundle["artifacts"]["tflite-int8"]["sha256"]
    (run / "bundle.json").write_text(json.dumps(bundle))
    image = save_image(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "predict", run, image)
    assert code == 1 and "unverified" in err
    assert run_cli(capsys, "predict", run, image, "--allow-unverified")[0] == 0
    code, out, err = run_cli(capsys, "info", run)
    assert code == 1 and "unrecorded" in out and "unverified" in err
    with pytest.raises(UnverifiedArtifactError):
        Classifier(run)  # the library default (eval, bench rows) applies the rule to run folders too


def make_dataset(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for label, level in (("fractured", 220), ("not_fractured", 30)):
        for i in range(2):
            save_image(data / "test" / label / f"{label}{i}.png", level + i)
    return data


def test_eval_obeys_the_rule(capsys, tmp_path):
    run = copy_run(tmp_path)
    bundle = json.loads((run / "bundle.json").read_text())
    del bundle["artifacts"]["onnx-fp32"]["sha256"]
    (run / "bundle.json").write_text(json.dumps(bundle))
    grow(run / "model_fp32.tflite")
    data = make_dataset(tmp_path)
    for fmt, message in (("tflite-fp32", "does not match"), ("onnx-fp32", "unverified")):
        code, _, err = run_cli(capsys, "eval", run, "--data", data, "--format", fmt)
        assert code == 1 and message in err and "Traceback" not in err
    assert run_cli(capsys, "eval", run, "--data", data, "--format", "tflite-int8")[0] == 0


def bench_run(tmp_path: Path, damage_rejected: bool) -> Path:
    """A run whose tflite-int8 was rejected by export (RUN/rejected/ + export_report.json row)."""
    run = copy_run(tmp_path)
    (run / "rejected").mkdir()
    shutil.move(run / "model_int8.tflite", run / "rejected" / "model_int8.tflite")
    record = B.artifact_record(run / "rejected" / "model_int8.tflite")
    report = {"rows": [{"format": "tflite-int8", "file": "rejected/model_int8.tflite", "status": "gate failed",
                        "bytes": record["bytes"], "sha256": record["sha256"]}]}
    (run / "export_report.json").write_text(json.dumps(report))
    if damage_rejected:
        grow(run / "rejected" / "model_int8.tflite")
    return run


@pytest.mark.parametrize("damaged", [False, True], ids=["recorded", "modified"])
def test_bench_checks_rejected_artifacts_against_the_export_report(capsys, tmp_path, damaged):
    pytest.importorskip("ai_edge_litert")
    run, data = bench_run(tmp_path, damaged), make_dataset(tmp_path)
    code, out, err = run_cli(capsys, "bench", run, "--data", data, "--quick", "--formats", "tflite-int8",
                             "--include-rejected", "--threads", "1", "--no-plots", "--out", tmp_path / "out")
    row = json.loads((tmp_path / "out" / "bench.json").read_text())["rows"][0]
    if damaged:
        assert code == 1 and row["status"] == "failed" and "does not match" in row["reason"]
    else:
        assert code == 0 and row["status"] == "ok" and row["details"]["integrity"] == "verified"


# --- 3. unreadable folders and files ----------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path) -> Path:
    """first.png, locked/{in.png, deep/d.png}, open/{o.png, sub/s.png}, last.png."""
    root = tmp_path / "t"
    for name in ("first.png", "locked/in.png", "locked/deep/d.png", "open/o.png", "open/sub/s.png", "last.png"):
        save_image(root / name)
    return root


def test_an_unreadable_folder_argument_is_named_and_the_rest_classified(capsys, tree, unreadable):
    with unreadable(tree / "locked"):
        code, out, err = run_cli(capsys, "predict", FIXTURES, tree / "first.png", tree / "locked",
                                 tree / "locked" / "in.png", f"{tree}/locked/*.png", tree / "last.png", "--json")
    rows = json_rows(out)
    good = sorted(Path(r["path"]).name for r in rows if r["error"] is None)
    assert code == 2 and good == ["first.png", "last.png"] and "Traceback" not in err
    failed = [r["path"] for r in rows if r["error"]]
    assert sorted(failed) == sorted({str(tree / "locked"), str(tree / "locked" / "in.png")})
    assert "permission denied" in err.lower()


def test_recursive_names_an_unreadable_subfolder(capsys, tree, unreadable):
    with unreadable(tree / "open" / "sub"):
        code, out, err = run_cli(capsys, "predict", FIXTURES, tree / "open", "--recursive", "--json")
    rows = json_rows(out)
    assert code == 2 and [Path(r["path"]).name for r in rows if r["error"] is None] == ["o.png"]
    assert [r["path"] for r in rows if r["error"]] == [str(tree / "open" / "sub")]


def test_info_on_an_unreadable_run_or_model_is_one_line(capsys, tmp_path, unreadable):
    run = copy_run(tmp_path)
    with unreadable(run):
        for target in (run, run / "model_int8.tflite", run / "bundle.json"):
            code, out, err = run_cli(capsys, "info", target)
            assert code == 1 and "Traceback" not in err and err.count("\n") == 1, err
            assert "permission denied" in err.lower()


def test_predict_on_an_unreadable_run_is_one_line(capsys, tmp_path, unreadable):
    run = copy_run(tmp_path)
    image = save_image(tmp_path / "a.png")
    with unreadable(run):
        code, _, err = run_cli(capsys, "predict", run, image)
    assert code == 1 and "permission denied" in err.lower() and err.count("\n") == 1


def test_data_check_refuses_a_dataset_with_an_unreadable_class_folder(capsys, tmp_path, unreadable):
    data = make_dataset(tmp_path)
    with unreadable(data / "test" / "fractured"):
        code, out, err = run_cli(capsys, "data", "check", data)
    assert code == 1 and str(data / "test" / "fractured") in err and "permission denied" in err.lower()
    assert "incomplete" in err and "Traceback" not in err


# --- 4. a closed pipe ends the run quietly -----------------------------------------------------------------

@pytest.mark.parametrize("flags", [[], ["--json"]], ids=["text", "json"])
def test_a_reader_that_goes_away_is_no_traceback(tmp_path, flags):
    images = [save_image(tmp_path / f"i{i}.png", 10 * i) for i in range(20)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` that has already exited: the first write gets EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "fracture_edge.edge_runtime", "predict", str(FIXTURES),
                               *map(str, images), *flags], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120, cwd=ROOT)
    finally:
        os.close(write_end)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


# --- 5. an install with onnxruntime only -------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage" * 10, None], ids=["empty", "garbage", "truncated"])
def test_a_corrupt_onnx_without_the_onnx_package_is_one_line(capsys, monkeypatch, tmp_path, content):
    pytest.importorskip("onnxruntime")
    monkeypatch.setitem(sys.modules, "onnx", None)
    path = tmp_path / "model_fp32.onnx"
    path.write_bytes(content if content is not None else (FIXTURES / "model_fp32.onnx").read_bytes()[:700])
    code, out, err = run_cli(capsys, "predict", path, save_image(tmp_path / "a.png"), "--allow-unverified")
    assert code == 1 and out == "" and err.count("\n") == 1 and "model_fp32.onnx" in err


def test_a_run_folder_picks_a_format_the_installed_runtimes_can_run(capsys, monkeypatch, tmp_path):
    pytest.importorskip("onnxruntime")
    for name in LITERT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    assert Classifier(FIXTURES).format.name == "onnx-fp32"
    code, out, err = run_cli(capsys, "predict", FIXTURES, save_image(tmp_path / "a.png"))
    assert code == 0 and "a.png: fractured" in out
    code, _, err = run_cli(capsys, "predict", FIXTURES, tmp_path / "a.png", "--format", "tflite-int8")
    assert code == 1 and "fracture-edge[litert]" in err  # an explicit --format still names the missing extra


# --- 6. bundles with the right keys and the wrong types ---------------------------------------------------

def fixture_bundle() -> dict:
    return json.loads((FIXTURES / "bundle.json").read_text())


def changed(path: str, value):
    """A fixture bundle with the value at 'a.b.c' replaced ('' = the whole bundle)."""
    bundle = fixture_bundle()
    if not path:
        return value
    *parents, last = path.split(".")
    target = bundle
    for key in parents:
        target = target[key]
    target[last] = value
    return bundle


# (id, bundle, text the one problem line must contain)
BAD_BUNDLES = [
    ("number", changed("", 5), "the bundle must be a JSON object"),
    ("null", changed("", None), "the bundle must be a JSON object"),
    ("list", changed("", []), "the bundle must be a JSON object"),
    ("thresholds-list", changed("thresholds", [0.5, 0.25]), "thresholds must be an object"),
    ("input-null", changed("input", None), "input must be an object"),
    ("output-list", changed("output", ["sigmoid"]), "output must be an object"),
    ("labels-object", changed("labels", {"a": 1}), "labels must be a list of two different non-empty names"),
    ("duplicate-labels", changed("labels", ["fractured", "fractured"]), "labels must be a list of two different"),
    ("file-123", changed("artifacts.tflite-int8.file", 123), "artifacts.tflite-int8.file must be a file name"),
    ("file-path", changed("artifacts.tflite-int8.file", "../../etc/passwd"), "artifacts.tflite-int8.file"),
    ("artifact-list", changed("artifacts.tflite-int8", ["model_int8.tflite"]), "artifacts.tflite-int8 must be"),
    ("positive-index", changed("output.positive_index", 3), "output.positive_index must be 0"),
    ("version-string", changed("schema_version", "1"), "schema_version must be the integer 1, got '1' (a string)"),
    ("version-2", changed("schema_version", 2), "schema_version 2 is not supported"),
    ("version-bool", changed("schema_version", True), "schema_version must be the integer 1"),
    ("metric-string", changed("metrics.test.auc", "high"), "metrics.test.auc must be a number or null"),
    ("metric-nested", changed("metrics.test.balanced.f1", [1]), "metrics.test.balanced.f1 must be a number"),
    ("threshold-bool", changed("thresholds.balanced", True), "thresholds.balanced must be a number in [0, 1]"),
    ("threshold-nan", changed("thresholds.balanced", float("nan")), "thresholds.balanced must be a number"),
    ("size-string", changed("input.size", "32"), "input.size must be an integer from 16 to 1024"),
    ("channels", changed("input.channels", 1), "input.channels must be 3"),
    ("pixel-range", changed("input.pixel_range", [0, 1]), "input.pixel_range must be [0, 255]"),
    ("sha-number", changed("artifacts.tflite-int8.sha256", 5), "artifacts.tflite-int8.sha256 must be 64"),
    ("default-threshold", changed("thresholds.default", "strict"), "thresholds.default must be one of"),
]


@pytest.mark.parametrize("name, bundle, message", BAD_BUNDLES, ids=[b[0] for b in BAD_BUNDLES])
def test_a_bundle_of_the_wrong_shape_is_one_line_per_problem(capsys, tmp_path, name, bundle, message):
    with pytest.raises(B.BundleError) as info:
        B.validate_bundle(copy.deepcopy(bundle), "b")
    assert message in str(info.value) and "reads version 1)" not in str(info.value)
    run = copy_run(tmp_path)
    (run / "bundle.json").write_text(json.dumps(bundle))
    image = save_image(tmp_path / "a.png")
    for argv in (["info", run], ["predict", run, image], ["predict", run / "model_fp32.tflite", image]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1 and "Traceback" not in err and out == "" and message in err, (argv, err)


def test_every_problem_gets_its_own_line(capsys, tmp_path):
    bundle = changed("labels", ["a", "a"])
    bundle["thresholds"] = {"balanced": "x", "screening": None}
    bundle["input"]["fit"] = "crop"
    with pytest.raises(B.BundleError) as info:
        B.validate_bundle(bundle, "b")
    lines = str(info.value).splitlines()
    assert lines[0] == "b: 4 problems with the bundle (schema version 1):" and len(lines) == 5
    assert any(line.startswith("  input.fit must be 'stretch'") for line in lines)


# --- 7. bench: --out that is a file, every row failed ----------------------------------------------------

def test_bench_out_that_is_a_file_is_refused_before_measuring(capsys, tmp_path):
    out = tmp_path / "taken"
    out.write_text("a file")
    code, _, err = run_cli(capsys, "bench", FIXTURES, "--data", make_dataset(tmp_path), "--out", out, "--quick")
    assert code == 1 and "--out" in err and "not a folder" in err and err.count("\n") == 1


def test_bench_exits_1_when_no_row_was_measured(capsys, tmp_path):
    run = copy_run(tmp_path)
    (run / "model_int8.onnx").write_bytes(b"not an onnx model")
    code, out, err = run_cli(capsys, "bench", run, "--data", make_dataset(tmp_path), "--formats", "onnx-int8",
                             "--quick", "--threads", "1", "--no-plots", "--out", tmp_path / "out")
    assert code == 1 and "no row was measured" in err and "Traceback" not in err


# --- 8. LiteRT's delegate banner ---------------------------------------------------------------------------

def test_litert_prints_no_delegate_banner(tmp_path):
    pytest.importorskip("ai_edge_litert")
    image = save_image(tmp_path / "a.png")
    proc = cli_subprocess("-q", "predict", FIXTURES, image, "--format", "tflite-fp32")
    assert proc.returncode == 0 and "XNNPACK" not in proc.stderr and proc.stderr == ""


# --- other paths found while fixing the above -------------------------------------------------------------

def test_special_files_and_broken_links_are_named_not_skipped_or_read(capsys, tmp_path):
    folder = tmp_path / "f"
    save_image(folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    os.symlink(folder / "gone.png", folder / "broken.png")
    code, out, err = run_cli(capsys, "predict", FIXTURES, folder, "--json")
    rows = {Path(r["path"]).name: r for r in json_rows(out)}
    assert code == 2 and rows["good.png"]["error"] is None
    assert "named pipe" in rows["pipe.png"]["error"] and "broken symbolic link" in rows["broken.png"]["error"]


def test_a_model_or_bundle_that_is_a_pipe_is_refused_without_blocking(capsys, tmp_path):
    image = save_image(tmp_path / "a.png")
    os.mkfifo(tmp_path / "model.tflite")
    code, _, err = run_cli(capsys, "predict", tmp_path / "model.tflite", image)
    assert code == 1 and "not a regular file" in err
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "bundle.json")
    code, _, err = run_cli(capsys, "info", run)
    assert code == 1 and "not a regular file" in err


def test_an_oversized_or_deeply_nested_bundle_is_one_line(capsys, tmp_path):
    run = copy_run(tmp_path)
    (run / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run_cli(capsys, "info", run)
    assert code == 1 and "nested too deeply" in err
    with open(run / "bundle.json", "wb") as fh:
        fh.truncate(B.MAX_BUNDLE_BYTES + 1)  # sparse: no disk used
    code, _, err = run_cli(capsys, "info", run)
    assert code == 1 and "too large for a bundle" in err


def test_file_names_that_are_not_utf8_or_hold_a_newline(tmp_path):
    folder = tmp_path / "odd"
    save_image(folder / "plain.png")
    save_image(Path(os.fsdecode(bytes(folder) + b"/caf\xe9.png")))
    save_image(folder / "two\nlines.png")
    for flags in ([], ["--json"], ["--csv"]):
        proc = cli_subprocess("predict", FIXTURES, folder, *flags)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        assert len(lines) == 3 + (flags == ["--csv"]) + (flags == ["--csv"])  # csv: header + quoted newline


@pytest.mark.parametrize("flag, value", [("--threads", "100000"), ("--batch-size", "1000000")])
def test_resource_options_are_bounded(capsys, tmp_path, flag, value):
    code, _, err = run_cli(capsys, "predict", FIXTURES, save_image(tmp_path / "a.png"), flag, value)
    assert code == 1 and flag in err and "between 1 and" in err


def test_a_dicom_header_over_the_pixel_limit_is_refused_before_decoding(capsys, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID = ExplicitVRLittleEndian, generate_uid()
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows = ds.Columns = 20000
    ds.NumberOfFrames = 1
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.zeros(16, np.uint8).tobytes()
    ds.save_as(tmp_path / "bomb.dcm", enforce_file_format=True)
    code, out, err = run_cli(capsys, "predict", FIXTURES, tmp_path / "bomb.dcm", "--json")
    assert code == 2 and "image too large" in json_rows(out)[0]["error"]


def test_a_dataset_csv_that_is_a_pipe_is_refused(capsys, tmp_path):
    os.mkfifo(tmp_path / "split.csv")
    code, _, err = run_cli(capsys, "data", "check", tmp_path / "split.csv")
    assert code == 1 and "not a folder or a regular file" in err


@pytest.mark.parametrize("closed, code, message", [(">&-", 1, "standard output is closed"), ("2>&-", 0, "")],
                         ids=["stdout", "stderr"])
def test_a_closed_standard_stream_is_no_traceback(tmp_path, closed, code, message):
    image = save_image(tmp_path / "a.png")
    command = f"{sys.executable} -m fracture_edge.edge_runtime predict {FIXTURES} {image} {closed}"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == code and "Traceback" not in proc.stdout + proc.stderr and message in proc.stderr


def test_a_runtime_failure_during_inference_is_one_line(capsys, monkeypatch, tmp_path):
    from fracture_edge.edge_runtime import backends

    def explode(self, pixels):
        raise RuntimeError("tensor arena overflow\nmore C++ detail")

    monkeypatch.setattr(backends.TfliteBackend, "run", explode)
    code, out, err = run_cli(capsys, "predict", FIXTURES, save_image(tmp_path / "a.png"), "--format", "tflite-fp32")
    assert code == 1 and out == "" and "failed to run the model (RuntimeError: tensor arena overflow)" in err
    assert err.count("\n") == 1


# ---- issue 25, round 3: the runtime's other input paths -----------------------------------------------------

def csv_dataset(tmp_path: Path) -> tuple[Path, str]:
    for name, level in (("f0.png", 220), ("f1.png", 210), ("n0.png", 30), ("n1.png", 40)):
        save_image(tmp_path / name, level)
    rows = "f0.png,fractured,test\nf1.png,fractured,test\nn0.png,not_fractured,test\nn1.png,not_fractured,test\n"
    return tmp_path, rows


def test_a_split_csv_with_a_byte_order_mark_is_read(capsys, tmp_path):
    """Excel's "CSV UTF-8" starts the file with a BOM: its first column was '\\ufeffpath', so 'missing column path'."""
    from fracture_edge.edge_runtime.dataset import read_dataset

    folder, rows = csv_dataset(tmp_path)
    (folder / "split.csv").write_bytes("\ufeffpath,label,split\r\n".encode() + rows.replace("\n", "\r\n").encode())
    samples = read_dataset(folder / "split.csv")
    assert [s.path.name for s in samples] == ["f0.png", "f1.png", "n0.png", "n1.png"]
    code, out, err = run_cli(capsys, "data", "check", folder / "split.csv")
    assert code == 0 and "Traceback" not in err


def test_a_split_csv_with_an_endless_line_is_refused_before_it_is_held(tmp_path):
    """A 64 MB line of short fields: csv parsed a whole line into a list of fields first (a 420 MB line cost 3.3 GB
    of RSS, a 2 GB one would be killed for memory); now the line is refused at 1 MiB, naming it."""
    import tracemalloc

    from fracture_edge.edge_runtime.dataset import MAX_CSV_LINE, DatasetError, read_dataset

    folder, rows = csv_dataset(tmp_path)
    with open(folder / "split.csv", "w") as handle:
        handle.write("path,label,split\n" + rows)
        for _ in range(32):
            handle.write("a," * (1 << 20))
        handle.write("\n")
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError) as info:
            read_dataset(folder / "split.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (f"{folder / 'split.csv'}:6: line longer than {MAX_CSV_LINE:,} characters, so not a "
                               "split CSV row")
    assert peak < 16 * MAX_CSV_LINE                     # about one line's worth, not 64 MB of fields


def test_a_long_quoted_row_within_the_limit_is_still_read(tmp_path):
    from fracture_edge.edge_runtime.dataset import read_dataset

    folder, rows = csv_dataset(tmp_path)
    note = "x" * 100_000
    (folder / "split.csv").write_text(f'path,label,split,note\n{rows.replace(chr(10), ",-" + chr(10))}'
                                      f'f0.png,fractured,val,"{note}\nsecond line"\n')
    samples = read_dataset(folder / "split.csv")
    assert len(samples) == 5 and samples[-1].meta["note"] == f"{note}\nsecond line"


def test_a_split_csv_row_with_an_empty_path_names_its_line(capsys, tmp_path):
    """An empty path was the CSV's own folder: skipped later as 'is a folder, not an image file', no line named."""
    folder, rows = csv_dataset(tmp_path)
    (folder / "split.csv").write_text("path,label,split\n" + rows + " ,fractured,test\n")
    code, _, err = run_cli(capsys, "data", "check", folder / "split.csv")
    assert code == 1 and err.strip() == f"fracture-edge: error: {folder / 'split.csv'}:6: empty path"


def test_repeated_double_stars_search_each_folder_once(tmp_path, monkeypatch):
    """`**/**/**/**/*.png` on a tree 60 folders deep took 17 s (each `**` listed every folder below every folder
    the previous one matched: depth^4 listings); now every folder is listed a bounded number of times."""
    from fracture_edge.edge_runtime import paths

    deep = tmp_path / "deep"
    leaf = deep.joinpath(*(f"d{i}" for i in range(60)))
    leaf.mkdir(parents=True)
    save_image(leaf / "x.png")
    save_image(deep / "d0" / "y.png")
    listings = []
    real = os.scandir
    monkeypatch.setattr(paths.os, "scandir", lambda path: listings.append(path) or real(path))
    for pattern in ("**/*.png", "**/**/*.png", "**/**/**/**/*.png", "**/d30/**/*.png"):
        listings.clear()
        found, problems = paths.find_images([f"{deep}/{pattern}"], True, (".png",))
        expected = [str(leaf / "x.png")] + ([] if "d30" in pattern else [str(deep / "d0" / "y.png")])
        assert sorted(found) == sorted(expected) and not problems, pattern
        assert len(listings) <= 3 * 61 * pattern.count("**"), (pattern, len(listings))


def test_bench_survives_an_export_report_nested_absurdly_deep(tmp_path):
    from fracture_edge.benchmarks.bench import heatmap_summary

    (tmp_path / "export_report.json").write_text("[" * 200_000 + "]" * 200_000)
    assert heatmap_summary(tmp_path) is None
