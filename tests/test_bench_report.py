"""The bench report: schema, failed rows kept with their reasons, targets, gates, plots."""
import json

import numpy as np
import pytest

from fracture_edge.benchmarks import gating, report, results, targets
from fracture_edge.benchmarks.runner import Job, Skipped

LABELS = np.array([1, 1, 0, 0, 1, 0])
THRESHOLDS = {"balanced": 0.5, "screening": 0.3}


def ok_row(label, p50, fmt=None, threads=2, batch=1, size=4_000_000):
    samples = [p50 * 0.9, p50, p50, p50 * 1.1, p50 * 1.2]
    return results.BenchRow(label=label, format=fmt or label, status="ok", runtime="ai-edge-litert 2.3.0",
                            threads=threads, batch=batch, file="m", file_bytes=size, load_ms=20.0, first_ms=p50 * 2,
                            latency={**_latency(samples), "p50_ms": p50}, peak_rss_mb=80.0,
                            samples_ms=samples).to_dict()


def _latency(samples):
    from fracture_edge.benchmarks.stats import latency_summary
    return latency_summary(samples)


def accuracy_row(label, probs, fmt=None):
    row = results._accuracy_row(Job(label, fmt or label, "classifier", __file__, 2, 1, accuracy=True),
                                {"accuracy": {"status": "ok", "probs": probs, "seconds": 1.0},
                                 "measurements": [{"runtime": "x"}]}, LABELS, THRESHOLDS)
    return row


def make_report(rows, accuracy, **run):
    rep = {
        "schema": report.SCHEMA,
        "environment": {"cpu": {"model": "Test CPU", "key_flags": ["avx2"]}, "cores_usable": 2,
                        "cores_logical": 2, "memory_mb": 1024, "os": "Linux", "python": "3.11", "date": "today"},
        "run": {"run_dir": "/runs/demo", "data": "/data", "split": "test", "n_images": 6, "n_failed": 1,
                "thresholds": THRESHOLDS, "input_size": 224, "formats": ["tflite-fp32", "tflite-int8"],
                "quick": False, "sample": 0, **run},
        "model": {"macs": 2_850_000_000, "macs_method": "test"},
        "reference": "tflite-fp32",
        "rows": rows, "accuracy": accuracy, "gates": {"failures": []}, "notes": ["a note"], "wall_s": 12.0,
    }
    rep["targets"] = [t.to_dict() for t in targets.evaluate_targets(rep)]
    return rep


def sample_report():
    failed = results.BenchRow(label="onnx-int8", format="onnx-int8", status="failed",
                              reason="worker crashed (signal 11); last output: boom").to_dict()
    missing = results.skipped_row(Skipped("tflite-fp16", "tflite-fp16", "missing", "model_fp16.tflite not found"))
    rows = [ok_row("tflite-fp32", 40.0, size=32_000_000), ok_row("tflite-int8", 30.0, size=7_000_000),
            missing.to_dict(), failed]
    acc = results.with_reference([accuracy_row("tflite-fp32", [0.9, 0.6, 0.2, 0.4, 0.7, 0.1]),
                                  accuracy_row("tflite-int8", [0.8, 0.6, 0.3, 0.6, 0.7, 0.1]),
                                  results.AccuracyRow("onnx-int8", "onnx-int8", "failed", "worker crashed")],
                                 LABELS, THRESHOLDS)
    return make_report(rows, [a.to_dict() for a in acc])


def test_report_writes_json_and_markdown_with_every_row(tmp_path):
    rep = sample_report()
    paths = report.write_report(rep, tmp_path)
    assert sorted(p.name for p in paths) == ["bench.json", "bench.md"]
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["schema"] == report.SCHEMA
    assert [r["label"] for r in data["rows"]] == ["tflite-fp32", "tflite-int8", "tflite-fp16", "onnx-int8"]
    assert {r["label"]: r["status"] for r in data["rows"]}["onnx-int8"] == "failed"
    md = (tmp_path / "bench.md").read_text()
    assert "worker crashed (signal 11)" in md
    assert "model_fp16.tflite not found" in md
    assert "| tflite-fp16 |" in md and "| onnx-int8 |" in md
    assert "Test CPU" in md


@pytest.mark.parametrize("drop", report.REPORT_KEYS)
def test_report_missing_top_level_key_is_rejected(drop):
    rep = sample_report()
    del rep[drop]
    with pytest.raises(ValueError, match=drop):
        report.validate_report(rep)


def test_report_row_missing_key_is_rejected():
    rep = sample_report()
    del rep["rows"][1]["latency"]
    with pytest.raises(ValueError, match="tflite-int8"):
        report.validate_report(rep)


def test_reference_comparison_in_accuracy_rows():
    rows = {r["label"]: r for r in sample_report()["accuracy"]}
    int8 = rows["tflite-int8"]
    assert int8["reference"] == "tflite-fp32"
    # decisions at 0.5: fp32 T T F F T F, int8 T T F T T F -> 5 of 6 agree
    assert int8["vs_reference"]["agreement"] == pytest.approx(5 / 6)
    assert int8["vs_reference"]["delta_f1"] == pytest.approx(6 / 7 - 1.0)
    assert rows["onnx-int8"]["status"] == "failed" and rows["onnx-int8"]["reason"] == "worker crashed"


def test_reference_prefers_keras_over_tflite():
    acc = [accuracy_row("tflite-fp32", [0.9] * 6), accuracy_row("keras (tf.function)", [0.1] * 6, fmt="keras")]
    assert results.pick_reference(acc).label == "keras (tf.function)"


@pytest.mark.parametrize("target_key, measured, met, word", [
    ("int8_p50", 30.0, True, "met by 5 ms"),
    ("int8_p50", 42.0, False, "missed by 7 ms"),
    ("int8_vs_keras", 3.0, True, "met by 0.5 x"),
    ("int8_size", 3.0, False, "missed by 1 x"),
])
def test_target_verdict_says_by_how_much(target_key, measured, met, word):
    target = next(t for t in targets.TARGETS if t.key == target_key)
    result = targets.judge(target, measured)
    assert result.met is met
    assert result.verdict.startswith(word)


def test_targets_from_a_report():
    by_key = {t["key"]: t for t in sample_report()["targets"]}
    assert by_key["int8_p50"]["measured"] == pytest.approx(30.0) and by_key["int8_p50"]["met"]
    assert by_key["int8_size"]["measured"] == pytest.approx(32 / 7)
    assert by_key["int8_vs_keras"]["met"] is None        # no keras rows
    assert by_key["int8_delta_f1"]["met"] is None        # reference is not keras
    assert by_key["bench_wall"]["met"] is None           # subset of formats


def test_failed_worker_keeps_its_row_and_reason():
    job = Job("tflite-int8", "tflite-int8", "classifier", __file__, 2, 1)
    row = results.speed_row(job, {"worker_failed": True, "reason": "timed out after 900 s", "measurements": []}, None)
    assert (row.status, row.reason, row.threads) == ("failed", "timed out after 900 s", 2)


def test_gate_checks_only_compressed_formats():
    rep = sample_report()
    rows = {r["label"]: r for r in rep["accuracy"]}
    reference = rows["tflite-fp32"]
    assert gating.check_row(reference, reference, LABELS, THRESHOLDS) is None
    gate = gating.check_row(rows["tflite-int8"], reference, LABELS, THRESHOLDS)
    assert gate["checked"] and gate["passed"] is False      # 5/6 agreement < the int8 minimum
    rows["tflite-int8"]["gate"] = gate
    assert gating.gate_failures(list(rows.values()))[0].startswith("tflite-int8: ")


def test_plots_are_written_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    from fracture_edge.benchmarks import plots

    written = plots.write_plots(sample_report(), tmp_path)
    assert sorted(p.name for p in written) == ["latency_distribution.png", "latency_vs_auc.png", "latency_vs_f1.png", "roc.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_latency_vs_auc_points_read_each_format_auc():
    from fracture_edge.benchmarks import plots

    report = sample_report()
    aucs = {r["label"]: r["summary"]["auc"] for r in report["accuracy"] if r["status"] == "ok"}
    points = plots.pareto_points(report, plots.AUC_METRIC)
    assert points and all(auc == aucs[label] for label, _, auc in points if label in aucs)
    f1 = dict((label, y) for label, _, y in plots.pareto_points(report))
    assert any(f1[label] != auc for label, _, auc in points)     # a different axis, not the F1 again


def test_pareto_labels_neither_overlap_nor_leave_the_axes():
    """The FracAtlas case: fp32 TFLite and ONNX at the same F1 and nearly the same latency, keras (eager) far right."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from fracture_edge.benchmarks import plots

    points = [("tflite-fp32", 61.2, 0.6425), ("onnx-fp32", 65.9, 0.6425), ("keras (tf.function)", 87.2, 0.6425),
              ("keras (predict)", 164.2, 0.6425), ("keras (eager)", 411.3, 0.6425), ("tflite-fp16", 70.9, 0.6495),
              ("tflite-int8 (rejected)", 23.3, 0.6432), ("onnx-int8 (rejected)", 30.5, 0.6439)]
    report = {"accuracy": [{"label": label, "status": "ok", "summary": {"balanced": {"f1": f1}}}
                           for label, _, f1 in points if not label.startswith("keras")]
                          + [{"label": "keras (tf.function)", "status": "ok", "summary": {"balanced": {"f1": 0.6425}}}],
              "rows": [{"label": label, "format": "keras" if label.startswith("keras") else label, "status": "ok",
                        "batch": 1, "threads": 2, "latency": {"p50_ms": p50}} for label, p50, _ in points]}
    fig = plots.plot_pareto(report, plt)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = {t.get_text(): Text.get_window_extent(t, renderer) for t in ax.texts}
    assert set(boxes) == {label for label, _, _ in points}
    inside = ax.get_window_extent(renderer)
    for name, box in boxes.items():
        assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), name
        assert not [other for other, b in boxes.items() if other != name and b.overlaps(box)], name
    plt.close(fig)


def test_plan_adds_tflite_runtime_rows_and_skips_keras_without_tensorflow(tmp_path, monkeypatch):
    from fracture_edge.benchmarks import runner
    from fracture_edge.benchmarks.options import BenchOptions

    for name in ("model.keras", "model_fp32.tflite", "model_int8.onnx"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setattr(runner, "extra_tflite_runtimes", lambda: ("tflite-runtime",))
    options = BenchOptions(run=str(tmp_path), data=".", threads=(1, 2), batches=(1,))
    jobs, skipped = runner.plan_jobs(options, tmp_path, have_tf=False)
    assert sorted({j.label for j in jobs}) == ["onnx-int8", "tflite-fp32", "tflite-fp32 (tflite-runtime)"]
    assert len(jobs) == 3 * 2
    assert [j.threads for j in jobs if j.accuracy] == [2, 2, 2]          # one accuracy pass per row name
    assert {s.label: s.status for s in skipped} == {
        "keras (eager)": "skipped", "keras (predict)": "skipped", "keras (tf.function)": "skipped",
        "tflite-fp16": "missing", "tflite-int8-dynamic": "missing", "tflite-int8": "missing", "onnx-fp32": "missing"}


def test_plan_has_three_keras_paths_with_tensorflow(tmp_path):
    from fracture_edge.benchmarks import runner
    from fracture_edge.benchmarks.options import BenchOptions

    (tmp_path / "model.keras").write_bytes(b"x")
    options = BenchOptions(run=str(tmp_path), data=".", formats=("keras",), threads=(2,), batches=(1, 8))
    jobs, _ = runner.plan_jobs(options, tmp_path, have_tf=True)
    assert [(j.keras_mode, j.batch) for j in jobs] == [(m, b) for m in ("eager", "predict", "tf.function") for b in (1, 8)]
    assert [(j.keras_mode, j.batch) for j in jobs if j.accuracy] == [("tf.function", 1)]


def test_artifact_rejected_by_export_says_so(tmp_path):
    from fracture_edge.benchmarks import runner
    from fracture_edge.benchmarks.options import BenchOptions

    (tmp_path / "rejected").mkdir()
    (tmp_path / "rejected" / "model_int8.onnx").write_bytes(b"x")
    options = BenchOptions(run=str(tmp_path), data=".", formats=("onnx-int8",))
    _, skipped = runner.plan_jobs(options, tmp_path, have_tf=False)
    assert skipped[0].status == "missing" and "rejected by the export fidelity verdict" in skipped[0].reason


def test_include_rejected_measures_the_quarantined_artifact(tmp_path):
    from fracture_edge.benchmarks import runner
    from fracture_edge.benchmarks.options import BenchOptions

    (tmp_path / "rejected").mkdir()
    (tmp_path / "rejected" / "model_int8.onnx").write_bytes(b"x")
    options = BenchOptions(run=str(tmp_path), data=".", formats=("onnx-int8",), threads=(2,),
                           include_rejected=True)
    jobs, skipped = runner.plan_jobs(options, tmp_path, have_tf=False)
    assert not skipped
    assert [(j.label, j.rejected, j.artifact) for j in jobs] == [
        ("onnx-int8 (rejected)", True, str(tmp_path / "rejected" / "model_int8.onnx"))]


@pytest.mark.parametrize("gate_flag, failures, expected_code", [
    (True, ["tflite-int8: agreement at balanced 83.33% < 98%"], 3),
    (True, [], 0),
    (False, ["tflite-int8: agreement at balanced 83.33% < 98%"], 0),
])
def test_gate_flag_sets_the_exit_code(monkeypatch, tmp_path, gate_flag, failures, expected_code):
    from fracture_edge.benchmarks import bench
    from fracture_edge.edge_runtime.cli import main

    rep = sample_report()
    rep["gates"]["failures"] = failures
    monkeypatch.setattr(bench, "run_bench", lambda options, command="": rep)
    argv = ["bench", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--no-plots"]
    assert main(argv + (["--gate"] if gate_flag else [])) == expected_code
    assert (tmp_path / "out" / "bench.json").is_file()


def test_int8_targets_fall_back_to_the_rejected_row_and_say_so():
    from fracture_edge.benchmarks import targets

    rows = [{"label": "tflite-int8 (rejected)", "status": "ok"}, {"label": "tflite-fp32", "status": "ok"}]
    assert targets.int8_label(rows) == "tflite-int8 (rejected)"
    assert targets.int8_label(rows + [{"label": "tflite-int8", "status": "ok"}]) == "tflite-int8"
    assert targets.int8_label([{"label": "tflite-fp32", "status": "ok"}]) == "tflite-int8"


def test_dynamic_targets_are_judged_on_the_rejected_row_and_say_so():
    from fracture_edge.benchmarks import targets

    def row(label, p50, size):
        return {"label": label, "status": "ok", "threads": 2, "batch": 1, "latency": {"p50_ms": p50}, "file_bytes": size}

    report = {"rows": [row("tflite-fp32", 100.0, 28_000_000), row("tflite-int8-dynamic (rejected)", 40.0, 7_500_000)],
              "accuracy": [], "run": {"input_size": 320, "formats": ["tflite-fp32", "tflite-int8-dynamic"]}, "wall_s": 1.0}
    results = {r.key: r for r in targets.evaluate_targets(report)}
    assert results["dynamic_vs_fp32"].measured == 0.4 and results["dynamic_vs_fp32"].met
    assert "rejected" in results["dynamic_vs_fp32"].verdict
    assert results["dynamic_size"].measured == 7.5 and results["dynamic_size"].met
    report["rows"].append(row("tflite-int8-dynamic", 60.0, 7_400_000))
    results = {r.key: r for r in targets.evaluate_targets(report)}
    assert results["dynamic_vs_fp32"].measured == 0.6 and not results["dynamic_vs_fp32"].met
    assert "rejected" not in results["dynamic_vs_fp32"].verdict
