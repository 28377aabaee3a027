"""Dynamic-range int8 TFLite with the convolutions its rounding hurts most kept in float32.

In a dynamic-range model every convolution with int8 weights quantizes its float input at run time, per
image, to 8 bits. How much that moves the logit differs widely between layers. Measured on 80 held-out
TRAINING images of the default model (never val/test), each layer quantized alone (all others float32):
conv1, whose input is the image, gives a logit RMSE of 0.206; the convolutions of the first dense block and
the transitions 0.01-0.04; the dense classifier 0.017; most later ones under 0.01 (docs/fidelity-verdict.md,
"Which layers stay float"). So export measures that error for every int8 layer on held-out training images and keeps in float32
the layers with the most error per unit of cost, within two budgets fixed here (FloatBudget): a share of the
weights (each float weight costs 3 bytes more) and a share of the multiply-adds (they run at float speed).

The float weights are taken from the float32 conversion of the same SavedModel (the op with the same output
tensor), so a restored convolution is the fp32 artifact's, bit for bit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .int8_census import WEIGHTED_OPS
from .tflite_graph import op_name, schema, text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FloatBudget:
    """How much of a dynamic-range model may stay float32, and on how many images that is chosen.

    Fixed from the issue's size and speed targets, not from any verdict: <= 8 MB for a 7.43 MB plain dynamic
    model leaves 7.5 % growth, i.e. 2.5 % of the weights at 3 more bytes each; <= 0.55x fp32 latency, where
    the plain dynamic model measured 0.42x here (loaded; 0.50x idle in the issue) and a choice with 20 % of the
    multiply-adds float 0.46x (+0.04x, in one interleaved run), leaves room for 15 %.
    """
    weight_share: float = 0.025
    mac_share: float = 0.15
    images: int = 48          # held-out training images (the mixed-int8 selection set), never val/test


@dataclass(frozen=True)
class WeightedOp:
    """One convolution or dense op with int8 weights in a dynamic-range graph."""
    index: int        # position in the operator list
    name: str         # its output tensor's name (the same in the float32 conversion)
    weights: int
    macs: int


@dataclass(frozen=True)
class FloatChoice:
    """Which ops stay float32, and the measurements that chose them."""
    kept: tuple[str, ...]
    errors: dict            # op name -> mean squared logit error with only that op int8
    weight_share: float     # of all conv/dense weights, kept float
    mac_share: float        # of all conv/dense multiply-adds, kept float
    predicted_rmse: float   # sqrt of the summed errors of the ops left int8 (the errors add, roughly)
    measured_rmse: float    # logit RMSE of the chosen model against the all-float one, same images
    plain_rmse: float       # ... and of the model with every layer int8
    images: int

    def to_dict(self) -> dict:
        ranked = sorted(self.errors.items(), key=lambda kv: -kv[1])
        return {"float_weights": list(self.kept), "chosen_on": f"{self.images} held-out training images",
                "weight_share_float": round(self.weight_share, 4), "mac_share_float": round(self.mac_share, 4),
                "predicted_logit_rmse": round(self.predicted_rmse, 4),
                "logit_rmse": round(self.measured_rmse, 4), "logit_rmse_all_int8": round(self.plain_rmse, 4),
                "largest_layer_errors": {k: round(float(np.sqrt(v)), 4) for k, v in ranked[:12]}}


def weighted_ops(model) -> list[WeightedOp]:
    """The int8-weight conv/dense ops of a flatbuffer model object, in graph order, with their costs."""
    graph, out = model.subgraphs[0], []
    for index, op in enumerate(graph.operators):
        if op_name(model, op) not in WEIGHTED_OPS or len(op.inputs) < 2:
            continue
        weights = graph.tensors[op.inputs[1]]
        if weights.type != schema().TensorType.INT8:
            continue
        output = graph.tensors[op.outputs[0]]
        count = int(np.prod(weights.shape))
        # each weight is used once per output position (per output channel of a depthwise conv)
        positions = int(np.prod(output.shape[1:-1])) if len(output.shape) > 2 else 1
        out.append(WeightedOp(index, text(output.name), count, count * positions))
    return out


class FloatRestorer:
    """Switch chosen int8-weight ops of a dynamic-range model back to the float32 model's weights."""

    def __init__(self, dynamic: bytes, float_model: bytes):
        from tensorflow.lite.tools import flatbuffer_utils

        self._utils = flatbuffer_utils
        tflite = schema()
        self.model = flatbuffer_utils.convert_bytearray_to_object(dynamic)
        reference = flatbuffer_utils.convert_bytearray_to_object(float_model)
        ref_graph = reference.subgraphs[0]
        ref_by_output = {text(ref_graph.tensors[op.outputs[0]].name): op for op in ref_graph.operators}
        graph = self.model.subgraphs[0]
        self.ops = weighted_ops(self.model)
        self._states = {}   # name -> (weight tensor, int8 state, float state)
        for op in self.ops:
            weights = graph.tensors[graph.operators[op.index].inputs[1]]
            ref_op = ref_by_output.get(op.name)
            source = ref_graph.tensors[ref_op.inputs[1]] if ref_op is not None and len(ref_op.inputs) > 1 else None
            data = reference.buffers[source.buffer].data if source is not None else None
            if data is None or source.type != tflite.TensorType.FLOAT32 or list(source.shape) != list(weights.shape):
                log.debug("%s: no constant float32 weights in the float model; stays int8", op.name)
                continue
            buffer = tflite.BufferT()
            buffer.data = np.frombuffer(bytes(data), np.uint8)
            self.model.buffers.append(buffer)
            self._states[op.name] = (weights, (weights.buffer, weights.type, weights.quantization),
                                     (len(self.model.buffers) - 1, tflite.TensorType.FLOAT32, None))
        self.candidates = [op for op in self.ops if op.name in self._states]

    def build(self, float_names: Sequence[str]) -> bytes:
        """The model with exactly `float_names` on float32 weights (the rest int8); unused buffers emptied."""
        unknown = set(float_names) - set(self._states)
        if unknown:
            raise ValueError(f"not int8-weight ops of this model: {sorted(unknown)}")
        chosen = set(float_names)
        for name, (tensor, int8_state, float_state) in self._states.items():
            tensor.buffer, tensor.type, tensor.quantization = float_state if name in chosen else int8_state
        used = {t.buffer for t in self.model.subgraphs[0].tensors}
        switchable = {state[1][0] for state in self._states.values()} | {state[2][0] for state in self._states.values()}
        saved = {}
        for k in switchable - used:     # the copy of each weight tensor that this build does not read
            buffer = self.model.buffers[k]
            if buffer.data is not None:
                saved[k], buffer.data = buffer.data, None
        try:
            return bytes(self._utils.convert_object_to_bytearray(self.model))
        finally:
            for k, data in saved.items():
                self.model.buffers[k].data = data


def choose_float_ops(ops: Sequence[WeightedOp], errors: dict, budget: FloatBudget) -> tuple[str, ...]:
    """Greedy: the ops with the most error per share of the budget they use, while both budgets hold."""
    if budget.weight_share <= 0 or budget.mac_share <= 0:
        return ()
    total_weights = sum(op.weights for op in ops) or 1
    total_macs = sum(op.macs for op in ops) or 1

    def cost(op: WeightedOp) -> float:
        return max(op.weights / total_weights / budget.weight_share, op.macs / total_macs / budget.mac_share, 1e-12)

    kept, weights, macs = [], 0, 0
    for op in sorted(ops, key=lambda op: (-errors.get(op.name, 0.0) / cost(op), op.index)):
        if errors.get(op.name, 0.0) <= 0.0:
            break
        if (weights + op.weights) / total_weights <= budget.weight_share and \
                (macs + op.macs) / total_macs <= budget.mac_share:
            kept.append(op)
            weights, macs = weights + op.weights, macs + op.macs
    return tuple(op.name for op in sorted(kept, key=lambda op: op.index))


def choose_float(restorer: FloatRestorer, logits: Callable[[bytes], np.ndarray], budget: FloatBudget,
                 images: int, progress: Callable = lambda items, _label, _n: items) -> FloatChoice:
    """Measure every int8 op's own error (only it int8) against the all-float model and choose by it; a choice
    that measures worse than all int8 on the same images is dropped."""
    candidates = restorer.candidates
    reference = logits(restorer.build([op.name for op in candidates]))

    def mse(float_names) -> float:
        return float(np.mean((logits(restorer.build(float_names)) - reference) ** 2))

    errors = {op.name: mse([other.name for other in candidates if other.name != op.name])
              for op in progress(candidates, "dynamic int8: error of each layer", len(candidates))}
    kept = choose_float_ops(restorer.ops, errors, budget)
    measured, plain = float(np.sqrt(mse(kept))), float(np.sqrt(mse(())))
    if kept and measured > plain:
        # the per-layer errors only roughly add: where they are at rounding level (a barely trained model),
        # the chosen float layers can measure worse together than none; then they cost size for nothing
        log.warning("dynamic int8: the %d chosen float32 layers measure a logit RMSE of %.5f, above all int8 "
                    "(%.5f), on the same images; every layer stays int8", len(kept), measured, plain)
        kept, measured = (), plain
    chosen = [op for op in restorer.ops if op.name in set(kept)]

    def share(attribute: str) -> float:
        return sum(getattr(op, attribute) for op in chosen) / (sum(getattr(op, attribute) for op in restorer.ops) or 1)

    left = sum(v for k, v in errors.items() if k not in set(kept))
    choice = FloatChoice(kept, errors, share("weights"), share("macs"), float(np.sqrt(left)), measured, plain,
                         images)
    log.info("dynamic int8: %d of %d layers kept float32 (%.1f %% of weights, %.1f %% of multiply-adds); "
             "logit RMSE %.3f (all int8: %.3f) on %d held-out training images", len(kept), len(restorer.ops),
             100 * choice.weight_share, 100 * choice.mac_share, choice.measured_rmse, choice.plain_rmse, images)
    return choice
