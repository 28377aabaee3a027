"""Distillation (train/distill.py): the loss on constructed cases, and the teacher's logits from a run folder."""
import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="distillation needs the train extra (Keras)")

from fracture_edge.train import distill  # noqa: E402


def _loss(alpha, temperature, y, p, teacher):
    value = distill.distillation_loss(alpha, temperature)(np.stack([y, teacher], axis=1).astype("float32"),
                                                         np.asarray(p, "float32")[:, None])
    return np.asarray(value, np.float64)


def _bce(y, p):
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _logit(p):
    return np.log(p) - np.log1p(-p)


Y, P = np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.9, 0.2, 0.3, 0.6])


def test_alpha_one_is_exactly_the_plain_bce():
    assert np.allclose(_loss(1.0, 2.0, Y, P, [5.0, -3.0, 0.0, 8.0]), _bce(Y, P), atol=1e-5)


def test_the_soft_term_is_zero_when_the_student_matches_the_teacher():
    """alpha 0: the loss is T^2 * KL(teacher/T || student/T), so a student with the teacher's logits scores 0
    whatever the labels say, and a student that differs scores more."""
    for temperature in (1.0, 2.0, 4.0):
        assert np.allclose(_loss(0.0, temperature, Y, P, _logit(P)), 0.0, atol=1e-4)
        assert (_loss(0.0, temperature, Y, P, _logit(P) + 1.0) > 1e-3).all()


def test_the_soft_term_is_t_squared_times_the_kl_of_the_softened_probabilities():
    teacher, temperature = np.array([2.0, -1.0, 1.5, -2.5]), 3.0
    q, s = 1 / (1 + np.exp(-teacher / temperature)), 1 / (1 + np.exp(-_logit(P) / temperature))
    kl = q * np.log(q / s) + (1 - q) * np.log((1 - q) / (1 - s))
    expected = 0.25 * _bce(Y, P) + 0.75 * temperature ** 2 * kl
    assert np.allclose(_loss(0.25, temperature, Y, P, teacher), expected, atol=1e-4)


def test_the_gradient_pulls_the_student_toward_the_teacher_not_the_label():
    """alpha 0, a positive image whose teacher is confidently negative: the loss falls as the student's
    probability falls (toward the teacher), the opposite of BCE on the label."""
    probabilities = np.array([0.7, 0.5, 0.3, 0.1])
    losses = _loss(0.0, 2.0, np.ones(4), probabilities, np.full(4, -4.0))
    assert (np.diff(losses) < 0).all()


def test_distillation_options_are_checked_in_one_line():
    from fracture_edge.train.options import TrainOptions

    for kwargs, message in (({"distill_alpha": 1.5}, "--distill-alpha"), ({"distill_temperature": 0.0}, "--distill-temperature"),
                            ({"teacher": "runs/x", "stability": 1.0}, "cannot be combined")):
        with pytest.raises(ValueError, match=message):
            TrainOptions(data="d", out="o", **kwargs)
