"""Where a compressed artifact's logit error lies, on held-out TRAINING images (never val/test; issue 26).

    python -m fracture_edge.experiments.int8_logit_error RUN ARTIFACT [--images 300] [--seed 11]

Runs ARTIFACT (e.g. RUN/rejected/model_int8_dynamic.tflite) and RUN's tflite-fp32 through the edge runtime on
seeded training images and prints the logit difference (artifact - fp32): its mean and SD overall, per class
and per band of the fp32 logit (a bias near a decision threshold is what makes decisions flip one way), and
what an affine map of the artifact's logit onto the fp32 logit (least squares, two-fold cross-validated) would
leave: if it removes little, the error depends on the image, not on the logit, and no output calibration helps.
"""
from __future__ import annotations

import argparse
import logging

import numpy as np

from ..edge_runtime.classifier import open_classifier
from ..edge_runtime.metrics import probability_logits
from ..export.calibration import load_images, random_training_samples

log = logging.getLogger(__name__)

BANDS = ((-np.inf, -2.0), (-2.0, 0.0), (0.0, 2.0), (2.0, np.inf))
BATCH = 16


def affine_cv_rmse(artifact: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(RMSE without a map, RMSE with an affine map fitted on the other half), two folds averaged."""
    halves = np.array_split(np.arange(len(artifact)), 2)
    before, after = [], []
    for fit, test in (halves, halves[::-1]):
        design = np.c_[artifact[fit], np.ones(len(fit))]
        (scale, shift), *_ = np.linalg.lstsq(design, reference[fit], rcond=None)
        before.append(np.mean((artifact[test] - reference[test]) ** 2))
        after.append(np.mean((scale * artifact[test] + shift - reference[test]) ** 2))
    return float(np.sqrt(np.mean(before))), float(np.sqrt(np.mean(after)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("artifact")
    parser.add_argument("--data", default=None, help="dataset folder (default: the bundle's data source)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    reference = open_classifier(args.run, format="tflite-fp32", num_threads=2)
    artifact = open_classifier(args.artifact, num_threads=2)
    data = args.data or reference.bundle["data"]["source"]
    split, chosen = random_training_samples(data, args.images, (), args.seed, "to measure on")
    images = load_images(chosen, reference.contract, f"{data} [{split}]")
    ref, art = [], []
    for start in range(0, len(images.labels), BATCH):
        pixels = images.pixels[start:start + BATCH]
        ref.append(probability_logits(reference.predict_pixels(pixels)))
        art.append(probability_logits(artifact.predict_pixels(pixels)))
    ref, art = np.concatenate(ref), np.concatenate(art)
    diff = art - ref
    log.info("%s vs tflite-fp32 on %d %s images (seed %d): logit difference mean %+.4f (SE %.4f), SD %.4f",
             artifact.format.name, len(diff), split, args.seed, diff.mean(), diff.std(ddof=1) / np.sqrt(len(diff)),
             diff.std())
    for label in (0, 1):
        mask = images.labels == label
        if mask.any():
            log.info("  class %d: %d images, mean %+.4f, SD %.4f", label, mask.sum(), diff[mask].mean(), diff[mask].std())
    for low, high in BANDS:
        mask = (ref >= low) & (ref < high)
        if mask.any():
            log.info("  fp32 logit in [%g, %g): %d images, mean %+.4f, SD %.4f", low, high, mask.sum(),
                     diff[mask].mean(), diff[mask].std())
    before, after = affine_cv_rmse(art, ref)
    log.info("logit RMSE %.4f; after an affine output map (2-fold cross-validated) %.4f", before, after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
