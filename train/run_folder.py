"""Write a training run folder: model.keras, bundle.json, metrics.json, history.json and plots."""
from __future__ import annotations

import logging
import platform
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..edge_runtime import __version__, atomic
from ..edge_runtime.bundle import SCHEMA_VERSION, artifact_record, save_bundle
from ..edge_runtime.dataset import LABELS, POSITIVE
from ..edge_runtime.formats import FORMATS
from ..edge_runtime.confidence import metric_cis
from ..edge_runtime.metrics import summarize
from ..edge_runtime.model_card import CARD_FILENAME, write_model_card
from ..edge_runtime.preprocessing import InputContract
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


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def versions() -> dict:
    import keras
    import tensorflow as tf

    return {"fracture_edge": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


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
                 data: dict, model_path: Path) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "model": "DenseNet121",
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
        "data": data,
        "metrics": metrics,
        "versions": versions(),
        "artifacts": {"keras": artifact_record(model_path)},
        "model_card": CARD_FILENAME,
    }


def write_run_folder(out: Path, model, opts: TrainOptions, contract: InputContract, splits: dict, probs: dict,
                     thresholds: dict, history: dict, data_report: dict, seconds: float) -> RunSummary:
    model_path = out / FORMATS["keras"].filename
    with atomic.atomic_path(model_path) as tmp:
        model.save(tmp)
    metrics = compute_metrics(splits, probs, thresholds)
    summary = RunSummary(out, metrics["test"], thresholds, seconds, peak_rss_mb())
    metrics["train_seconds"] = round(seconds, 1)
    metrics["peak_rss_mb"] = round(summary.peak_rss_mb, 1)
    data = data_summary(opts, splits, data_report)
    save_bundle(out, build_bundle(opts, contract, thresholds, metrics, data, model_path))
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
    log.info("run folder written: %s", out)
    return summary
