"""Which layers of a dynamic-range int8 model stay float32: the greedy choice within its budgets
(export/dynamic_range.py), on constructed costs and errors."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_edge.export.dynamic_range import FloatBudget, WeightedOp, choose_float_ops


def ops(*spec):
    """WeightedOp per (weights, macs), named op0, op1, ... in graph order."""
    return [WeightedOp(i, f"op{i}", w, m) for i, (w, m) in enumerate(spec)]


def test_the_most_error_per_cost_goes_first_and_the_budgets_hold():
    layers = ops((10, 100), (10, 100), (10, 100), (970, 9700))   # 1 % of weights and of MACs each, one big
    errors = {"op0": 4.0, "op1": 1.0, "op2": 2.0, "op3": 100.0}
    budget = FloatBudget(weight_share=0.025, mac_share=0.025)
    # op3 has the most error but would use 97 % of both: never kept; two of the 1 % ops fit in 2.5 %
    assert choose_float_ops(layers, errors, budget) == ("op0", "op2")   # graph order, largest errors


def test_the_binding_budget_is_the_tighter_share():
    layers = ops((1, 50), (50, 1), (949, 949))
    errors = {"op0": 1.0, "op1": 1.0, "op2": 0.0}
    # op0 is 5 % of the MACs, op1 5 % of the weights: only the op within the tight MAC budget is kept
    assert choose_float_ops(layers, errors, FloatBudget(weight_share=0.10, mac_share=0.02)) == ("op1",)
    assert choose_float_ops(layers, errors, FloatBudget(weight_share=0.02, mac_share=0.10)) == ("op0",)


def test_no_error_no_float_and_a_zero_budget_keeps_everything_int8():
    layers = ops((10, 10), (10, 10))
    assert choose_float_ops(layers, {"op0": 0.0, "op1": 0.0}, FloatBudget()) == ()
    assert choose_float_ops(layers, {"op0": 1.0, "op1": 2.0}, FloatBudget(weight_share=0.0, mac_share=0.0)) == ()


@pytest.mark.parametrize("share", [0.025, 0.1, 0.5])
def test_the_kept_share_never_exceeds_the_budget(share):
    layers = ops(*[(7 + i, 13 * i + 5) for i in range(40)])
    errors = {op.name: float((op.index * 37) % 11 + 1) for op in layers}
    kept = set(choose_float_ops(layers, errors, FloatBudget(weight_share=share, mac_share=share)))
    total_w, total_m = sum(o.weights for o in layers), sum(o.macs for o in layers)
    assert sum(o.weights for o in layers if o.name in kept) <= share * total_w
    assert sum(o.macs for o in layers if o.name in kept) <= share * total_m
    assert kept


class ConstructedRestorer:
    """Stands in for FloatRestorer: build() returns the set of ops left int8, and LOGITS says what each such
    model answers, so the errors do not add (as at rounding level on a barely trained model)."""

    LOGITS = {frozenset(): 0.0, frozenset({"op0"}): 1.0, frozenset({"op1"}): 0.5, frozenset({"op0", "op1"}): 0.1}

    def __init__(self):
        self.ops = self.candidates = ops((10, 10), (10, 10))

    def build(self, float_names):
        return frozenset(op.name for op in self.ops if op.name not in set(float_names))

    def logits(self, int8_ops):
        return np.full(4, self.LOGITS[int8_ops])


def test_a_choice_that_measures_worse_than_all_int8_keeps_every_layer_int8():
    from fracture_edge.export.dynamic_range import choose_float

    restorer = ConstructedRestorer()
    budget = FloatBudget(weight_share=0.5, mac_share=0.5)      # room for one op float
    assert choose_float_ops(restorer.ops, {"op0": 1.0, "op1": 0.25}, budget) == ("op0",)
    choice = choose_float(restorer, restorer.logits, budget, images=4)
    assert choice.errors == {"op0": 1.0, "op1": 0.25}
    # op0 float leaves op1 int8: RMSE 0.5, worse than all int8's 0.1, so nothing stays float
    assert choice.kept == () and choice.measured_rmse == choice.plain_rmse == pytest.approx(0.1)
    assert choice.weight_share == choice.mac_share == 0.0


def test_a_choice_that_measures_better_is_kept():
    from fracture_edge.export.dynamic_range import choose_float

    restorer = ConstructedRestorer()
    restorer.LOGITS = {**ConstructedRestorer.LOGITS, frozenset({"op0", "op1"}): 1.2}
    choice = choose_float(restorer, restorer.logits, FloatBudget(weight_share=0.5, mac_share=0.5), images=4)
    assert choice.kept == ("op0",) and choice.measured_rmse == pytest.approx(0.5)
    assert choice.plain_rmse == pytest.approx(1.2) and choice.weight_share == 0.5


@pytest.fixture(scope="module")
def converted():
    """(dynamic-range bytes, float32 bytes) of one small conv net, from the same SavedModel."""
    pytest.importorskip("tensorflow")
    import tempfile

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(48, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    with tempfile.TemporaryDirectory() as folder:
        model.export(folder, verbose=False)
        out = []
        for dynamic in (True, False):
            converter = tf.lite.TFLiteConverter.from_saved_model(folder)
            if dynamic:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            out.append(converter.convert())
    return tuple(out)


def _probs(model: bytes, pixels):
    from fracture_edge.export.exporters import tflite_logits

    return tflite_logits(model, pixels)


@pytest.mark.slow
def test_restoring_layers_gives_back_the_float_model_exactly(converted):
    from fracture_edge.export.dynamic_range import FloatRestorer, choose_float

    dynamic, float_model = converted
    restorer = FloatRestorer(dynamic, float_model)
    # the converter quantizes weights of >= 1,024 elements: both convolutions, not the 64-weight dense
    assert [op.weights for op in restorer.ops] == [3 * 3 * 3 * 48, 3 * 3 * 48 * 64]
    pixels = np.random.default_rng(0).uniform(0, 1, (6, 24, 24, 3)).astype(np.float32)
    every = [op.name for op in restorer.ops]
    np.testing.assert_array_equal(_probs(restorer.build(every), pixels), _probs(float_model, pixels))
    np.testing.assert_allclose(_probs(restorer.build([]), pixels), _probs(dynamic, pixels), atol=1e-6)
    with pytest.raises(ValueError, match="not int8-weight ops"):
        restorer.build(["no such op"])
    choice = choose_float(restorer, lambda m: _probs(m, pixels), FloatBudget(weight_share=0.5, mac_share=0.5), 6)
    assert set(choice.errors) == set(every) and choice.measured_rmse <= choice.plain_rmse
    assert len(restorer.build(choice.kept)) > len(restorer.build([]))   # float weights take more room


@pytest.mark.slow
def test_a_build_keeps_the_models_metadata(converted):
    from tensorflow.lite.tools import flatbuffer_utils

    from fracture_edge.export.dynamic_range import FloatRestorer

    dynamic, float_model = converted
    restorer = FloatRestorer(dynamic, float_model)
    for float_names in ([], [op.name for op in restorer.candidates]):
        built = flatbuffer_utils.convert_bytearray_to_object(restorer.build(float_names))
        original = flatbuffer_utils.convert_bytearray_to_object(dynamic)
        assert [(m.name, bytes(built.buffers[m.buffer].data)) for m in built.metadata] == \
            [(m.name, bytes(original.buffers[m.buffer].data)) for m in original.metadata]
