"""Stability training (train/stability.py): the dithered partner, the consistency loss, the shared dropout mask,
and that the term makes a head ignore a feature the dither moves."""
import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="stability training needs the train extra (Keras)")

from fracture_edge.train import stability  # noqa: E402


def _pixels(n=3, side=12, seed=0):
    gray = np.random.default_rng(seed).integers(0, 256, (n, side, side), dtype=np.uint8)
    gray[:, 0, :2] = (0, 255)   # the clip at both ends is exercised
    return np.repeat(gray[..., None], 3, axis=3)


def test_the_partner_dither_is_seeded_bounded_and_gray():
    pixels = _pixels()
    out = stability.dither_augmenter(5)(pixels)
    again = stability.dither_augmenter(5)(pixels)
    step = out.astype(int) - pixels.astype(int)
    assert np.array_equal(out, again) and not np.array_equal(out, stability.dither_augmenter(6)(pixels))
    assert out.dtype == np.uint8 and np.abs(step).max() == 1 and 0.5 < (step != 0).mean() < 0.8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    assert out[:, 0, 0, 0].max() <= 1 and out[:, 0, 1, 0].min() >= 254   # clipped, never wrapped


def test_the_partner_dithers_the_augmented_view():
    pixels = _pixels()
    flipped = stability.dither_augmenter(5, lambda b: b[:, :, ::-1])(pixels)
    assert np.abs(flipped.astype(int) - pixels[:, :, ::-1].astype(int)).max() == 1


def _loss(weight, y, p, q):
    value = stability.consistency_loss(weight)(np.array(y, "float32"), np.stack([p, q], axis=1).astype("float32"))
    return np.asarray(value, np.float64)


def test_the_loss_is_exactly_bce_without_weight_or_without_a_gap():
    y, p, q = [1.0, 0.0, 1.0], np.array([0.9, 0.2, 0.6]), np.array([0.5, 0.7, 0.6])
    bce = -(np.array(y) * np.log(p) + (1 - np.array(y)) * np.log(1 - p))
    np.testing.assert_allclose(_loss(0.0, y, p, q), bce, rtol=1e-5)
    np.testing.assert_allclose(_loss(3.0, y, p, p), bce, rtol=1e-5)


def test_the_loss_adds_the_squared_logit_gap():
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    value = _loss(2.0, [1.0], np.array([sigmoid(1.0)]), np.array([sigmoid(-0.5)]))
    np.testing.assert_allclose(value, [-np.log(sigmoid(1.0)) + 2.0 * 1.5 ** 2], rtol=1e-5)


def test_both_passes_share_one_dropout_mask():
    dense = keras.layers.Dense(1, activation="sigmoid")
    pair = stability.pair_model(keras.layers.Identity(), dense, (16,), 16, dropout=0.5)
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    out = np.asarray(pair([x, x], training=True))
    assert np.array_equal(out[:, 0], out[:, 1])
    assert not np.allclose(out[:, 0], np.asarray(pair([x, x], training=False))[:, 0])   # dropout did act


def _spurious_task(n=600, seed=0):
    """Feature 0 carries the label; feature 1 also does in training, but the dither redraws it in the partner."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = (2 * y - 1) * 0.6 + rng.normal(0, 1, n)
    fragile = (2 * y - 1) * 1.0 + rng.normal(0, 1, n)
    x = np.stack([signal, fragile], axis=1).astype("float32")
    partner = x.copy()
    partner[:, 1] = rng.permutation(fragile)
    return x, partner, y


def _fit_head(weight):
    keras.utils.set_random_seed(0)
    x, partner, y = _spurious_task()
    dense = keras.layers.Dense(1, activation="sigmoid")
    pair = stability.pair_model(keras.layers.Identity(), dense, (2,), 2, dropout=0.0)
    rising = iter(range(100))   # a validation score that improves every epoch: the last weights are kept
    history = stability.fit_pairs(pair, x, partner, y, np.ones(len(y)), lambda: next(rising), weight, epochs=30,
                                  lr=0.05, batch_size=64, patience=2, stage="test")
    logit = lambda z: np.log(z / (1 - z))  # noqa: E731
    gap = logit(np.asarray(dense(x)).ravel()) - logit(np.asarray(dense(partner)).ravel())
    return float(np.std(gap)), history


def test_the_consistency_term_makes_the_head_ignore_what_the_dither_moves():
    plain, _ = _fit_head(0.0)
    stable, history = _fit_head(1.0)
    assert len(history["loss"]) == 30 and history["val_auc"] == list(range(30))
    assert plain > 0.8 and stable < 0.3 * plain


def test_early_stopping_restores_the_best_epoch():
    keras.utils.set_random_seed(0)
    x, partner, y = _spurious_task(200)
    dense = keras.layers.Dense(1, activation="sigmoid")
    pair = stability.pair_model(keras.layers.Identity(), dense, (2,), 2, dropout=0.0)
    scores = iter([0.6, 0.9, 0.7, 0.8, 0.95])
    snapshots = []

    def score():
        snapshots.append([w.copy() for w in dense.get_weights()])
        return next(scores)

    history = stability.fit_pairs(pair, x, partner, y, np.ones(len(y)), score, 1.0, epochs=5, lr=0.05,
                                  batch_size=32, patience=2, stage="test")
    assert history["val_auc"] == [0.6, 0.9, 0.7, 0.8]   # two epochs without a gain after the best: stop
    for restored, best in zip(dense.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(restored, best)


def _opts(**overrides):
    from fracture_edge.train.options import TrainOptions
    return TrainOptions(data="", out="", **overrides)


def test_view_dither_off_keeps_the_original_view_untouched():
    from fracture_edge.train.trainer import training_view
    assert training_view(_opts(), 0) is None


def test_view_dither_noises_every_view_within_its_levels_from_its_own_seed():
    from fracture_edge.train.trainer import training_view
    pixels = _pixels(n=4, side=16)
    original = training_view(_opts(view_dither=3), 0)(pixels)
    step = original.astype(int) - pixels.astype(int)
    assert np.abs(step[:, 1:]).max() == 3 and (step != 0).mean() > 0.7            # the original view is dithered
    assert np.array_equal(original, training_view(_opts(view_dither=3), 0)(pixels))  # seeded
    probe = stability.dither_augmenter(0, levels=3)(pixels)                          # never the probe's seed 0
    assert not np.array_equal(original, probe)
    plain = training_view(_opts(), 1)(pixels)                                        # an augmented view ...
    noisy = training_view(_opts(view_dither=2), 1)(pixels)                           # ... is dithered after it
    assert np.abs(noisy.astype(int) - plain.astype(int)).max() == 2


def test_view_dither_is_checked():
    with pytest.raises(ValueError, match="--view-dither"):
        _opts(view_dither=-1)
