"""The declared schema of bundle.json (version 1), checked in one pass with one line per problem.

Every consumer (predict, info, bench, eval, export's embedding, the Android app's FractureBundle.kt)
relies on these fields; anything else in the bundle (hparams, data, versions, export) is free-form.
`bundle_problems` never raises on odd JSON: it returns what is wrong, path by path.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

SCHEMA_VERSION = 1
THRESHOLD_NAMES = ("balanced", "screening")
SHA256 = re.compile(r"[0-9a-f]{64}")
EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MIN_SIZE, MAX_SIZE = 16, 1024

# input contract: the only values this runtime (and the Android app) implements
INPUT_STRINGS = {
    "color": "gray-to-rgb",
    "resize": "triangle-antialias",
    "fit": "stretch",
    "rounding": "floor(x+0.5), clip 0..255",
    "layout": "NHWC",
}
# what the graph does to the raw pixels inside (train/backbones.py): one per backbone; the device feeds raw pixels
NORMALIZATIONS = ("in-graph imagenet (x/255 - mean)/std", "in-graph mobilenet x/127.5 - 1")
HEAD_KINDS = ("logistic",)   # adapted_head: P = sigmoid(output . weights + bias) (fracture-edge adapt)
REQUIRED_KEYS = ("schema_version", "labels", "positive_label", "thresholds", "input", "output")
SITE_METHOD = "mahalanobis-pca"   # site_model: edge_runtime/site_model.py, the subspace distance (first design)
SITE_METHOD_PPCA = "ppca"         # ... with the residual outside the subspace (probabilistic PCA; residual_scale)
SITE_METHODS = (SITE_METHOD, SITE_METHOD_PPCA)
SITE_LAYOUT = ("mean", "components", "scales", "held_out", "values")
METRIC_NUMBERS = ("auc", "threshold", "f1", "sensitivity", "specificity", "precision", "accuracy")
METRIC_COUNTS = ("n", "n_positive")


def _type_name(value: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 60 else text


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_plain_filename(value: Any) -> bool:
    """A file name inside the run folder: no folder part, not '.', '..' or hidden-path tricks."""
    return (isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and "\\" not in value
            and "\0" not in value)


class _Problems(list):
    def need(self, ok: bool, where: str, what: str, value: Any) -> bool:
        if not ok:
            self.append(f"{where} must be {what}, got {_show(value)} ({_type_name(value)})")
        return ok

    def object(self, parent: dict, key: str, where: str) -> dict | None:
        """parent[key] when it is an object; None (noted unless the key is absent) otherwise."""
        if key not in parent:
            return None
        value = parent[key]
        return value if self.need(isinstance(value, dict), where, "an object", value) else None


def bundle_problems(bundle: Any) -> list[str]:
    """Every way `bundle` breaks the schema, one line each ('<field> must be ..., got ...'); [] when valid."""
    problems = _Problems()
    if not isinstance(bundle, dict):
        problems.need(False, "the bundle", "a JSON object", bundle)
        return problems
    missing = [key for key in REQUIRED_KEYS if key not in bundle]
    if missing:
        problems.append(f"missing key(s) {', '.join(missing)}")
    _check_version(bundle, problems)
    _check_labels(bundle, problems)
    thresholds = problems.object(bundle, "thresholds", "thresholds")
    if thresholds is not None:
        _check_thresholds(thresholds, problems)
    contract = problems.object(bundle, "input", "input")
    if contract is not None:
        _check_input(contract, problems)
    output = problems.object(bundle, "output", "output")
    if output is not None:
        problems.need(output.get("kind") == "sigmoid", "output.kind", "'sigmoid'", output.get("kind"))
        index = output.get("positive_index", 0)
        problems.need(is_integer(index) and index == 0, "output.positive_index",
                      "0 (a sigmoid model has one output: P(positive label))", index)
        extra = problems.object(output, "extra", "output.extra")
        if extra is not None:
            _check_extra_outputs(extra, problems)
    head = problems.object(bundle, "adapted_head", "adapted_head")
    if head is not None:
        _check_adapted_head(head, (output or {}).get("extra"), problems)
    site = problems.object(bundle, "site_model", "site_model")
    if site is not None:
        _check_site_model(site, (output or {}).get("extra"), problems)
    artifacts = problems.object(bundle, "artifacts", "artifacts")
    if artifacts is not None:
        for name, record in artifacts.items():
            _check_artifact(record, f"artifacts.{name}", problems)
    metrics = problems.object(bundle, "metrics", "metrics")
    if metrics is not None:
        _check_metrics(metrics, problems)
    if "model" in bundle:
        problems.need(isinstance(bundle["model"], str), "model", "a string", bundle["model"])
    return problems


def _check_version(bundle: dict, problems: _Problems) -> None:
    if "schema_version" not in bundle:
        return
    if not is_integer(bundle["schema_version"]):
        problems.need(False, "schema_version", f"the integer {SCHEMA_VERSION}", bundle["schema_version"])
    elif bundle["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {bundle['schema_version']} is not supported: this fracture-edge reads "
                        f"version {SCHEMA_VERSION} (a newer fracture-edge wrote it? upgrade)")


def _check_labels(bundle: dict, problems: _Problems) -> None:
    labels, positive = bundle.get("labels"), bundle.get("positive_label")
    if "labels" not in bundle:
        return
    if problems.need(isinstance(labels, list) and len(labels) == 2
                       and all(isinstance(x, str) and x.strip() for x in labels) and labels[0] != labels[1],
                       "labels", "a list of two different non-empty names", labels):
        if "positive_label" in bundle:
            problems.need(isinstance(positive, str) and positive in labels, "positive_label",
                          f"one of the labels ({', '.join(labels)})", positive)


def _check_thresholds(thresholds: dict, problems: _Problems) -> None:
    for name in THRESHOLD_NAMES:
        value = thresholds.get(name)
        if name not in thresholds:
            problems.append(f"thresholds.{name}: missing")
        else:
            problems.need(is_number(value) and 0.0 <= value <= 1.0, f"thresholds.{name}", "a number in [0, 1]", value)
    if "default" in thresholds:
        problems.need(thresholds["default"] in THRESHOLD_NAMES, "thresholds.default",
                      f"one of {', '.join(THRESHOLD_NAMES)}", thresholds["default"])


def _check_input(contract: dict, problems: _Problems) -> None:
    size = contract.get("size")
    if "size" not in contract:
        problems.append("input.size: missing")
    else:
        problems.need(is_integer(size) and MIN_SIZE <= size <= MAX_SIZE, "input.size",
                      f"an integer from {MIN_SIZE} to {MAX_SIZE} (pixels)", size)
    if "channels" in contract:
        problems.need(is_integer(contract["channels"]) and contract["channels"] == 3, "input.channels",
                      "3 (gray repeated into RGB)", contract["channels"])
    if "pixel_range" in contract:
        value = contract["pixel_range"]
        problems.need(isinstance(value, list) and value == [0, 255] and all(map(is_integer, value)),
                      "input.pixel_range", "[0, 255]", value)
    for key, expected in INPUT_STRINGS.items():
        if key in contract:
            problems.need(contract[key] == expected, f"input.{key}", f"{expected!r} (the only input contract implemented)",
                          contract[key])
    if "normalization" in contract:
        problems.need(contract["normalization"] in NORMALIZATIONS, "input.normalization",
                      f"one of {', '.join(map(repr, NORMALIZATIONS))} (done inside the model graph)",
                      contract["normalization"])


def _check_extra_outputs(extra: dict, problems: _Problems) -> None:
    """output.extra: {name: {"shape": [per-image dims], "meaning": str}}; the runtime finds each by its shape,
    so shapes must differ from each other and from the probability's single value."""
    seen: dict[tuple, str] = {}
    for name, record in extra.items():
        where = f"output.extra.{name}"
        problems.need(EXTRA_NAME.fullmatch(name) is not None, f"output.extra name {name!r}",
                      "lower-case letters, digits and _", name)
        if not problems.need(isinstance(record, dict), where, "an object", record):
            continue
        shape = record.get("shape")
        if not problems.need(isinstance(shape, list) and 1 <= len(shape) <= 4
                             and all(is_integer(d) and d >= 1 for d in shape) and math.prod(shape) > 1,
                             f"{where}.shape", "a list of 1 to 4 positive sizes with more than one value", shape):
            continue
        if tuple(shape) in seen:
            problems.append(f"{where}.shape {shape} is also {seen[tuple(shape)]}'s: the runtime finds outputs by shape")
        seen[tuple(shape)] = name
        if "meaning" in record:
            problems.need(isinstance(record["meaning"], str), f"{where}.meaning", "a string", record["meaning"])


def _check_adapted_head(head: dict, extra: Any, problems: _Problems) -> None:
    """adapted_head: {"kind": "logistic", "output": NAME, "weights": [...], "bias": b, "provenance": {...}}; the
    runtime computes P = sigmoid(output NAME . weights + bias), so NAME must be a declared one-dimensional
    extra output with as many values as there are weights."""
    missing = [key for key in ("kind", "output", "weights", "bias") if key not in head]
    if missing:
        problems.append(f"adapted_head: missing key(s) {', '.join(missing)}")
    if "kind" in head:
        problems.need(head["kind"] in HEAD_KINDS, "adapted_head.kind", f"one of {', '.join(HEAD_KINDS)}", head["kind"])
    weights = head.get("weights")
    if "weights" in head and problems.need(isinstance(weights, list) and len(weights) > 0, "adapted_head.weights",
                                           "a non-empty list of numbers", weights):
        bad = [i for i, w in enumerate(weights) if not is_number(w)]
        if bad:
            problems.append(f"adapted_head.weights must all be finite numbers: {len(bad)} of {len(weights)} are not "
                            f"(first: [{bad[0]}] = {_show(weights[bad[0]])}, {_type_name(weights[bad[0]])})")
    if "bias" in head:
        problems.need(is_number(head["bias"]), "adapted_head.bias", "a finite number", head["bias"])
    if "provenance" in head:
        problems.need(isinstance(head["provenance"], dict), "adapted_head.provenance", "an object", head["provenance"])
    name = head.get("output")
    if "output" not in head:
        return
    declared = extra.get(name) if isinstance(extra, dict) and isinstance(name, str) else None
    if not isinstance(declared, dict) or not isinstance(declared.get("shape"), list):
        problems.need(False, "adapted_head.output", "the name of an output declared in output.extra", name)
        return
    shape = declared["shape"]
    if len(shape) != 1:
        problems.append(f"adapted_head.output {name!r} has per-image shape {shape}; a head reads a vector (one dimension)")
    elif isinstance(weights, list) and weights and is_integer(shape[0]) and len(weights) != shape[0]:
        problems.append(f"adapted_head.weights has {len(weights)} values but output.extra.{name} has {shape[0]} "
                        "(a head fitted on another model?)")


def _check_site_model(site: dict, extra: Any, problems: _Problems) -> None:
    """site_model (edge_runtime/site_model.py): its file like an artifact's, its sizes, and its features matching
    the declared features output it reads."""
    _check_artifact(site, "site_model", problems)
    method = site.get("method")
    problems.need(method in SITE_METHODS, "site_model.method",
                  f"one of {', '.join(map(repr, SITE_METHODS))} (the methods this fracture-edge reads)", method)
    if method == SITE_METHOD_PPCA:
        scale = site.get("residual_scale")
        problems.need(is_number(scale) and scale > 0, "site_model.residual_scale", "a number > 0", scale)
    choice = problems.object(site, "component_choice", "site_model.component_choice")   # export's K choice
    if choice is not None:
        problems.need(choice.get("chosen") == site.get("components"), "site_model.component_choice.chosen",
                      f"site_model.components ({site.get('components')!r})", choice.get("chosen"))
    for key in ("features", "components", "held_out"):
        problems.need(is_integer(site.get(key)) and site.get(key) >= 1, f"site_model.{key}", "an integer >= 1",
                      site.get(key))
    flag = site.get("flag_below")
    problems.need(is_number(flag) and 0.0 < flag < 1.0, "site_model.flag_below", "a number in (0, 1)", flag)
    layout = site.get("layout")
    if problems.need(isinstance(layout, dict) and all(is_integer(layout.get(k)) for k in SITE_LAYOUT),
                     "site_model.layout", f"an object of integer offsets ({', '.join(SITE_LAYOUT)})", layout):
        features = (extra or {}).get("features") if isinstance(extra, dict) else None
        shape = features.get("shape") if isinstance(features, dict) else None
        problems.need(isinstance(shape, list) and shape == [site.get("features")], "site_model.features",
                      f"the size of the declared features output ({shape})", site.get("features"))


def _check_artifact(record: Any, where: str, problems: _Problems) -> None:
    if not problems.need(isinstance(record, dict), where, "an object", record):
        return
    if "file" not in record:
        problems.append(f"{where}.file: missing")
    else:
        problems.need(is_plain_filename(record["file"]), f"{where}.file", "a file name in the run folder",
                      record["file"])
    if "bytes" in record:
        problems.need(is_integer(record["bytes"]) and record["bytes"] >= 0, f"{where}.bytes",
                      "a byte count (integer >= 0)", record["bytes"])
    if "sha256" in record:
        problems.need(isinstance(record["sha256"], str) and SHA256.fullmatch(record["sha256"]) is not None,
                      f"{where}.sha256", "64 lower-case hex digits", record["sha256"])


def _check_metrics(metrics: dict, problems: _Problems) -> None:
    """Only the fields info prints are typed; a split's other values are free-form."""
    for split, values in metrics.items():
        if not isinstance(values, dict):
            continue  # e.g. train_seconds: 1286.2
        _check_fields(values, f"metrics.{split}", METRIC_NUMBERS, _number_or_null, "a number or null", problems)
        _check_fields(values, f"metrics.{split}", METRIC_COUNTS, _count, "an integer >= 0", problems)
        for name in THRESHOLD_NAMES:
            at = values.get(name)
            if name in values and problems.need(isinstance(at, dict), f"metrics.{split}.{name}", "an object", at):
                _check_fields(at, f"metrics.{split}.{name}", METRIC_NUMBERS, _number_or_null, "a number or null",
                              problems)


def _number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _count(value: Any) -> bool:
    return is_integer(value) and value >= 0


def _check_fields(values: dict, where: str, keys: tuple, ok: Callable[[Any], bool], what: str,
                  problems: _Problems) -> None:
    for key in keys:
        if key in values:
            problems.need(ok(values[key]), f"{where}.{key}", what, values[key])
