"""The low-pass probe of issue 21 (experiments/stem_lowpass_probe.py): its filter and its numbers, no model."""
from __future__ import annotations

import numpy as np

from fracture_edge.experiments.stem_lowpass_probe import binomial_blur, kept_share, variant_row


def test_the_low_pass_keeps_flat_images_and_ramps_and_cuts_white_noise_to_a_seventh():
    flat = np.full((2, 16, 16, 3), 117, np.uint8)
    assert np.array_equal(binomial_blur(flat), flat.astype(np.float32))
    ramp = np.tile(np.arange(16, dtype=np.float32)[None, :, None, None], (1, 1, 16, 3)) * 10
    assert np.allclose(binomial_blur(ramp)[:, 1:-1], ramp[:, 1:-1])       # linear inside: unchanged
    noise = np.random.default_rng(0).integers(-1, 2, (4, 128, 128, 1)).astype(np.float32)
    ratio = binomial_blur(noise)[:, 2:-2, 2:-2].var() / noise.var()
    assert abs(ratio - 36 / 256) < 0.01                                     # sum of the squared weights


def test_kept_share_counts_unchanged_decisions_at_the_threshold():
    clean = np.array([0.1, 0.4, 0.6, 0.9])
    assert kept_share(clean, clean, 0.5) == 1.0
    assert kept_share(clean, np.array([0.1, 0.55, 0.45, 0.9]), 0.5) == 0.5


def test_a_perturbation_that_changes_nothing_keeps_every_decision_and_moves_no_logit():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    probs = np.clip(rng.uniform(0, 0.7, 100) + 0.3 * labels, 0.01, 0.99)
    same = variant_row(labels, probs, probs.copy())
    assert same["dither_logit_sd"] == 0 and same["kept"] == {"balanced": 1.0, "screening": 1.0}
    moved = variant_row(labels, probs, np.clip(probs + rng.normal(0, 0.1, 100), 0.01, 0.99))
    assert moved["dither_logit_sd"] > 0.1 and min(moved["kept"].values()) < 1.0 and moved["auc"] == same["auc"]
