"""Load a split as model inputs and cache the frozen part's activations, so an epoch costs only the tail."""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..edge_runtime.dataset import Sample
from ..edge_runtime.preprocessing import InputContract, load_batch
from ..edge_runtime.progress import progress

log = logging.getLogger(__name__)
_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # submodel -> its traced inference call


@dataclass(frozen=True)
class SplitData:
    name: str
    pixels: np.ndarray            # (N, S, S, 3) uint8 model inputs
    targets: np.ndarray           # (N,) int 1 = fractured
    samples: tuple[Sample, ...]   # the samples that loaded, aligned with pixels
    failures: tuple[tuple[str, str], ...]  # (path, reason) of files skipped


def load_split(name: str, samples: list[Sample], contract: InputContract) -> SplitData:
    """Decode and preprocess a split into one preallocated uint8 array (never chunks plus a concatenated
    copy); unreadable files are skipped, logged and counted."""
    paths = [s.path for s in samples]
    pixels = np.empty((len(paths), contract.size, contract.size, contract.channels), np.uint8)
    kept_all, failures = [], []
    step = 256
    for start in progress(range(0, len(paths), step), desc=f"loading {name}", total=-(-len(paths) // step)):
        batch, kept, failed = load_batch(paths[start:start + step], contract)
        pixels[len(kept_all):len(kept_all) + len(kept)] = batch
        kept_all.extend(start + i for i in kept)
        failures.extend(failed)
    for path, reason in failures:
        log.warning("skipped unreadable image: %s", reason)
    kept_samples = tuple(samples[i] for i in kept_all)
    targets = np.array([s.target for s in kept_samples], dtype=np.int64)
    log.info("%s: %d images loaded (%d fractured), %d skipped", name, len(kept_samples), int(targets.sum()), len(failures))
    return SplitData(name, pixels[:len(kept_all)] if failures else pixels, targets, kept_samples, tuple(failures))


def cache_activations(submodel, pixels: np.ndarray, batch_size: int, desc: str, dtype: type = np.float32,
                      augment: Callable[[np.ndarray], np.ndarray] | None = None,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Run `submodel` (raw pixels -> activations) over `pixels` in batches, written into `out` (allocated here
    when not given: never a list of batches plus a concatenated copy).

    `augment` maps each uint8 batch to an augmented one just before it is fed, so an augmented view of a
    split is never held in memory, only one batch of it.
    """
    import tensorflow as tf

    call = _TRACED.get(submodel)
    if call is None:   # traced once per submodel: many splits (views, shifted copies) reuse one graph
        model = weakref.ref(submodel)   # a strong reference here would keep the dictionary's key alive forever
        call = _TRACED[submodel] = tf.function(lambda x: model()(x, training=False), reduce_retracing=True)
    if out is None:
        out = np.empty((len(pixels), *submodel.output.shape[1:]), dtype)
    starts = range(0, len(pixels), batch_size)
    for start in progress(starts, desc=desc, total=len(starts)):
        batch = pixels[start:start + batch_size]
        batch = tf.convert_to_tensor(np.asarray(augment(batch) if augment else batch, np.float32))
        out[start:start + len(batch)] = call(batch).numpy()
    return out


def class_weights(targets: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights so both classes weigh the same in the loss."""
    n = len(targets)
    n_pos = int(targets.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("class weights need both classes in the training split")
    return {0: n / (2.0 * n_neg), 1: n / (2.0 * n_pos)}
