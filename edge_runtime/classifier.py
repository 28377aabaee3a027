"""Classifier: load an exported model with its bundle and classify radiographs, without TensorFlow.

    clf = Classifier("runs/demo")                 # run folder: tflite-int8 when present
    clf.predict_file("wrist.png")                 # Prediction(probability=0.91, label='fractured', ...)
    clf.predict_file("wrist.png", heatmap=True).heatmap   # (h, w) class activation map, when exported

Extra outputs (bundle output.extra: name -> per-image shape) are found among the artifact's outputs by
that shape; `outputs()` runs the model once and returns the probability and any of them by name.

A bundle with an adapted_head (`fracture-edge adapt`) replaces the artifact's own probability by
sigmoid(features . w + b) computed from the artifact's features output, everywhere (predict, eval, bench,
serve). Its heatmap is not offered then: it explains the base model's head, not the adapted one.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .adapt.head import AdaptedHead
from .artifacts import resolve_model, verify_resolved
from .backends import open_backend
from .bundle import BundleError, input_contract, resolve_threshold
from .errors import FractureEdgeError
from .preprocessing import load_batch, load_model_input
from .site_model import SiteModel, site_model_for

FEATURES = "features"   # the extra output the site check reads (export/extra_outputs.py)

log = logging.getLogger(__name__)


class ModelRunError(FractureEdgeError):
    """The model loaded but its runtime failed on an inference (a model that does not fit its bundle)."""


@dataclass(frozen=True)
class Prediction:
    path: str
    probability: float     # P(positive label)
    label: str             # positive label when probability >= threshold
    threshold_name: str    # balanced | screening | custom
    threshold: float
    latency_ms: float      # model inference time for this image (its share of the batch), no decoding
    heatmap: np.ndarray | None = field(default=None, compare=False, repr=False)   # (h, w) when asked for
    in_distribution: float | None = None        # site check score (conformal p-value), None without a site model
    outside_training_data: bool | None = None   # in_distribution < the site model's flag level


@dataclass(frozen=True)
class FileFailure:
    path: str
    reason: str            # why the file was skipped, without the path


def failure_for(path: str, message: str) -> FileFailure:
    """A FileFailure whose reason drops the '<path>: ' prefix the error message starts with."""
    prefix = f"{path}: "
    return FileFailure(path, message[len(prefix):] if message.startswith(prefix) else message)


class Classifier:
    """An edge model plus its bundle: preprocessing contract, labels, thresholds."""

    def __init__(self, model: str | os.PathLike, num_threads: int | None = None,
                 threshold: str | float | None = None, bundle: dict | None = None, format: str | None = None,
                 integrity: str = "trust-embedded"):
        """integrity: 'require' | 'allow-unverified' | 'trust-embedded' (artifacts.verify_resolved); the CLI
        uses 'require', or 'allow-unverified' with --allow-unverified."""
        resolved = resolve_model(model, format, bundle)
        self.integrity = verify_resolved(resolved, integrity)   # 'verified' | 'unverified'
        self.path, self.format, self.bundle = resolved.path, resolved.format, resolved.bundle
        self.bundle_source = resolved.bundle_source
        self.contract = input_contract(self.bundle)
        self.threshold_name, self.threshold = resolve_threshold(self.bundle, threshold)
        self._backend = open_backend(self.path, self.format.backend, num_threads)
        self.runtime = self._backend.runtime
        self.num_threads = num_threads
        self._check_input_shape()
        self._extra = extra_output_indices(self.bundle, self._backend)
        self.head = AdaptedHead.from_bundle(self.bundle)
        if self.head is not None and self.head.output not in self._extra:
            raise BundleError(f"{self.path}: the bundle's adapted head reads the {self.head.output!r} output, which "
                              "this model lacks (re-export the base run, then run fracture-edge adapt again)")
        self.site = self._site_model()
        log.debug("loaded %s (%s, %s) with %s", self.path, self.format.name, resolved.bundle_source, self.runtime)

    def _site_model(self) -> SiteModel | None:
        """The run's site model (bundle site_model + its file beside the artifact), when the artifact has the
        features output it reads."""
        if FEATURES not in self._extra:
            return None
        try:
            site = site_model_for(self.bundle, self.path.parent)
        except (ValueError, OSError) as exc:
            raise BundleError(str(exc)) from None
        if site is not None and site.features != int(np.prod(self._extra[FEATURES][1])):
            raise BundleError(f"{self.path}: the site model reads {site.features} features, the model gives "
                              f"{self._extra[FEATURES][1]} (a site model of another run?)")
        return site

    def _check_input_shape(self) -> None:
        shape = self._backend.input_details.shape
        expected = (self.contract.size, self.contract.size, self.contract.channels)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise BundleError(f"{self.path}: model input shape {shape} does not match the bundle's "
                              f"input contract (N, {', '.join(map(str, expected))})")
        output = self._backend.output_details.shape
        if len(output) < 1 or 0 in output[1:]:
            raise BundleError(f"{self.path}: model output shape {output} has no probability to read")

    @property
    def input_details(self):
        return self._backend.input_details

    @property
    def positive_label(self) -> str:
        return self.bundle["positive_label"]

    def label_for(self, probability: float) -> str:
        negative = next(label for label in self.bundle["labels"] if label != self.positive_label)
        return self.positive_label if probability >= self.threshold else negative

    @property
    def extra_outputs(self) -> tuple[str, ...]:
        """Names of the extra outputs this artifact has (declared in the bundle and found in the model); with an
        adapted head, not the heatmap (it explains the base model's head)."""
        return tuple(name for name in self._extra if self.head is None or name != "heatmap")

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) raw pixels -> float64 (N,) probabilities of the positive label."""
        return self.outputs(pixels)[0]

    def outputs(self, pixels: np.ndarray, names: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """uint8 (N, S, S, 3) raw pixels -> (probabilities (N,), {name: (N, *declared shape)}) in one run."""
        if self.head is not None and "heatmap" in names:
            raise FractureEdgeError(f"{self.path}: no heatmap with an adapted head: the model's heatmap explains "
                                    "the base model's decision, not the adapted one (use the base run for heatmaps)")
        missing = [name for name in names if name not in self._extra]
        if missing:
            raise FractureEdgeError(f"{self.path}: this model has no {', '.join(missing)} output "
                                    f"(has: {', '.join(self._extra) or 'none'}; re-export the run to add it)")
        pixels = np.asarray(pixels)
        expected = (self.contract.size, self.contract.size, self.contract.channels)
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise ValueError(f"expected pixels of shape (N, {', '.join(map(str, expected))}), got {pixels.shape}")
        if len(pixels) == 0:
            return np.zeros(0, np.float64), {n: np.zeros((0, *self._extra[n][1])) for n in names}
        wanted = tuple(names) + ((self.head.output,) if self.head and self.head.output not in names else ())
        indices = (self._backend.probability_index, *(self._extra[n][0] for n in wanted))
        try:
            outputs = self._backend.run_outputs(pixels, indices) if wanted else [self._backend.run(pixels)]
        except Exception as exc:  # the runtimes raise their own types; one clear line, never a traceback
            text = str(exc).strip().splitlines()
            raise ModelRunError(f"{self.path}: {self.runtime} failed to run the model "
                                f"({type(exc).__name__}: {text[0] if text else ''})") from None
        extra = {name: out.reshape(len(pixels), *self._extra[name][1]) for name, out in zip(wanted, outputs[1:])}
        if self.head is not None:
            probs = self.head.probabilities(extra[self.head.output])
        else:
            probs = outputs[0][:, int(self.bundle["output"].get("positive_index", 0))].astype(np.float64)
        return probs, {name: extra[name] for name in names}

    def scored_outputs(self, pixels: np.ndarray, heatmap: bool = False) -> tuple[np.ndarray, dict]:
        """(probabilities, {"heatmap": maps, "in_distribution": site check scores} as available) from one run."""
        names = (("heatmap",) if heatmap else ()) + ((FEATURES,) if self.site is not None else ())
        probs, extra = self.outputs(pixels, names)
        if self.site is not None:
            extra["in_distribution"] = self.site.scores(extra.pop(FEATURES))
        return probs, extra

    def _timed(self, pixels: np.ndarray, heatmap: bool = False) -> tuple[np.ndarray, dict, float]:
        start = time.perf_counter()
        probs, extra = self.scored_outputs(pixels, heatmap)
        return probs, extra, (time.perf_counter() - start) * 1000.0 / max(len(pixels), 1)

    def _prediction(self, path, probability: float, latency_ms: float, extra: dict, row: int) -> Prediction:
        p = float(probability)
        heatmap = extra["heatmap"][row] if "heatmap" in extra else None
        score = float(extra["in_distribution"][row]) if "in_distribution" in extra else None
        return Prediction(str(path), p, self.label_for(p), self.threshold_name, self.threshold, latency_ms, heatmap,
                          score, None if score is None else score < self.site.flag_below)

    def predict_file(self, path: str | os.PathLike, heatmap: bool = False) -> Prediction:
        """Classify one image file; raises ImageDecodeError (a FractureEdgeError) on a bad file."""
        probs, extra, latency = self._timed(load_model_input(path, self.contract)[None], heatmap)
        return self._prediction(path, probs[0], latency, extra, 0)

    def predict_files(self, paths: Sequence, batch_size: int = 16, heatmap: bool = False) -> list[Prediction | FileFailure]:
        """Classify many files in batches, in input order; bad files become FileFailure, never fatal."""
        results: list = []
        for chunk in batches(list(paths), batch_size):
            results.extend(self.predict_batch(chunk, heatmap))
        return results

    def predict_batch(self, paths: Sequence, heatmap: bool = False) -> list[Prediction | FileFailure]:
        """Classify one batch of files (decoded together, run as one batch when the model allows)."""
        pixels, kept, failures = load_batch(paths, self.contract)
        probs, extra, latency = self._timed(pixels, heatmap)
        results: list = [None] * len(paths)
        for row, (index, probability) in enumerate(zip(kept, probs)):
            results[index] = self._prediction(paths[index], probability, latency, extra, row)
        failed = iter(failures)
        for index, result in enumerate(results):
            if result is None:
                path, message = next(failed)
                results[index] = failure_for(path, message)
        return results


def extra_output_indices(bundle: dict, backend) -> dict[str, tuple[int, tuple[int, ...]]]:
    """{name: (backend output index, per-image shape)} of the bundle's extra outputs found in the model.

    Matched by shape (the tensor names differ between converters; TFLite even reorders outputs): an
    output whose per-image shape, without a trailing 1, equals the declared one. A declared output the
    model lacks (an artifact exported before it existed) is left out; asking for it is an error then.
    """
    found, used = {}, {backend.probability_index}
    for name, record in (bundle["output"].get("extra") or {}).items():
        declared = tuple(int(d) for d in record["shape"])
        for index, spec in enumerate(backend.output_specs):
            shape = tuple(int(d) for d in spec.shape[1:])
            if index not in used and (shape == declared or shape == (*declared, 1)):
                found[name] = (index, declared)
                used.add(index)
                break
        else:
            log.debug("%s: declared output %r not found in the model", bundle.get("model"), name)
    return found


def batches(items: list, size: int) -> Iterable[list]:
    """Consecutive slices of at most `size` items."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def open_classifier(model: str | os.PathLike, **options) -> Classifier:
    """Classifier(model, **options); raises FractureEdgeError with one clear line on any load problem."""
    try:
        return Classifier(model, **options)
    except FractureEdgeError:
        raise
    except (OSError, RuntimeError) as exc:
        raise FractureEdgeError(f"{model}: cannot load model ({exc})") from None
