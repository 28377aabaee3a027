"""The one name-keyed table of deployable formats: drives export, verification, bench and the README."""
from __future__ import annotations

from dataclasses import dataclass


EDGE_BACKENDS: tuple[str, ...] = ("tflite", "onnx")   # opened by edge_runtime/backends.py; keras is the training one


@dataclass(frozen=True)
class Format:
    name: str          # the vocabulary used everywhere: keras, tflite-fp32, ...
    filename: str      # artifact file name inside a run folder (precision in the name)
    backend: str       # keras | tflite | onnx: the library that opens it
    precision: str     # fp32 | fp16 | int8
    description: str
    exact: bool = False        # judged by exactness against Keras (fp32); else compressed: the non-inferiority verdict
    quantization: str = ""     # how export makes it from the float model: fp32 | fp16 | int8-dynamic | int8 (calibrated)
    default: bool = True   # exported by a plain `fracture-edge export RUN` (opt-in rows only with --formats)
    preference: int = 0    # edge rows: the order a run folder's artifact is picked in without --format (1 first)
    deployable: bool = False   # export's `deploy:` choice and the Android app take the first passed of these rows

    @property
    def edge(self) -> bool:
        """Whether the edge runtime runs it (a .tflite or .onnx artifact); keras is the training reference."""
        return self.backend in EDGE_BACKENDS

    @property
    def compressed(self) -> bool:
        """Everything not exact (fp16, int8 of any kind, custom files): judged by the non-inferiority verdict."""
        return not self.exact


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("keras", "model.keras", "keras", "fp32", "Keras 3 model (training framework; reference)", exact=True),
        Format("tflite-fp32", "model_fp32.tflite", "tflite", "fp32", "TFLite, float32", exact=True,
               quantization="fp32", preference=4, deployable=True),
        Format("tflite-fp16", "model_fp16.tflite", "tflite", "fp16", "TFLite, float16 weights, float32 compute",
               quantization="fp16", preference=3, deployable=True),
        Format("tflite-int8-dynamic", "model_int8_dynamic.tflite", "tflite", "int8",
               "TFLite, dynamic-range int8: int8 weights, float32 activations quantized per image at run time",
               quantization="int8-dynamic", preference=2, deployable=True),
        Format("tflite-int8", "model_int8.tflite", "tflite", "int8", "TFLite, full-integer PTQ, uint8 pixel input",
               quantization="int8", preference=1, deployable=True),
        Format("onnx-fp32", "model_fp32.onnx", "onnx", "fp32", "ONNX (tf2onnx), float32", exact=True,
               quantization="fp32", preference=6),
        Format("onnx-int8", "model_int8.onnx", "onnx", "int8", "ONNX, static QDQ int8 (per-channel weights)",
               quantization="int8", preference=5),
        Format("tflite-int8-mixed", "model_int8_mixed.tflite", "tflite", "int8",
               "TFLite int8 with the first layers kept in float (opt-in float-prefix search)", quantization="int8",
               default=False, preference=7),
        Format("onnx-int8-mixed", "model_int8_mixed.onnx", "onnx", "int8",
               "ONNX int8 with the first nodes kept in float (opt-in float-prefix search)", quantization="int8",
               default=False, preference=8),
    )
}

EXPORT_FORMATS: tuple[str, ...] = tuple(name for name, fmt in FORMATS.items() if fmt.edge)
DEFAULT_EXPORT_FORMATS: tuple[str, ...] = tuple(name for name in EXPORT_FORMATS if FORMATS[name].default)
MIXED_SUFFIX = "-mixed"   # a mixed row is its base int8 format with some ops in float: tflite-int8-mixed
# Default artifact when a run folder is given without --format: compressed TFLite first (the deploy order, as
# verified), then ONNX, then the opt-in mixed rows. Read from the rows' `preference`.
FORMAT_PREFERENCE: tuple[str, ...] = tuple(sorted((name for name, fmt in FORMATS.items() if fmt.edge),
                                                  key=lambda name: FORMATS[name].preference))
# What to deploy: the first deployable row that passed the fidelity verdict (docs/fidelity-verdict.md, "Which
# artifact to deploy": tflite-int8, tflite-int8-dynamic, tflite-fp16, tflite-fp32); the Android demo's
# FractureBundle.APP_FORMATS is the same list (tests/test_formats.py). Full integer is smallest and fastest.
DEPLOY_PREFERENCE: tuple[str, ...] = tuple(name for name in FORMAT_PREFERENCE if FORMATS[name].deployable)


def get_format(name: str) -> Format:
    """Look a format up by name; unknown names raise ValueError listing the valid ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; valid formats: {', '.join(FORMATS)}") from None


def parse_formats(text: str, allowed: tuple[str, ...] = tuple(FORMATS)) -> tuple[str, ...]:
    """Parse a comma-separated format list ('tflite-int8,onnx-fp32'); 'all' means every allowed one."""
    if text.strip() == "all":
        return allowed
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in allowed:
            raise ValueError(f"unknown format {name!r}; valid formats: {', '.join(allowed)}")
    return names


def format_for_file(path: str) -> Format:
    """The format of an artifact file, by its file name (model_int8.tflite -> tflite-int8)."""
    from pathlib import Path

    name = Path(path).name
    for fmt in FORMATS.values():
        if name == fmt.filename:
            return fmt
    suffix = Path(path).suffix.lower()
    if suffix[1:] in EDGE_BACKENDS:
        backend = suffix[1:]
        return Format(f"{backend}-custom", name, backend, "unknown", f"{backend} artifact")
    if suffix in (".keras", ".h5"):
        return FORMATS["keras"]
    raise ValueError(f"{path}: not a model file (expected .tflite, .onnx or .keras)")
