"""`fracture-edge eval`: re-score a run's model (Keras or any exported artifact) on a dataset split."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..edge_runtime import atomic
from ..edge_runtime.bundle import input_contract, load_bundle
from ..edge_runtime.dataset import read_dataset, require_both_classes, select_split
from ..edge_runtime.errors import FractureEdgeError
from ..edge_runtime.formats import get_format
from ..edge_runtime.confidence import RATES, format_ci, metric_cis
from ..edge_runtime.metrics import summarize
from ..edge_runtime.environment import peak_rss_mb
from .activations import load_split
from .result_names import is_home, result_name
from ..edge_runtime.bundle_schema import THRESHOLD_NAMES

log = logging.getLogger(__name__)


def keras_probabilities(run_dir: Path, pixels: np.ndarray) -> np.ndarray:
    """P(fractured) from the run's Keras model for uint8 model inputs, as export computes its reference
    (a traced graph, a batch at a time, converted to float32 per batch)."""
    import keras

    from .keras_reference import keras_probs

    path = run_dir / get_format("keras").filename
    if not path.is_file():
        raise FractureEdgeError(f"{path}: Keras model not found in the run folder")
    model = keras.models.load_model(path, compile=False)
    return keras_probs(model, pixels, "keras eval")


def artifact_probabilities(run_dir: Path, fmt: str, pixels: np.ndarray) -> np.ndarray:
    """P(fractured) from an exported artifact, through the same runtime users run, a few images per call
    (one call on the whole split made the runtime plan memory for all of them at once)."""
    from ..edge_runtime.classifier import Classifier
    from ..edge_runtime.batching import RUNTIME_CHUNK, chunks

    classifier = Classifier(run_dir, format=fmt)
    parts = [classifier.predict_pixels(pixels[s]) for s in chunks(len(pixels), RUNTIME_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0)


def load_run_split(run: Path, data: str | None, split: str, fmt: str):
    """(bundle, data source, loaded split) for scoring `fmt` of a run on a split (the run's own data by default)."""
    bundle = load_bundle(run)
    get_format(fmt)
    source = data or (bundle.get("data") or {}).get("source")
    if not source:
        raise FractureEdgeError(f"{run}: bundle has no data source; pass --data DIR")
    warn_if_fitted_on(bundle, source, run)
    samples = select_split(read_dataset(source), split, source)
    require_both_classes(samples, f"{source} [{split}]")
    return bundle, source, load_split(split, samples, input_contract(bundle))


def warn_if_fitted_on(bundle: dict, source, run: Path) -> None:
    """An adapted run's own data source holds the images its head was fitted on: scores there are optimistic."""
    fitted_on = ((bundle.get("adapted_head") or {}).get("provenance") or {}).get("data")
    if fitted_on and Path(fitted_on).resolve() == Path(source).resolve():
        log.warning("%s: its adapted head was fitted on %s, so scores on it are optimistic (adapt's nested "
                    "cross-validation is the honest estimate); pass --data with other images of the site", run, source)


def evaluate_run(run_dir: str, data: str | None, split: str, fmt: str = "keras") -> dict:
    """Metrics of one format on one split at the bundle's thresholds, written to RUN/eval_<fmt>_<split>.json on the
    run's own data and to RUN/eval_<fmt>_<split>_on-<name>-<hash>.json on any other (result_names.py): a score
    on another dataset never replaces the home result."""
    started = time.perf_counter()
    run = Path(run_dir)
    bundle, source, loaded = load_run_split(run, data, split, fmt)
    probs = keras_probabilities(run, loaded.pixels) if fmt == "keras" else artifact_probabilities(run, fmt, loaded.pixels)
    home = (bundle.get("data") or {}).get("source")
    path = run / (result_name("eval", fmt, split, source, home) + ".json")
    result = {"run": str(run), "format": fmt, "data": str(source), "home_data": is_home(source, home),
              "split": split, "skipped_unreadable": [list(f) for f in loaded.failures],
              **summarize(loaded.targets, probs, bundle["thresholds"]),
              "ci": metric_cis(loaded.targets, probs, bundle["thresholds"]),
              "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
              "file": str(path)}
    atomic.write_json(path, result)
    log.info("eval: %s", path)
    return result


def format_metrics_lines(result: dict) -> list[str]:
    """Human-readable lines for a summarize() result."""
    cost = f"; {result['seconds']:.0f} s, peak RSS {result['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in result else ""
    ci = result.get("ci") or {}
    auc = f"{result['auc']:.4f}" + (f" (95 % CI {ci['auc']['ci_low']:.3f}-{ci['auc']['ci_high']:.3f})" if "auc" in ci else "")
    lines = [f"{result.get('format', 'model')} on {result.get('split', '?')}: n={result['n']} "
             f"(fractured {result['n_positive']}), AUC {auc}{cost}"]
    for name in THRESHOLD_NAMES:
        if name in result:
            m = result[name]
            lines.append(f"  {name:9s} t={m['threshold']:.4f}  acc {m['accuracy']:.3f}  prec {m['precision']:.3f}  "
                         f"sens {m['sensitivity']:.3f}  spec {m['specificity']:.3f}  F1 {m['f1']:.3f}  "
                         f"TP {m['confusion']['tp']} FP {m['confusion']['fp']} TN {m['confusion']['tn']} "
                         f"FN {m['confusion']['fn']}")
            if name in ci:
                lines.append(f"  {'':9s} 95 % CI: " + ", ".join(f"{rate} {format_ci(ci[name][rate])}" for rate in RATES))
    return lines
