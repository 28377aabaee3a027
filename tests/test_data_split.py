"""Leak-free split: duplicate groups stay in one split, classes are stratified, the seed decides, bad files skipped."""
from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime.cli import main

PER_CLASS = 30
VAL, TEST = 0.2, 0.2
COPIES = {  # copy -> original, both in the class/image layout (no split folders)
    "fractured/dup_a.png": "fractured/f000.png",
    "fractured/turned_b.png": "fractured/f001.png",
    "not_fractured/flip_c.png": "not_fractured/n005.png",
    "not_fractured/dup_c.png": "not_fractured/n005.png",
}


def save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, synthetic_xray):
    root = tmp_path_factory.mktemp("split_data")
    for k in range(PER_CLASS):
        save(synthetic_xray(k), root / "fractured" / f"f{k:03d}.png")
        save(synthetic_xray(1000 + k), root / "not_fractured" / f"n{k:03d}.png")
    load = lambda rel: np.asarray(Image.open(root / rel))  # noqa: E731
    save(load("fractured/f000.png"), root / "fractured/dup_a.png")
    save(np.rot90(load("fractured/f001.png")).copy(), root / "fractured/turned_b.png")
    save(load("not_fractured/n005.png")[:, ::-1].copy(), root / "not_fractured/flip_c.png")
    save(load("not_fractured/n005.png"), root / "not_fractured/dup_c.png")
    (root / "fractured/junk.png").write_text("not an image")
    return root


def run_split(source: Path, out: Path, seed: int = 0) -> list[dict]:
    argv = ["data", "split", str(source), "--out", str(out), "--val", str(VAL), "--test", str(TEST), "--seed", str(seed)]
    assert main(argv) == 0
    with open(out, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("split_out") / "split.csv"  # outside the dataset: a split.csv inside wins
    run_split(dataset, out)
    return out


@pytest.fixture(scope="module")
def rows(split_csv):
    with open(split_csv, newline="") as fh:
        return list(csv.DictReader(fh))


def by_image(rows: list[dict], csv_path: Path) -> dict[Path, str]:
    return {(csv_path.parent / r["path"]).resolve(): r["split"] for r in rows}


def test_columns_and_relative_paths(split_csv, rows):
    assert list(rows[0]) == ["path", "label", "split", "group"]
    assert all(not Path(r["path"]).is_absolute() and (split_csv.parent / r["path"]).is_file() for r in rows)


def test_bad_file_is_skipped_and_reported(dataset, tmp_path, capsys):
    rows = run_split(dataset, tmp_path / "again.csv")
    assert dataset / "fractured/junk.png" not in by_image(rows, tmp_path / "again.csv")
    assert len(rows) == 2 * PER_CLASS + len(COPIES)
    assert "skipped" in capsys.readouterr().out


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_copies_share_group_and_split(dataset, split_csv, rows, copy):
    by_path = {(split_csv.parent / r["path"]).resolve(): r for r in rows}
    a, b = by_path[dataset / copy], by_path[dataset / COPIES[copy]]
    assert (a["group"], a["split"]) == (b["group"], b["split"])


def test_groups_never_cross_splits(rows):
    splits = defaultdict(set)
    for r in rows:
        splits[r["group"]].add(r["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert len(splits) == 2 * PER_CLASS  # every copy joined its original's group


@pytest.mark.parametrize("label", ["fractured", "not_fractured"])
def test_stratified_by_class(rows, label):
    mine = [r for r in rows if r["label"] == label]
    counts = Counter(r["split"] for r in mine)
    for split, share in (("train", 1 - VAL - TEST), ("val", VAL), ("test", TEST)):
        assert abs(counts[split] - share * len(mine)) <= 3  # largest group holds 3 images


def test_same_seed_same_split_other_seed_differs(dataset, split_csv, rows, tmp_path):
    first = by_image(rows, split_csv)
    same = run_split(dataset, tmp_path / "same.csv", seed=0)
    other = run_split(dataset, tmp_path / "other.csv", seed=1)
    assert by_image(same, tmp_path / "same.csv") == first
    assert by_image(other, tmp_path / "other.csv") != first


def test_split_csv_can_be_checked_again(split_csv, capsys):
    assert main(["data", "check", str(split_csv), "--strict"]) == 0
    assert "leaks (val/test images with a copy in train): 0" in capsys.readouterr().out


def test_missing_class_is_an_error_for_split(tmp_path, synthetic_xray, capsys):
    for k in range(3):
        save(synthetic_xray(k), tmp_path / "fractured" / f"{k}.png")
    (tmp_path / "not_fractured").mkdir()
    assert main(["data", "split", str(tmp_path), "--out", str(tmp_path / "s.csv")]) == 1
    assert "not_fractured" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("val, test", [(0.6, 0.5), (-0.1, 0.2), (1.0, 0.0)])
def test_bad_fractions_are_rejected(dataset, tmp_path, capsys, val, test):
    argv = ["data", "split", str(dataset), "--out", str(tmp_path / "s.csv"), "--val", str(val), "--test", str(test)]
    assert main(argv) == 1
    assert "--val and --test" in capsys.readouterr().err
