"""A lead for stable decisions (issue 21), without retraining: the run's model behind a fixed 3x3 binomial low-pass.

    python -m fracture_edge.experiments.stem_lowpass_probe runs/fracatlas-320 [--split val]

Written down in docs/robustness.md ("A low-pass before conv1, probed without retraining") before it ran. On the
split's images (val by default: the test split stays a report): P(x) = model(blur(x)) with blur the separable
[1, 2, 1] / 4 filter per channel (reflected borders, float, no rounding), against the model itself. For each:
AUC, the SD of the logit change under the +-1 grey-level dither (the stability probe `dither-1`, seed 0, applied
to the image before the blur: the blur is part of the model), and the share of decisions the dither keeps at the
two thresholds chosen on these images by the bundle's own rule (metrics.choose_thresholds). Needs TensorFlow.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..edge_runtime import atomic
from ..edge_runtime.bundle import input_contract, load_bundle
from ..edge_runtime.dataset import read_dataset
from ..edge_runtime.metrics import choose_thresholds, probability_logits, roc_auc
from ..edge_runtime.preprocessing import load_batch
from ..edge_runtime.shifts import apply_shift

log = logging.getLogger(__name__)

PROBE = "dither-1"
THRESHOLDS = ("balanced", "screening")


def binomial_blur(pixels: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> float32 of the same shape: [1, 2, 1] / 4 along rows, then columns, borders reflected."""
    x = np.asarray(pixels, dtype=np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)), mode="reflect")
    x = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="reflect")
    return (padded[:, :, :-2] + 2 * padded[:, :, 1:-1] + padded[:, :, 2:]) / 4


def kept_share(clean: np.ndarray, perturbed: np.ndarray, threshold: float) -> float:
    """Share of images whose decision (probability >= threshold) the perturbation does not change."""
    return float(np.mean((clean >= threshold) == (perturbed >= threshold)))


def variant_row(labels: np.ndarray, clean: np.ndarray, dithered: np.ndarray) -> dict:
    """AUC, the dither's logit SD and the decisions it keeps at thresholds chosen on these probabilities."""
    thresholds = choose_thresholds(labels, clean)
    gap = probability_logits(dithered) - probability_logits(clean)
    return {"auc": roc_auc(labels, clean), "dither_logit_sd": float(np.std(gap)),
            "thresholds": {name: float(thresholds[name]) for name in THRESHOLDS},
            "kept": {name: kept_share(clean, dithered, thresholds[name]) for name in THRESHOLDS}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", default=None, help="where stem_lowpass.json goes (default: RUN)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import keras

    from ..export.extra_outputs import keras_outputs

    run = Path(args.run)
    bundle = load_bundle(run)
    samples = [s for s in read_dataset((bundle.get("data") or {}).get("source")) if s.split == args.split]
    pixels, kept, _ = load_batch([str(s.path) for s in samples], input_contract(bundle))
    labels = np.array([samples[i].target for i in kept])
    model = keras.models.load_model(run / "model.keras", compile=False)

    def predict(x: np.ndarray) -> np.ndarray:
        return keras_outputs(model, x, ())["probability"]

    dithered = apply_shift(PROBE, pixels, seed=0)
    result = {"run": str(run), "split": args.split, "images": int(len(kept)), "probe": PROBE,
              "model": variant_row(labels, predict(pixels), predict(dithered)),
              "model behind the low-pass": variant_row(labels, predict(binomial_blur(pixels)),
                                                       predict(binomial_blur(dithered)))}
    out = Path(args.out) if args.out else run
    atomic.write_json(out / "stem_lowpass.json", result)
    for name in ("model", "model behind the low-pass"):
        row = result[name]
        print(f"{name}: AUC {row['auc']:.4f}, dither logit SD {row['dither_logit_sd']:.3f}, kept "
              + ", ".join(f"{k} {v:.1%}" for k, v in row["kept"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
