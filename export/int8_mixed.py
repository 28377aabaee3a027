"""Mixed int8 (opt-in rows tflite-int8-mixed, onnx-int8-mixed): keep the first layers of the network in float.

Never done behind the plain *-int8 names: an artifact called int8 is integer in its body. The mixed rows
say in their name and report how many ops are float, and the fidelity verdict judges them like any other.

Why a prefix (measured on FracAtlas, runs/fracatlas-320, 300 held-out training images): the network
amplifies noise that enters early. Quantizing only the stem (normalization, conv1) and the classifier
head, everything else float, moved the probabilities as much as quantizing the whole network (mean
|dp| 0.034 both), while keeping the stem and dense block 2 in float and quantizing the rest cut it to
0.010. QuantizationDebugger's per-layer RMSE/scale ranking, which measures each layer's own rounding
rather than what reaches the output, pointed at the classifier and two block-2 ReLUs instead; keeping
those in float did not pass.

So the candidates are prefixes of the graph (TFLite ops or ONNX nodes, in execution order), cut where
a dense layer or a transition ends, and the shortest prefix whose model meets the int8 agreement gate
with a margin on held-out training images is chosen by binary search (about log2(cuts) quantizations).
Val and test images are never used to choose: the gate on them stays an honest check of the choice.
The margin is there because the model fits its training images: fewer of them sit near a threshold,
so they flip less. With 200 class-balanced images and a margin of 0.01 (gate 98 %), the chosen prefix
reached 99.0 % agreement on them and 97.9 % (screening) on val+test; 400 images at the dataset's class
ratio and 99.5 % (a quarter of the gate's 2 % disagreement, SEARCH_SHARE) passed val+test.
"""
from __future__ import annotations

import logging
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..edge_runtime.metrics import agreement as decision_agreement, roc_auc
from .gates import gate_thresholds

log = logging.getLogger(__name__)

SEARCH_SHARE = 0.25   # the selection images may disagree at most this share as often as the target allows


@dataclass(frozen=True)
class SearchTarget:
    """What a float prefix must reach on the selection images to be chosen (the search's rule, not the verdict)."""

    min_agreement: float = 0.99        # scaled by SEARCH_SHARE: 99.75 % of the decisions kept on the selection
    max_abs_dauc: float | None = 0.01
CUT = re.compile(r"(?:^|/)(conv\d+_block\d+_concat|pool\d+_pool|pool1)(?:_\d+)?/")


@dataclass(frozen=True)
class FloatPrefix:
    """The ops kept in float: every op of the graph up to and including the layer `through`."""

    through: str                 # last Keras layer kept in float, e.g. "conv3_block12_concat"
    ops: tuple[str, ...]         # what the quantizer skips: TFLite output tensor names, ONNX node names


@dataclass(frozen=True)
class PrefixTrial:
    """One candidate measured on the selection images."""

    through: str
    ops: int
    passed: bool
    agreement: dict              # threshold name -> fraction of identical decisions
    d_auc: float
    mean_abs_dprob: float
    seconds: float


@dataclass(frozen=True)
class PrefixChoice:
    """The outcome of the search: the chosen prefix (None when even the longest failed) and every trial."""

    prefix: FloatPrefix | None
    total_ops: int
    trials: tuple[PrefixTrial, ...] = field(default=())

    def facts(self, images: int, seconds: float) -> dict:
        chosen = self.prefix
        return {"kept_float": {"through": chosen.through if chosen else None,
                               "ops": len(chosen.ops) if chosen else 0, "of_ops": self.total_ops,
                               "share_float": round(len(chosen.ops) / self.total_ops, 4) if chosen else 0.0,
                               "rule": "shortest float prefix meeting the search's agreement target "
                                       f"with {SEARCH_SHARE:g}x its disagreement on {images} held-out "
                                       "training images"},
                "float_prefix_search": {"images": images, "seconds": round(seconds, 1),
                                        "trials": [asdict(t) for t in self.trials]}}


def op_output_names(model_bytes: bytes) -> list[str]:
    """Output tensor name of every op of a .tflite model's main graph, in execution order."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(model_bytes).subgraphs[0]
    return [graph.tensors[op.outputs[0]].name.decode() for op in graph.operators]


def prefixes_of(names: list[str]) -> list[FloatPrefix]:
    """Prefixes of ops (output names in execution order) cut after the stem, each dense layer and transition.

    A graph without DenseNet layer names is cut after every op.
    """
    cuts = [(i, match.group(1)) for i, name in enumerate(names) if (match := CUT.search(name))]
    if not cuts:
        cuts = [(i, name) for i, name in enumerate(names)]
    return [FloatPrefix(label, tuple(names[:i + 1])) for i, label in cuts]


def shortest_passing(count: int, passes: Callable[[int], bool]) -> int | None:
    """Smallest index in range(count) for which passes() holds, assuming it holds from some index on.

    The longest candidate is tried first: when it fails, nothing shorter is tried and None is returned.
    """
    if count == 0 or not passes(count - 1):
        return None
    low, high = 0, count - 1
    while low < high:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle + 1
    return low


def required_agreement(limits: SearchTarget) -> float:
    """Agreement the selection images must reach: the gate's disagreement scaled by SEARCH_SHARE."""
    return 1.0 - (1.0 - (limits.min_agreement or 0.0)) * SEARCH_SHARE


def selection_trial(prefix: FloatPrefix, ref_probs: np.ndarray, probs: np.ndarray, labels: np.ndarray,
                    thresholds: dict, limits: SearchTarget, seconds: float) -> PrefixTrial:
    """Agreement (at every gate threshold, with margin) and |dAUC| of one candidate on the selection images."""
    agreement = {name: decision_agreement(ref_probs, probs, t) for name, t in gate_thresholds(thresholds).items()}
    need = required_agreement(limits)
    d_auc = float(roc_auc(labels, probs) - roc_auc(labels, ref_probs)) if len(set(labels.tolist())) == 2 \
        else float("nan")
    passed = all(a >= need for a in agreement.values()) and \
        (limits.max_abs_dauc is None or not abs(d_auc) > limits.max_abs_dauc)
    return PrefixTrial(prefix.through, len(prefix.ops), passed, agreement, d_auc,
                       float(np.abs(probs - ref_probs).mean()), round(seconds, 1))


def choose_float_prefix(names: list[str], quantize: Callable[[tuple[str, ...], Path], object], suffix: str,
                        pixels: np.ndarray, labels: np.ndarray, ref_probs: np.ndarray, thresholds: dict,
                        limits: SearchTarget, bundle: dict, num_threads: int | None = None) -> PrefixChoice:
    """Binary search for the shortest float prefix whose mixed model meets the gate on the given images.

    names: the model's ops in execution order; quantize(ops, path) writes the model with `ops` in float;
    each candidate runs through edge_runtime, as users run it.
    """
    from .verify import runtime_probs

    candidates = prefixes_of(names)
    trials: dict[int, PrefixTrial] = {}

    def passes(index: int) -> bool:
        start = time.perf_counter()
        prefix = candidates[index]
        with tempfile.TemporaryDirectory(prefix="fe-mixed-") as folder:
            path = Path(folder) / f"candidate{suffix}"
            quantize(prefix.ops, path)
            probs = runtime_probs(path, pixels, num_threads, bundle=bundle)
        trial = selection_trial(prefix, ref_probs, probs, labels, thresholds, limits, time.perf_counter() - start)
        trials[index] = trial
        log.info("float through %s (%d of %d ops): agreement %s, mean |dp| %.4f -> %s", prefix.through,
                 len(prefix.ops), len(names), ", ".join(f"{k} {v:.2%}" for k, v in trial.agreement.items()),
                 trial.mean_abs_dprob, "meets the gate" if trial.passed else "misses")
        return trial.passed

    chosen = shortest_passing(len(candidates), passes)
    ordered = tuple(trials[i] for i in sorted(trials))
    return PrefixChoice(candidates[chosen] if chosen is not None else None, len(names), ordered)
