"""The pointing-game geometry of export/heatmap_check.py (numpy only): boxes in stored-image pixels, the map
resized onto the decoded image exactly as the overlay draws it (the input is the whole image stretched)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image


def test_pointing_game_geometry_follows_the_stretch_fit():
    from fracture_edge.export.heatmap_check import peak_point, pearson, points_inside

    grid = np.zeros((10, 10))
    grid[2, 7] = 1.0                                   # row 2, column 7 of a 10x10 map
    x, y = peak_point(grid, (400, 300))                # a 300 wide, 400 high image, stretched to a square
    assert abs(x - 7.5 * 30) <= 16 and abs(y - 2.5 * 40) <= 21
    assert points_inside((x, y), [(200, 90, 240, 110)], margin=0)
    assert not points_inside((x, y), [(0, 0, 100, 50)], margin=15)
    assert points_inside((x, y), [(x + 10, y + 10, x + 40, y + 40)], margin=15)
    assert pearson(grid, grid * 3 + 1) == pytest.approx(1.0) and np.isnan(pearson(grid, np.zeros_like(grid)))


def test_boxes_are_matched_by_path_and_skipped_when_the_size_differs(tmp_path):
    from fracture_edge.export.heatmap_check import match_boxes

    (tmp_path / "test" / "fractured").mkdir(parents=True)
    for name, size in (("a.jpg", (100, 80)), ("b.jpg", (100, 80)), ("c.jpg", (100, 80))):
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(tmp_path / "test" / "fractured" / name)
    (tmp_path / "boxes.csv").write_text(
        "path,split,x0,y0,x1,y1,image_w,image_h\n"
        "test/fractured/a.jpg,test,1,2,3,4,100,80\ntest/fractured/a.jpg,test,5,6,7,8,100,80\n"
        "test/fractured/b.jpg,test,1,2,3,4,80,100\nval/fractured/z.jpg,val,1,2,3,4,100,80\n")
    paths = tuple(str(tmp_path / "test" / "fractured" / n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    matched, skipped = match_boxes(paths, tmp_path)
    assert matched == {0: ((80, 100), [(1, 2, 3, 4), (5, 6, 7, 8)])}
    assert skipped == {"size differs from boxes.csv": 1}
    shutil.rmtree(tmp_path / "test")
    assert match_boxes((), tmp_path / "nowhere") == ({}, {})


def test_bench_shows_the_pointing_game_the_export_measured(tmp_path):
    import json

    from fracture_edge.benchmarks.bench import heatmap_summary
    from fracture_edge.benchmarks.report import heatmap_lines

    assert heatmap_summary(tmp_path) is None and heatmap_lines(None) == []
    game = {"hit_rate": 0.5, "hits": 2, "images": 4, "margin_px": 15, "split": "test"}
    (tmp_path / "export_report.json").write_text(json.dumps({
        "date": "today", "heatmaps": {"keras": {"pointing_game": game, "center_baseline": {"hit_rate": 0.25}}},
        "rows": [{"format": "tflite-fp32", "facts": {"heatmap": {"pointing_game": game, "correlation_median": 1.0,
                                                                 "correlation_p5": 0.99}}},
                 {"format": "onnx-int8", "facts": {}}]}))
    text = "\n".join(heatmap_lines(heatmap_summary(tmp_path)))
    assert "| keras | 50.0% |" in text and "| tflite-fp32 | 50.0 % | 1.0000 / 0.9900 |" in text
    assert "onnx-int8" not in text and "chance) 25.0%" in text


def test_model_card_states_the_pointing_game(tmp_path):
    import json

    from fracture_edge.edge_runtime.model_card import _heatmap_section

    assert "Not measured" in _heatmap_section(tmp_path)[0]
    game = {"hit_rate": 0.263, "hits": 25, "images": 95, "margin_px": 15, "split": "test"}
    (tmp_path / "export_report.json").write_text(json.dumps({
        "heatmaps": {"keras": {"pointing_game": game, "center_baseline": {"hit_rate": 0.274}}},
        "rows": [{"format": "tflite-int8", "facts": {"heatmap": {"pointing_game": game, "correlation_median": 0.98,
                                                                 "correlation_p5": 0.92}}}]}))
    text = "\n".join(_heatmap_section(tmp_path))
    assert "| keras | 26.3% |" in text and "| tflite-int8 | 26.3% | 0.98 / 0.92 |" in text and "27.4%" in text


def test_model_card_survives_a_report_nested_too_deeply_to_parse(tmp_path):
    """A hostile or broken export_report.json is read as absent, never a traceback."""
    from fracture_edge.edge_runtime.model_card import _read_json

    (tmp_path / "export_report.json").write_text("[" * 100_000 + "]" * 100_000)
    assert _read_json(tmp_path / "export_report.json") is None
