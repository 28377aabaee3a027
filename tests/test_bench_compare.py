"""`fracture-edge bench RUN RUN ...` (issue 24): several run folders in one command, one model x format table
and one latency-vs-AUC plot. Built from constructed bench reports (no TensorFlow, no measuring), plus one
quick end-to-end run on two copies of the fixture run (LiteRT only)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.benchmarks import bench, compare, run_set, verdicts
from fracture_edge.benchmarks.compare import BenchedRun
from fracture_edge.benchmarks.results import AccuracyRow, BenchRow
from fracture_edge.benchmarks.run_set import RunPlan
from fracture_edge.edge_runtime.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
ENVIRONMENT = {"cpu": {"model": "Test CPU", "key_flags": ["avx2"]}, "cores_usable": 2, "cores_logical": 2,
               "memory_mb": 1024, "os": "Linux", "python": "3.11", "date": "today",
               "load_average": {"start": 0.1, "end": 0.3}}


def speed(label, p50, threads=2, batch=1, fmt=None, status="ok", size=8_000_000):
    latency = {"runs": 5, "p50_ms": p50, "p90_ms": p50, "mean_ms": p50, "std_ms": 0.0,
               "images_per_s": batch * 1000.0 / p50} if status == "ok" else None
    return BenchRow(label=label, format=fmt or label.split(" ")[0], status=status, threads=threads, batch=batch,
                    file_bytes=size, latency=latency, reason="" if status == "ok" else "not found").to_dict()


def scored(label, auc, ci=None, fmt=None):
    return AccuracyRow(label=label, format=fmt or label.split(" ")[0], status="ok",
                       summary={"auc": auc, "balanced": {"f1": 0.8}},
                       ci={"auc": {"value": auc, "ci_low": ci[0], "ci_high": ci[1]}} if ci else None).to_dict()


def bench_report(rows, accuracy, run_dir="/runs/x", failures=()):
    """A bench report with every key bench.md needs (report.REPORT_KEYS)."""
    return {"schema": "fracture-edge.bench/1", "environment": dict(ENVIRONMENT),
            "run": {"run_dir": run_dir, "data": "/data", "split": "test", "n_images": 6, "n_failed": 0,
                    "thresholds": {"balanced": 0.5, "screening": 0.3}, "input_size": 224, "formats": [],
                    "quick": False, "sample": 0, "command": "fracture-edge bench"},
            "model": {"macs": None, "macs_method": "test"}, "reference": None, "rows": rows, "accuracy": accuracy,
            "gates": {"failures": list(failures)}, "targets": [], "notes": [], "wall_s": 30.0}


def densenet_report():
    rows = [speed("keras (eager)", 400.0, fmt="keras"), speed("keras (tf.function)", 90.0, fmt="keras"),
            speed("tflite-fp32", 70.0, threads=1), speed("tflite-fp32", 60.0), speed("tflite-fp32", 200.0, batch=8),
            speed("tflite-fp32 (tflite-runtime)", 65.0, fmt="tflite-fp32"),
            speed("tflite-int8-dynamic", 28.4, size=7_970_000), speed("tflite-int8 (rejected)", 25.6, fmt="tflite-int8"),
            speed("tflite-fp16", None, status="missing")]
    accuracy = [scored("keras (tf.function)", 0.913, (0.882, 0.939), fmt="keras"), scored("tflite-fp32", 0.913),
                scored("tflite-fp32 (tflite-runtime)", 0.913, fmt="tflite-fp32"),
                scored("tflite-int8-dynamic", 0.912, (0.881, 0.939)),
                scored("tflite-int8 (rejected)", 0.914, fmt="tflite-int8")]
    return bench_report(rows, accuracy)


EXPORT = {"deploy": {"format": "tflite-int8-dynamic", "file": "model_int8_dynamic.tflite"},
          "rows": [{"format": "tflite-fp32", "status": "ok"}, {"format": "tflite-int8-dynamic", "status": "ok"},
                   {"format": "tflite-int8", "status": "gate failed", "error": "long words",
                    "gate": {"non_inferiority": {"auc": {"passed": True},
                                                 "balanced specificity": {"passed": False},
                                                 "screening specificity": {"passed": False}},
                             "noise_floor": {"balanced": {"passed": False}}}}]}
DENSE = RunPlan("fracatlas-320", "/runs/fracatlas-320", "DenseNet121", "densenet121", 320)
MOBILE = RunPlan("fracatlas-mobile", "/runs/fracatlas-mobile", "MobileNetV2-0.35", "mobilenetv2-0.35", 224)


def mobile_report():
    return bench_report([speed("tflite-fp32", 12.0), speed("tflite-int8-dynamic", 6.0)],
                        [scored("tflite-fp32", 0.881, (0.85, 0.91)), scored("tflite-int8-dynamic", 0.879)])


def two_runs():
    return [BenchedRun(DENSE, densenet_report(), EXPORT), BenchedRun(MOBILE, mobile_report(), None)]


def by_label(rows):
    return {r.label: r for r in rows}


def test_a_row_per_format_label_at_batch_1_with_the_most_threads():
    rows = by_label(compare.compare_rows(BenchedRun(DENSE, densenet_report(), EXPORT)))
    assert list(rows) == ["keras (eager)", "keras (tf.function)", "tflite-fp32", "tflite-fp32 (tflite-runtime)",
                          "tflite-int8-dynamic", "tflite-int8 (rejected)", "tflite-fp16"]
    fp32 = rows["tflite-fp32"]
    assert (fp32.p50_ms, fp32.threads, fp32.images_per_s) == (60.0, 2, pytest.approx(1000 / 60))
    assert rows["keras (eager)"].auc == 0.913                       # every Keras path: the tf.function pass
    assert rows["tflite-int8-dynamic"].auc_ci == {"value": 0.912, "ci_low": 0.881, "ci_high": 0.939}
    assert rows["tflite-fp16"].status == "missing" and rows["tflite-fp16"].p50_ms is None
    assert {r.model for r in rows.values()} == {"fracatlas-320 (DenseNet121, 320 px)"}


def test_verdicts_in_words():
    rows = by_label(compare.compare_rows(BenchedRun(DENSE, densenet_report(), EXPORT)))
    assert {label: r.verdict for label, r in rows.items()} == {
        "keras (eager)": "reference", "keras (tf.function)": "reference", "tflite-fp32": "pass",
        "tflite-fp32 (tflite-runtime)": "pass", "tflite-int8-dynamic": "pass: deploy",
        "tflite-int8 (rejected)": "rejected: specificity, and more flips than the dither", "tflite-fp16": "–"}


@pytest.mark.parametrize("row, words", [
    ({"error": "agreement 90 %; more"}, "agreement 90 %"),
    ({"error": "x" * 100}, "x" * 59 + "…"),
    ({"gate": {"non_inferiority": {"auc": {"passed": False}}}}, "AUC"),
    ({}, "no reason recorded"),
])
def test_short_reason(row, words):
    assert verdicts.short_reason(row) == words


def test_rejected_labels():
    assert verdicts.is_rejected_label("tflite-int8 (rejected, tflite-runtime)", "tflite-int8")
    assert not verdicts.is_rejected_label("tflite-int8 (tflite-runtime)", "tflite-int8")
    assert verdicts.verdict_words("tflite-int8 (rejected)", "tflite-int8", None) == "rejected"


def test_markdown_is_one_model_x_format_table_grouped_by_model():
    report = compare.compare_report(two_runs(), command="fracture-edge bench a b --data d", wall_s=65.0)
    text = compare.render_markdown(report)
    assert text.count("**Device**") == 1 and "Test CPU" in text
    assert "- **Images**: 6 of split `test` from `/data`" in text
    table = [line for line in text.splitlines() if line.startswith("| fracatlas")]
    models = [line.split(" | ")[0] for line in table]
    assert models == sorted(models, key=lambda m: "mobile" in m)                 # grouped, in the runs' order
    assert len(table) == 8 and "p50 ms (batch 1, 2 threads)" in text              # tflite-fp16 was not measured
    deploy = next(line for line in table if "| tflite-int8-dynamic |" in line and "DenseNet" in line)
    assert "0.912 (0.881-0.939)" in deploy and "**pass: deploy**" in deploy and "| 7.97 MB |" in deploy
    assert "| 60 |" in next(line for line in table if "| tflite-fp32 |" in line and "DenseNet" in line)
    assert "- **fracatlas-320: tflite-fp16** (missing): not found" in text
    assert "[fracatlas-320](fracatlas-320/bench.md)" in text and "[fracatlas-mobile](fracatlas-mobile/bench.md)" in text


def test_report_records_the_environment_once_and_each_run():
    report = compare.compare_report(two_runs(), command="cmd")
    assert report["schema"] == "fracture-edge.bench-compare/1" and "load_average" not in report["environment"]
    first = report["runs"][0]
    assert (first["name"], first["model"], first["backbone"], first["input_px"]) == \
        ("fracatlas-320", "DenseNet121", "densenet121", 320)
    assert first["load_average"] == {"start": 0.1, "end": 0.3} and first["wall_s"] == 30.0
    assert {r["run"] for r in report["rows"]} == {"fracatlas-320", "fracatlas-mobile"}
    json.dumps(report)


def test_plot_of_several_runs_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    report = compare.compare_report(two_runs())
    written = compare.write_compare(report, tmp_path)
    assert sorted(p.name for p in written) == ["bench.json", "bench.md", "latency_vs_auc.png"]
    assert (tmp_path / "latency_vs_auc.png").stat().st_size > 1000
    assert "![latency_vs_auc](latency_vs_auc.png)" in (tmp_path / "bench.md").read_text()


@pytest.mark.parametrize("folders, names", [
    (["a/run", "b/run"], ["a-run", "b-run"]),
    (["x/a/run", "y/a/run", "z/b"], ["a-run", "a-run-2", "b"]),
    (["runs/dense", "runs/mobile"], ["dense", "mobile"]),
])
def test_equal_folder_names_get_names_of_their_own(folders, names):
    assert run_set.unique_names([Path("/w") / f for f in folders]) == names


# ---- the command line -----------------------------------------------------------------------------------------

def make_runs(tmp_path: Path, *names: str) -> list[str]:
    runs = []
    for name in names:
        run = tmp_path / name
        run.mkdir(parents=True)
        shutil.copy(FIXTURES / "bundle.json", run / "bundle.json")
        runs.append(str(run))
    return runs


@pytest.fixture
def fake_bench(monkeypatch):
    """bench.run_bench returns a constructed report per run (the gate failures of runs named in `failing`)."""
    calls, failing = [], set()

    def run_bench(options, command=""):
        calls.append(options)
        name = Path(options.run).name
        return bench_report([speed("tflite-fp32", 10.0 + len(calls)), speed("tflite-int8", 5.0, status="failed")],
                            [scored("tflite-fp32", 0.9)], run_dir=options.run,
                            failures=[f"tflite-int8: gate ({name})"] if name in failing else [])

    monkeypatch.setattr(bench, "run_bench", run_bench)
    return calls, failing


def test_several_runs_default_out_beside_the_first(tmp_path, fake_bench, capsys):
    calls, _ = fake_bench
    runs = make_runs(tmp_path, "a/run", "b/run")
    assert main(["bench", *runs, "--data", str(tmp_path), "--no-plots", "--threads", "1"]) == 0
    out = tmp_path / "a" / "bench-compare"
    assert [Path(o.out) for o in calls] == [out / "a-run", out / "b-run"]
    assert {o.threads for o in calls} == {(1,)}                                  # the same options for each
    assert (out / "a-run" / "bench.json").is_file() and (out / "b-run" / "bench.md").is_file()
    report = json.loads((out / "bench.json").read_text())
    assert [r["run"] for r in report["rows"]] == ["a-run", "a-run", "b-run", "b-run"]
    assert "2 runs compared" in capsys.readouterr().out


def test_out_overrides_the_default(tmp_path, fake_bench):
    runs = make_runs(tmp_path, "dense", "mobile")
    assert main(["bench", *runs, "--data", str(tmp_path), "--no-plots", "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "bench.md").is_file() and (tmp_path / "cmp" / "mobile" / "bench.json").is_file()


@pytest.mark.parametrize("layout, expected", [
    (lambda runs, tmp: [runs[0], runs[0] + "/../run"], ["the same run folder as"]),
    (lambda runs, tmp: [runs[0], str(tmp / "nowhere")], ["no such run folder"]),
    (lambda runs, tmp: [str(tmp / "nowhere"), str(tmp / "empty"), runs[0]], ["no such run folder", "no bundle.json"]),
])
def test_bad_run_folders_are_one_line_each_before_any_measuring(tmp_path, fake_bench, capsys, layout, expected):
    calls, _ = fake_bench
    (tmp_path / "empty").mkdir()
    argv = layout(make_runs(tmp_path, "run"), tmp_path)
    assert main(["bench", *argv, "--data", str(tmp_path), "--no-plots"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(expected) and all(line.startswith("fracture-edge: error: ") for line in err)
    assert all(words in line for words, line in zip(expected, err)) and "Traceback" not in "".join(err)
    assert calls == []


@pytest.mark.parametrize("gate, failing, code", [(True, {"b"}, 3), (True, set(), 0), (False, {"a", "b"}, 0)])
def test_gate_fails_when_any_run_fails(tmp_path, fake_bench, capsys, gate, failing, code):
    fake_bench[1].update(failing)
    runs = make_runs(tmp_path, "a", "b")
    assert main(["bench", *runs, "--data", str(tmp_path), "--no-plots", *(["--gate"] if gate else [])]) == code
    if code == 3:
        assert "b: tflite-int8: gate (b)" in capsys.readouterr().err


def test_no_row_of_any_run_measured_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "run_bench", lambda options, command="": bench_report(
        [speed("tflite-fp32", None, status="missing")], [], run_dir=options.run))
    runs = make_runs(tmp_path, "a", "b")
    assert main(["bench", *runs, "--data", str(tmp_path), "--no-plots"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no row of any run was measured" in err[0]


def test_two_copies_of_the_fixture_run_benched_in_one_command(tmp_path, capsys):
    """End to end, TF-free: the same fixture run under two names, one quick bench, one combined table."""
    pytest.importorskip("ai_edge_litert")
    data = tmp_path / "data"
    for label, level in (("fractured", 220), ("not_fractured", 30)):
        (data / "test" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((40, 36), level + i, np.uint8)).save(data / "test" / label / f"{i}.png")
    for name in ("dense", "mobile"):
        shutil.copytree(FIXTURES, tmp_path / "runs" / name)
    code = main(["bench", str(tmp_path / "runs" / "dense"), str(tmp_path / "runs" / "mobile"), "--data", str(data),
                 "--formats", "tflite-fp32,tflite-int8", "--quick", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "runs" / "bench-compare"
    report = json.loads((out / "bench.json").read_text())
    measured = {(r["run"], r["label"]) for r in report["rows"] if r["status"] == "ok" and r["p50_ms"]}
    assert measured == {(run, fmt) for run in ("dense", "mobile") for fmt in ("tflite-fp32", "tflite-int8")}
    for name in ("dense", "mobile"):
        assert json.loads((out / name / "bench.json").read_text())["run"]["run_dir"].endswith(name)
    text = (out / "bench.md").read_text()
    assert "| dense (" in text and "| mobile (" in text
    if (out / "latency_vs_auc.png").exists():
        assert "latency_vs_auc.png" in report["plots"]
