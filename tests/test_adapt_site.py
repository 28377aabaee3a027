"""The site-adaptation simulation (experiments/site_adaptation.py) on a synthetic two-region dataset and the fixtures."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures" / "adapt_models"


def write_regions(root: Path) -> Path:
    """split.csv with a 'region' column and region flags: 'hand' (20 fractured / 40 not), 'leg', a 'mixed' hand."""
    rng = np.random.default_rng(0)
    rows = []
    for region, fractured, other in (("hand", 20, 40), ("leg", 8, 12), ("mixed", 1, 1)):
        for i in range(fractured + other):
            label = "fractured" if i < fractured else "not_fractured"
            name = f"images/{region}_{i}.png"
            gray = rng.normal(150 if label == "fractured" else 100, 40, (40, 36))
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).save(root / name)
            rows.append({"path": name, "split": "train", "label": label, "region": region,
                         "hand": "1" if region in ("hand", "mixed") else "0", "leg": "1" if region == "leg" else "0"})
    with open(root / "split.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_split_leaves_the_region_and_its_flagged_images_out(tmp_path):
    from fracture_edge.experiments.site_adaptation import write_site_split
    from fracture_edge.edge_runtime.dataset import read_dataset

    data = write_regions(tmp_path / "data")
    counts = write_site_split(data, "hand", tmp_path / "site")
    assert counts["holdout"] == {"images": 20, "fractured": 8} and counts["region_rows"] == {"images": 60, "fractured": 20}
    assert counts["flagged_elsewhere"]["images"] == 2
    assert write_site_split(data, "hand", tmp_path / "kept", keep_flagged=True)["holdout"]["images"] == 22
    holdout, region = read_dataset(tmp_path / "site" / "holdout.csv"), read_dataset(tmp_path / "site" / "region.csv")
    assert all(s.meta["region"] == "leg" and s.path.is_file() for s in holdout)
    assert all(s.meta["region"] == "hand" and s.path.is_file() for s in region)
    with pytest.raises(ValueError, match="valid: hand, leg, mixed"):
        write_site_split(data, "skull", tmp_path / "x")


def test_draws_keep_ten_per_class_and_differ_by_seed():
    from fracture_edge.experiments.site_adaptation import draw_indices

    targets = np.r_[np.ones(350), np.zeros(825)].astype(np.int64)
    for n in (25, 50, 100):
        chosen = draw_indices(targets, n, 0)
        assert chosen.size == n == np.unique(chosen).size and targets[chosen].sum() >= 10 and (1 - targets[chosen]).sum() >= 10
    assert not np.array_equal(draw_indices(targets, 25, 0), draw_indices(targets, 25, 1))
    with pytest.raises(ValueError, match="too few"):
        draw_indices(targets[345:], 25, 0)


def test_simulation_writes_json_markdown_and_plot(tmp_path):
    from fracture_edge.experiments.site_adaptation import main

    data = write_regions(tmp_path / "data")
    assert main(["split", "--data", str(data), "--out-dir", str(tmp_path / "site")]) == 0
    out = tmp_path / "results"
    assert main(["run", str(FIXTURES), "--region-csv", str(tmp_path / "site" / "region.csv"), "--out", str(out),
                 "--sizes", "25,30", "--draws", "2", "--format", "tflite-fp32"]) == 0
    summary = json.loads((out / "site_adaptation.json").read_text())
    assert [(r["n"], r["draw"]) for r in summary["rows"]] == [(25, 0), (25, 1), (30, 0), (30, 1)]
    for row in summary["rows"]:
        assert row["rest"]["n"] == 60 - row["n"] and sum(row["counts"].values()) == row["n"]
        assert (Path(row["run"]) / "bundle.json").is_file()
    assert [r["n"] for r in summary["by_n"]] == [25, 30]
    assert "| 25 | 2 |" in (out / "site_adaptation.md").read_text()
    pytest.importorskip("matplotlib")
    assert (out / "site_adaptation.png").stat().st_size > 1000
    assert main(["run", str(FIXTURES), "--region-csv", str(tmp_path / "site" / "region.csv"), "--out", str(out)]) == 1
