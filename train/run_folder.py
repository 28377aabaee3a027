"""Write a training run folder: model.keras, bundle.json, metrics.json, history.json and plots.

The folder is never half-made: a new (or empty) --out is claimed and built out of sight, then renamed into place
(atomic.claimed_folder), so a kill -9 or a full disk while it is written leaves --out as it was, and a second
train finishing into the same --out fails with one line instead of mixing its files with the first's. With
--overwrite into a folder that has files, the new files are all written beside it first and then moved in
(renames need no space), so the folder never holds a model.keras of one run with the bundle.json of another.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..edge_runtime import atomic
from ..edge_runtime.bundle import SCHEMA_VERSION, artifact_record, save_bundle
from ..edge_runtime.dataset import LABELS, POSITIVE
from ..edge_runtime.environment import module_versions, peak_rss_mb
from ..edge_runtime.formats import FORMATS
from ..edge_runtime.confidence import metric_cis
from ..edge_runtime.metrics import summarize
from ..edge_runtime.model_card import CARD_FILENAME, write_model_card
from ..edge_runtime.preprocessing import InputContract
from .backbones import get_backbone
from .options import TrainOptions
from .synthetic import SYNTHETIC_NOTE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    test: dict          # metrics on the test split at both thresholds
    thresholds: dict
    seconds: float
    peak_rss_mb: float


def versions() -> dict:
    return module_versions(("tensorflow", "keras", "numpy"))


def hardware_split_metrics(split, probs: np.ndarray, thresholds: dict) -> dict | None:
    """Metrics without the images that show orthopaedic hardware (a known shortcut), when flagged."""
    flags = [s.meta.get("hardware") for s in split.samples]
    if not any(f is not None for f in flags):
        return None
    keep = np.array([f not in ("1", "True", "true") for f in flags])
    return {"excluded_hardware_images": int((~keep).sum()),
            **summarize(split.targets[keep], probs[keep], thresholds)}


def compute_metrics(splits: dict, probs: dict, thresholds: dict) -> dict:
    out = {}
    for name in ("val", "test"):
        out[name] = summarize(splits[name].targets, probs[name], thresholds)
        out[name]["ci"] = metric_cis(splits[name].targets, probs[name], thresholds)
        no_hw = hardware_split_metrics(splits[name], probs[name], thresholds)
        if no_hw is not None:
            out[f"{name}_without_hardware"] = no_hw
    return out


def data_summary(opts: TrainOptions, splits: dict, data_report: dict) -> dict:
    return {
        "source": str(Path(opts.data).resolve()),
        "synthetic": opts.synthetic,
        **({"note": SYNTHETIC_NOTE} if opts.synthetic else {}),
        "splits": {name: {"images": len(s.targets), "fractured": int(s.targets.sum()),
                          "skipped_unreadable": len(s.failures)} for name, s in splits.items()},
        "check": data_report,
    }


def build_bundle(opts: TrainOptions, contract: InputContract, thresholds: dict, metrics: dict,
                 data: dict, model_path: Path, distillation: dict | None = None) -> dict:
    backbone = get_backbone(opts.backbone)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": backbone.model,
        "backbone": backbone.name,
        "labels": list(LABELS),
        "positive_label": POSITIVE,
        "output": {"kind": "sigmoid", "positive_index": 0,
                   "meaning": "one probability per image: P(fractured)"},
        "thresholds": {"balanced": thresholds["balanced"], "screening": thresholds["screening"],
                       "default": "balanced",
                       "screening_target_sensitivity": thresholds["screening_target_sensitivity"],
                       "chosen_on": "val"},
        "input": contract.to_dict(),
        "hparams": opts.to_dict(),
        **({"distillation": {**distillation, "alpha": opts.distill_alpha, "temperature": opts.distill_temperature}}
           if distillation else {}),
        "data": data,
        "metrics": metrics,
        "versions": versions(),
        "artifacts": {"keras": artifact_record(model_path)},
        "model_card": CARD_FILENAME,
    }


@contextlib.contextmanager
def building(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """The folder to write the run into: a claimed hidden build renamed onto `out` at the end when `out` is absent
    or empty (FolderClaimError at once when it has files, or another train is writing it, and not `overwrite`);
    with `overwrite` and files in `out`, a hidden folder beside it whose files are moved into `out` at the end.
    Nothing of a build that fails is left behind; an OSError names the file as it would be in `out`."""
    out = Path(out)
    if not (overwrite and atomic.out_taken(out)):
        with atomic.claimed_folder(out, "fracture-edge train") as build:
            yield build
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.train-", dir=out.parent))
    stage = holder / out.name                      # the same name as the run folder (the model card shows it)
    try:
        stage.mkdir()
        yield stage
        for item in sorted(stage.iterdir()):
            os.replace(item, out / item.name)
    except OSError as exc:
        raise _named_in(exc, stage, out) from None
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _named_in(exc: OSError, stage: Path, out: Path) -> OSError:
    """exc naming the file in `out` instead of in the hidden `stage` folder."""
    named, prefix = os.fspath(exc.filename) if exc.filename is not None else "", os.fspath(stage)
    if not (named == prefix or named.startswith(prefix + os.sep)):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(out) + named[len(prefix):])


def write_run_folder(out: Path, model, opts: TrainOptions, contract: InputContract, splits: dict, probs: dict,
                     thresholds: dict, history: dict, data_report: dict, seconds: float,
                     distillation: dict | None = None) -> RunSummary:
    """Write every file of the run folder `out` (out of sight, see building()); the summary names `out`.
    `distillation`: the teacher record (train/distill.py) of a distilled run."""
    out = Path(out)
    with building(out, opts.overwrite) as folder:
        summary = _write_files(folder, model, opts, contract, splits, probs, thresholds, history, data_report, seconds,
                               distillation)
    log.info("run folder written: %s", out)
    return RunSummary(out, summary.test, summary.thresholds, summary.seconds, summary.peak_rss_mb)


def _write_files(out: Path, model, opts: TrainOptions, contract: InputContract, splits: dict, probs: dict,
                 thresholds: dict, history: dict, data_report: dict, seconds: float,
                 distillation: dict | None) -> RunSummary:
    model_path = out / FORMATS["keras"].filename
    with atomic.atomic_path(model_path) as tmp:
        model.save(tmp)
    metrics = compute_metrics(splits, probs, thresholds)
    summary = RunSummary(out, metrics["test"], thresholds, seconds, peak_rss_mb())
    metrics["train_seconds"] = round(seconds, 1)
    metrics["peak_rss_mb"] = round(summary.peak_rss_mb, 1)
    data = data_summary(opts, splits, data_report)
    save_bundle(out, build_bundle(opts, contract, thresholds, metrics, data, model_path, distillation))
    atomic.write_json(out / "metrics.json", metrics)
    atomic.write_json(out / "history.json", history)
    atomic.write_json(out / "predictions.json", {
        name: {"paths": [str(s.path) for s in splits[name].samples],
               "targets": splits[name].targets.tolist(), "probabilities": probs[name].tolist()}
        for name in ("val", "test")})
    from .plots import write_training_plots

    write_training_plots(out, history, splits, probs, thresholds)
    from .sample_grid import write_sample_grid

    test = splits["test"]
    write_sample_grid(out, [str(s.path) for s in test.samples], test.targets, probs["test"], thresholds["balanced"])
    write_model_card(out)
    return summary
