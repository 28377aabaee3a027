"""Leakage check: exact copies (decoded pixels), near copies (re-encoding, 90° turns, flips, small rotations),
unreadable files, the report's JSON, --strict exit codes and CLI errors. Synthetic images, no TensorFlow."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime.cli import main
from fracture_edge.edge_runtime.dataset import read_dataset
from fracture_edge.train.data_check import check_samples
from fracture_edge.train.data_cli import LEAK_EXIT_CODE

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# name of the planted copy -> (name of the original, kind)
PLANTED = {
    "test/fractured/bytes_copy.png": ("train/fractured/img000.png", "exact"),
    "val/not_fractured/png_of_jpeg.png": ("train/not_fractured/img101.jpg", "exact"),
    "train/fractured/renamed.png": ("train/fractured/img002.png", "exact"),
    "test/not_fractured/jpeg_q95.jpg": ("train/not_fractured/img103.png", "near"),
    "val/fractured/turned90.png": ("train/fractured/img004.png", "near"),
    "test/fractured/flipped.png": ("train/fractured/img005.png", "near"),
    "test/not_fractured/rotated3.png": ("train/not_fractured/img106.png", "near"),
}
LEAKED = {"test": 4, "val": 2}


def save(image: np.ndarray, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, **kwargs)


def build_clean(root: Path, draw) -> None:
    """Distinct images in every split and class (seeds never repeat)."""
    seed = 0
    for split, per_class in (("train", 8), ("val", 3), ("test", 3)):
        for offset, label in ((0, "fractured"), (100, "not_fractured")):
            for k in range(per_class):
                name = f"img{offset + seed + k:03d}"
                suffix = ".jpg" if name in ("img101",) else ".png"
                save(draw(offset + seed + k), root / split / label / f"{name}{suffix}", quality=90)
        seed += per_class


def plant_copies(root: Path) -> None:
    """Copy some training images into val/test (and train) the ways leaks happen in practice."""
    def load(rel):
        return np.asarray(Image.open(root / rel))
    originals = {k: v[0] for k, v in PLANTED.items()}
    shutil.copyfile(root / originals["test/fractured/bytes_copy.png"], root / "test/fractured/bytes_copy.png")
    save(load(originals["val/not_fractured/png_of_jpeg.png"]), root / "val/not_fractured/png_of_jpeg.png")
    save(load(originals["train/fractured/renamed.png"]), root / "train/fractured/renamed.png", compress_level=1)
    save(load(originals["test/not_fractured/jpeg_q95.jpg"]), root / "test/not_fractured/jpeg_q95.jpg", quality=95)
    save(np.rot90(load(originals["val/fractured/turned90.png"])).copy(), root / "val/fractured/turned90.png")
    save(load(originals["test/fractured/flipped.png"])[:, ::-1].copy(), root / "test/fractured/flipped.png")
    rotated = Image.open(root / originals["test/not_fractured/rotated3.png"]).rotate(3, Image.BICUBIC, fillcolor=0)
    save(np.asarray(rotated), root / "test/not_fractured/rotated3.png")
    (root / "train/not_fractured/notes.png").write_text("this is not an image\n")


@pytest.fixture(scope="module")
def leaky(tmp_path_factory, synthetic_xray):
    root = tmp_path_factory.mktemp("leaky")
    build_clean(root, synthetic_xray)
    plant_copies(root)
    return root


@pytest.fixture(scope="module")
def leaky_report(leaky):
    return check_samples(read_dataset(leaky), show_progress=False)


def relative_pairs(report, root: Path, kind: str) -> set[frozenset[str]]:
    pairs = report.exact_pairs if kind == "exact" else report.near_pairs
    return {frozenset(report.samples[i].path.relative_to(root).as_posix() for i in (p.first, p.second))
            for p in pairs}


@pytest.mark.parametrize("copy", sorted(PLANTED))
def test_each_planted_copy_is_found_in_its_category(leaky, leaky_report, copy):
    original, kind = PLANTED[copy]
    assert frozenset((copy, original)) in relative_pairs(leaky_report, leaky, kind)


@pytest.mark.parametrize("kind", ["exact", "near"])
def test_distinct_images_are_not_flagged(leaky, leaky_report, kind):
    planted = {frozenset((copy, original)) for copy, (original, k) in PLANTED.items() if k == kind}
    assert relative_pairs(leaky_report, leaky, kind) == planted


def test_leaks_are_val_test_images_with_a_copy_in_train(leaky, leaky_report):
    assert leaky_report.leaks_by_split() == LEAKED
    assert leaky_report.leak_count == sum(LEAKED.values())
    leaked = {leaky_report.samples[leak.index].path.relative_to(leaky).as_posix() for leak in leaky_report.leaks}
    assert leaked == {c for c in PLANTED if not c.startswith("train/")}


def test_unreadable_file_is_reported_and_skipped(leaky, leaky_report):
    assert leaky_report.unreadable_paths == {leaky / "train/not_fractured/notes.png"}
    assert leaky_report.counts["train"]["not_fractured"] == 9  # counted, not dropped from the table


def test_json_report_schema(leaky, capsys):
    assert main(["data", "check", str(leaky), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"images", "counts", "unreadable", "exact_pairs", "near_pairs", "leaks", "examples",
                           "near_threshold", "min_similarity", "warnings"}
    assert report["exact_pairs"] == {"within_split": 1, "across_splits": 2}
    assert report["near_pairs"] == {"within_split": 0, "across_splits": 4}
    assert report["leaks"] == {"total": 6, **LEAKED}
    assert set(report["examples"][0]) == {"kind", "a", "split_a", "b", "split_b", "distance", "similarity"}
    assert report["unreadable"][0]["path"].endswith("notes.png")


@pytest.mark.parametrize("strict, expected", [(False, 0), (True, LEAK_EXIT_CODE)])
def test_strict_exit_code_with_leaks(leaky, capsys, strict, expected):
    assert main(["data", "check", str(leaky)] + (["--strict"] if strict else [])) == expected
    assert "leaks (val/test images with a copy in train): 6" in capsys.readouterr().out


def test_strict_passes_on_clean_data_with_an_unreadable_file(tmp_path, synthetic_xray, capsys):
    build_clean(tmp_path, synthetic_xray)
    (tmp_path / "test/fractured/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["data", "check", str(tmp_path), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "unreadable files: 1" in out and "broken.png" in out


def test_missing_class_is_a_warning_for_check(tmp_path, synthetic_xray, capsys):
    for k in range(3):
        save(synthetic_xray(k), tmp_path / "train/fractured" / f"{k}.png")
    (tmp_path / "train/not_fractured").mkdir()
    assert main(["data", "check", str(tmp_path)]) == 0
    assert "warning: split 'train' has no 'not_fractured' images" in capsys.readouterr().out


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_unusable_source_is_one_error_line(tmp_path, capsys, make):
    source = tmp_path / "nothing_here"
    if make == "empty":
        source.mkdir()
    assert main(["data", "check", str(source)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fracture-edge: error:") and "nothing_here" in err[0]


@pytest.mark.parametrize("threshold", [-1, 300])
def test_bad_near_threshold_is_rejected(leaky, capsys, threshold):
    assert main(["data", "check", str(leaky), "--near-threshold", str(threshold)]) == 1
    assert "near threshold" in capsys.readouterr().err


@pytest.mark.shared
def test_fracatlas_has_no_leaks():
    if not (SHARED / "data" / "fracatlas").is_dir():
        pytest.skip(f"{SHARED / 'data' / 'fracatlas'} not present")
    report = check_samples(read_dataset(SHARED / "data" / "fracatlas"), show_progress=False)
    assert report.leak_count == 0 and not report.exact_pairs and not report.unreadable
    assert len(report.near_pairs) <= 3


def test_cli_default_threshold_matches_library():
    from fracture_edge.train import data_cli, hashing
    assert data_cli.DEFAULT_NEAR_THRESHOLD == hashing.NEAR_THRESHOLD
