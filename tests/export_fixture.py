"""One tiny trained run and one tiny export of it, shared by the export tests (tests/conftest.py's session
fixtures `tiny_run` and `tiny_export`).

A 64-px DenseNet121 (random init, two training steps on synthetic radiographs: at 64 px the heatmap is a 2x2 map, which
the heatmap tests need), every default format exported once through the real pipeline, with a boxes.csv in
the data so the heatmap pointing game runs. Margins of 0.3 need 10 images per class, so the 48 verification
images can pass a compressed artifact (the defaults need 100). Tests that need other options export a copy.
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = 64
DATA_SPEC = dict(train=80, val=24, test=24, image_size=80)   # train.synthetic.SyntheticSpec (80: the site model needs 20 held out)
CALIB_IMAGES = 16
# The held-out training images the dynamic-range export measures each layer's error on (one model run per
# layer, ~120 layers): 8 instead of the 32 left beside the calibration images halves its time here.
SELECTION_IMAGES = 8
# Two steps, as the heatmap test's own model had: its int8 features then correlate 0.945 with Keras' on noise
# images (the test needs > 0.9); six steps (2 epochs of 16) gave 0.875, measured on this data.
TRAIN_STEPS = 2


@dataclass(frozen=True)
class TinyRun:
    """The shared trained run (model.keras + bundle.json, never exported into) and its data."""

    run: Path
    data: Path
    boxed: int             # fractured test images with a box in DATA/boxes.csv


@dataclass(frozen=True)
class TinyExport:
    """The shared export: the run folder, its rows and report context, the options, the data and its boxes."""

    run: Path
    rows: list
    context: dict
    opts: object           # export.options.ExportOptions
    data: Path
    boxed: int             # fractured test images with a box in DATA/boxes.csv


def train_tiny_run(run_dir: Path, data_dir: Path, size: int = SIZE) -> None:
    """model.keras + bundle.json after TRAIN_STEPS optimizer steps on the synthetic training split; thresholds
    from val."""
    import keras

    from fracture_edge.edge_runtime.bundle import SCHEMA_VERSION, artifact_record, save_bundle
    from fracture_edge.edge_runtime.dataset import LABELS, POSITIVE
    from fracture_edge.edge_runtime.metrics import choose_thresholds
    from fracture_edge.edge_runtime.preprocessing import InputContract
    from fracture_edge.export.calibration import verification_set
    from fracture_edge.train.model import build_model

    keras.utils.set_random_seed(0)
    contract = InputContract(size=size)
    train = verification_set(data_dir, contract, ("train",))
    model = build_model(size, weights="none")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit(train.pixels.astype(np.float32), train.labels.astype(np.float32), epochs=1,
              batch_size=-(-len(train) // TRAIN_STEPS), verbose=0)
    model.save(run_dir / "model.keras")
    val = verification_set(data_dir, contract, ("val",))
    thresholds = choose_thresholds(val.labels, model.predict(val.pixels.astype(np.float32), verbose=0).ravel())
    save_bundle(run_dir, {
        "schema_version": SCHEMA_VERSION, "labels": list(LABELS), "positive_label": POSITIVE,
        "output": {"kind": "sigmoid", "positive_index": 0},
        "thresholds": {**thresholds, "default": "balanced"}, "input": contract.to_dict(),
        "data": {"source": str(data_dir), "synthetic": True},
        "artifacts": {"keras": artifact_record(run_dir / "model.keras")}})


def write_boxes(data: Path) -> int:
    """A boxes.csv in FracAtlas' layout: one box (upper-left quarter) per fractured test image."""
    from PIL import Image

    rows = []
    for path in sorted((data / "test" / "fractured").iterdir()):
        with Image.open(path) as img:
            w, h = img.size
        rows.append([f"test/fractured/{path.name}", "test", 0, 0, w / 4, h / 4, w, h])
    with open(data / "boxes.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "split", "x0", "y0", "x1", "y1", "image_w", "image_h"])
        writer.writerows(rows)
    return len(rows)


def build_tiny_run(root: Path) -> TinyRun:
    """Draw the data (with its boxes.csv) and train the run."""
    from fracture_edge.train.synthetic import SyntheticSpec, write_synthetic_dataset

    data = write_synthetic_dataset(root / "data", SyntheticSpec(**DATA_SPEC))
    boxed = write_boxes(data)
    run = root / "run"
    run.mkdir()
    train_tiny_run(run, data)
    return TinyRun(run, data, boxed)


def build_tiny_export(root: Path, trained: TinyRun) -> TinyExport:
    """Export every default format of a copy of the trained run once and write its reports."""
    from fracture_edge.export.gates import VerdictRules
    from fracture_edge.export.options import ExportOptions
    from fracture_edge.export.pipeline import run_export
    from fracture_edge.export.report import write_reports

    run = copy_run(trained.run, root / "run")
    opts = ExportOptions(run_dir=run, calib_images=CALIB_IMAGES, selection_images=SELECTION_IMAGES,
                         android_assets=str(root / "assets"),
                         gates=VerdictRules(margin_sensitivity=0.3, margin_specificity=0.3))
    rows, context = run_export(opts)
    write_reports(run, rows, context)
    return TinyExport(run, rows, context, opts, trained.data, trained.boxed)


def copy_run(run: Path, dest: Path) -> Path:
    """A new run folder with the model and bundle.json only (its artifact records point at absent files)."""
    dest.mkdir()
    for name in ("model.keras", "bundle.json"):
        shutil.copy(run / name, dest / name)
    return dest
