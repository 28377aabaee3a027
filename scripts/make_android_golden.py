"""Regenerate the golden vectors that keep the Kotlin core (android_demo) byte-identical to Python.

    .venv/bin/python scripts/make_android_golden.py [--out android_demo/app/src/test/resources/golden]

Writes small generated images (PNG: gray, RGB, RGBA, non-square, every EXIF orientation; tiny JPEGs and
a 16-bit PNG for the format sniffer only), a bundle.json and expected.json. For every
image and size, expected.json holds the sha256 and a few raw values of the uint8 model input that
fracture_edge.edge_runtime.preprocessing produces, the sha256 of the float32 buffer the Python runtime
feeds a FLOAT32-input model (tflite-int8-dynamic, -fp16, -fp32) for it, plus quantization and threshold
cases. The Kotlin JUnit test (GoldenVectorsTest) must reproduce all of it exactly. Needs only the
runtime install. The output is deterministic: rerunning it rewrites the same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from fracture_edge.edge_runtime import atomic
from fracture_edge.edge_runtime.backends import TensorSpec, dequantize, quantize
from fracture_edge.edge_runtime.bundle import SCHEMA_VERSION, resolve_threshold, validate_bundle
from fracture_edge.edge_runtime.decoding import decode_gray
from fracture_edge.edge_runtime.preprocessing import InputContract, resize_gray, resize_weights, to_model_input

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "android_demo" / "app" / "src" / "test" / "resources" / "golden"
BUNDLE_SIZE = 64
EXTRA_SIZES = (224, 17)          # the real model's size, and an odd one (upsampling every image here)
# (n_in, n_out) filter matrices checked bit for bit; several rows of these sum differently when added
# left to right instead of numpy's pairwise order, which the Kotlin core must therefore copy
WEIGHT_PAIRS = ((37, 64), (53, 17), (300, 224), (2000, 224), (3001, 224), (2880, 224))
PROBABILITIES = (0.0, 0.1, 0.2, 0.2000001, 0.35, 0.5, 0.5 - 1e-9, 0.73, 1.0)


def blocky_noise(rng: np.random.Generator, height: int, width: int, block: int = 5) -> np.ndarray:
    """Random 8-bit values in block x block squares: varied pixels that still compress (small PNGs)."""
    coarse = rng.integers(0, 256, (height // block, width // block), dtype=np.uint8)
    return np.kron(coarse, np.ones((block, block), np.uint8))


def gray_images(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """8-bit grayscale test patterns (saved as mode L)."""
    yy, xx = np.mgrid[0:48, 0:64]
    bars = np.zeros((53, 37), np.uint8)
    bars[:, ::4] = 255
    bars[::7, :] = 90
    return {
        "gradient_64x48": ((xx * 4 + yy * 2) % 256).astype(np.uint8),
        "bars_37x53": bars,
        "levels_16x16": np.arange(256, dtype=np.uint8).reshape(16, 16),
        "noise_300x200": blocky_noise(rng, 200, 300),
    }


def color_images(rng: np.random.Generator) -> dict[str, Image.Image]:
    """RGB and RGBA images (luma path; alpha composited onto black)."""
    yy, xx = np.mgrid[0:200, 0:300]
    rgb = np.stack([(xx * 255 // 299), (yy * 255 // 199), blocky_noise(rng, 200, 300)], -1)
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    rgba = np.stack([rng.integers(0, 256, (30, 40)) for _ in range(3)] + [alpha], -1).astype(np.uint8)
    return {
        "rgb_300x200": Image.fromarray(rgb.astype(np.uint8), "RGB"),
        "rgb_levels_16x16": Image.fromarray(np.stack([levels] * 3, -1), "RGB"),
        "rgba_40x30": Image.fromarray(rgba, "RGBA"),
    }


def write_images(out: Path) -> list[dict]:
    """Write every PNG; return [{file, orientation}] (orientation = EXIF tag the app reads separately)."""
    rng = np.random.default_rng(6)
    images = [(name, Image.fromarray(a, "L"), 1) for name, a in gray_images(rng).items()]
    images += [(name, img, 1) for name, img in color_images(rng).items()]
    base = Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8), "L")
    images += [(f"exif{o}_30x20", base, o) for o in range(2, 9)]
    records = []
    for name, img, orientation in images:
        exif = Image.Exif()
        if orientation != 1:
            exif[0x0112] = orientation
        with atomic.atomic_path(out / f"{name}.png") as tmp:
            img.save(tmp, format="PNG", exif=exif.tobytes())
        records.append({"file": f"{name}.png", "orientation": orientation, "mode": img.mode})
    return records


def write_sniff_files(out: Path) -> list[dict]:
    """Tiny JPEGs and a 16-bit PNG for the header sniffer only (no pixel expectations: JPEG decoders
    differ, and Android decodes 16-bit PNGs to 8 bits, which the app refuses)."""
    images = [("sniff_l_8x8.jpg", Image.new("L", (8, 8), 128), True, 8),
              ("sniff_rgb_8x8.jpg", Image.new("RGB", (8, 8), (128, 64, 32)), False, 8),
              ("sniff_gray16_8x8.png", Image.fromarray(np.full((8, 8), 4000, np.uint16)), True, 16)]
    records = []
    for name, img, grayscale, bit_depth in images:
        with atomic.atomic_path(out / name) as tmp:
            img.save(tmp, format="JPEG" if name.endswith(".jpg") else "PNG")
        records.append({"file": name, "grayscale": grayscale, "bit_depth": bit_depth})
    return records


def float32_feed(pixels: np.ndarray) -> bytes:
    """The little-endian float32 buffer the Python runtime feeds a float-input model for these pixels."""
    spec = TensorSpec("x", (1, *pixels.shape), np.dtype(np.float32))
    return quantize(pixels[None], spec).astype("<f4").tobytes()


def tensor_expectation(pixels: np.ndarray, resized: np.ndarray) -> dict:
    """What the Kotlin side checks for one model input: hashes (uint8, float32 feed), samples, row sums, near ties."""
    s = pixels.shape[0]
    samples = [[0, 0], [0, s - 1], [s // 2, s // 3], [s - 1, 0], [s - 1, s - 1], [s // 3, s // 2]]
    frac = resized - np.floor(resized)
    return {
        "sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        "float32_sha256": hashlib.sha256(float32_feed(pixels)).hexdigest(),
        "samples": [[r, c, int(pixels[r, c, 0])] for r, c in samples],
        "row_sums": [int(v) for v in pixels[:, :, 0].astype(np.int64).sum(axis=1)],
        # pixels whose pre-rounding value lies within 1e-9 of a .5 tie: only these could flip if the two
        # languages summed in a different order (reported by the test, never loosened)
        "near_ties": int((np.abs(frac - 0.5) < 1e-9).sum()),
    }


def image_expectations(out: Path, records: list[dict]) -> None:
    for record in records:
        gray = decode_gray(out / record["file"])
        record["decoded_shape"] = list(gray.shape)
        record["tensors"] = {}
        for size in (BUNDLE_SIZE, *EXTRA_SIZES):
            pixels = to_model_input(gray, InputContract(size=size))
            record["tensors"][str(size)] = tensor_expectation(pixels, resize_gray(gray, size))


def quantization_cases() -> list[dict]:
    """Input packing and output dequantization through the Python runtime's own quantize/dequantize."""
    values = np.array([0, 1, 2, 63, 64, 127, 128, 200, 254, 255], np.float64)
    specs = [("uint8", 1.0, 0), ("uint8", 0.5, 3), ("int8", 1.0, -128), ("int8", 1.0000001, -128),
             ("int8", 2.0, 0), ("float32", 0.0, 0)]
    cases = []
    for dtype, scale, zero_point in specs:
        spec = TensorSpec("x", (1,), np.dtype(dtype), scale, zero_point)
        packed = quantize(values, spec)
        cases.append({"dtype": dtype, "scale": scale, "zero_point": zero_point,
                      "pixels": values.astype(int).tolist(), "packed": packed.astype(float).tolist()})
    for dtype, scale, zero_point, raw in [("uint8", 0.00390625, 0, [0, 1, 128, 255]),
                                          ("int8", 0.00390625, -128, [-128, -1, 0, 127])]:
        spec = TensorSpec("y", (1,), np.dtype(dtype), scale, zero_point)
        probs = dequantize(np.array(raw, dtype), spec)
        cases.append({"dtype": dtype, "scale": scale, "zero_point": zero_point, "raw_output": raw,
                      "probability": probs.tolist()})
    return cases


def weight_cases() -> list[dict]:
    """sha256 of each dense float64 weight matrix, and how many rows a naive left-to-right sum would get wrong."""
    cases = []
    for n_in, n_out in WEIGHT_PAIRS:
        weights = resize_weights(n_in, n_out)
        raw = 1.0 - np.abs(np.arange(n_in) + 0.5 - ((np.arange(n_out) + 0.5) * (n_in / n_out))[:, None]) / max(n_in / n_out, 1.0)
        raw = np.clip(raw, 0.0, None)
        naive = sum(float(sum(row.tolist(), 0.0)) != float(raw[i].sum()) for i, row in enumerate(raw))
        cases.append({"n_in": n_in, "n_out": n_out, "sha256": hashlib.sha256(weights.astype("<f8").tobytes()).hexdigest(),
                      "rows_a_naive_sum_gets_wrong": int(naive)})
    return cases


def make_bundle() -> dict:
    bundle = {
        "schema_version": SCHEMA_VERSION,
        "model": "golden vectors for android_demo (no model file)",
        "labels": ["not_fractured", "fractured"],
        "positive_label": "fractured",
        "output": {"kind": "sigmoid", "positive_index": 0},
        "thresholds": {"balanced": 0.5, "screening": 0.2, "default": "balanced"},
        "input": InputContract(size=BUNDLE_SIZE).to_dict(),
        "artifacts": {"tflite-int8": {
            "file": "model_int8.tflite", "bytes": 0, "sha256": "0" * 64, "format": "tflite-int8",
            "quantization": {"input": {"name": "input", "dtype": "uint8", "shape": [1, BUNDLE_SIZE, BUNDLE_SIZE, 3],
                                       "scale": 1.0, "zero_point": 0},
                             "output": {"name": "probability", "dtype": "uint8", "shape": [1, 1],
                                        "scale": 0.00390625, "zero_point": 0}}}},
    }
    return validate_bundle(bundle, "golden bundle")


FEATURES = 8   # the golden adapted head's feature count (a real DenseNet121 head reads 1,024)


def make_adapted_bundle(bundle: dict) -> dict:
    """The golden bundle plus a features output and an adapted_head (`fracture-edge adapt`)."""
    rng = np.random.default_rng(15)
    adapted = json.loads(json.dumps(bundle))
    adapted["output"]["extra"] = {"features": {"shape": [FEATURES], "meaning": "pooled features"}}
    adapted["adapted_head"] = {"kind": "logistic", "output": "features",
                               "weights": [round(float(w), 6) for w in rng.normal(0, 1.5, FEATURES)],
                               "bias": -0.75, "provenance": {"note": "golden vectors, not fitted"}}
    return validate_bundle(adapted, "golden adapted bundle")


def head_cases(adapted: dict) -> list[dict]:
    """Features (uint8 tensor values and their dequantized floats) -> P(fractured) by the Python runtime's head."""
    from fracture_edge.edge_runtime.adapt.head import AdaptedHead

    head = AdaptedHead.from_bundle(adapted)
    rng = np.random.default_rng(16)
    cases = []
    for scale in (0.02, 0.1, 0.5):          # logits from near 0 to large |z| (both sigmoid branches)
        raw = rng.integers(0, 256, FEATURES)
        features = raw * scale
        cases.append({"raw_uint8": raw.tolist(), "scale": scale, "zero_point": 0,
                      "probability": float(head.probabilities(features[None])[0])})
    return cases


SITE_TRAINING = 120   # feature vectors the golden site models are fitted on (90 fit, 30 held out)
# name suffix -> (seed, components, residual): the subspace model of bundles exported before the residual design
# ("mahalanobis-pca", files unchanged since) and the "ppca" model export writes now
SITE_MODELS = {"": (17, 5, False), "_ppca": (23, 4, True)}


def make_site_files(out: Path, adapted: dict, suffix: str) -> list[dict]:
    """site_model{suffix}.f32 + bundle_site{suffix}.json (the adapted bundle's features output with a site_model
    record), and cases: features -> distance and in_distribution score by the Python runtime
    (edge_runtime/site_model.py)."""
    from fracture_edge.edge_runtime.bundle import artifact_record
    from fracture_edge.edge_runtime.site_model import fit_site_model

    seed, components, residual = SITE_MODELS[suffix]
    rng = np.random.default_rng(seed)
    site = fit_site_model(rng.normal(0, 1, (SITE_TRAINING, FEATURES)) * np.linspace(3, 0.5, FEATURES),
                          components=components, residual=residual)
    file = f"site_model{suffix}.f32"
    site.save(out / file)
    bundle = {k: v for k, v in adapted.items() if k != "adapted_head"}
    bundle["site_model"] = {**site.describe(), "file": file, **artifact_record(out / file)}
    atomic.write_json(out / f"bundle_site{suffix}.json", validate_bundle(bundle, "golden site bundle"))
    cases = []
    for spread in (0.5, 1.0, 2.0, 4.0):
        features = rng.normal(0, spread, (4, FEATURES)).astype(np.float32).astype(np.float64)
        for vector, d, score in zip(features, site.distances(features), site.scores(features)):
            if np.min(np.abs(site.held_out - d)) > 1e-4 * d:     # no held-out distance within rounding of it
                cases.append({"features": vector.tolist(), "distance": float(d), "in_distribution": float(score),
                              "outside_training_data": bool(score < site.flag_below)})
    return cases


def decision_cases(bundle: dict) -> list[dict]:
    negative = next(label for label in bundle["labels"] if label != bundle["positive_label"])
    cases = []
    for name in ("balanced", "screening"):
        _, threshold = resolve_threshold(bundle, name)
        for p in PROBABILITIES:
            label = bundle["positive_label"] if p >= threshold else negative
            cases.append({"threshold": name, "probability": p, "label": label})
    return cases


def compact_json(obj: dict) -> str:
    """One line per top-level entry and per image: small enough to commit, still diffable."""
    lines = [json.dumps(k) + ": " + json.dumps(v, separators=(",", ":")) for k, v in obj.items() if k != "images"]
    images = ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in obj["images"])
    return "{\n" + ",\n".join(lines + [f'"images": [\n  {images}\n]']) + "\n}\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle()
    records = write_images(out)
    image_expectations(out, records)
    atomic.write_json(out / "bundle.json", bundle)
    adapted = make_adapted_bundle(bundle)
    atomic.write_json(out / "bundle_adapted.json", adapted)
    atomic.write_text(out / "expected.json", compact_json({
        "generator": "scripts/make_android_golden.py",
        "sizes": [BUNDLE_SIZE, *EXTRA_SIZES],
        "images": records,
        "sniff": write_sniff_files(out),
        "weights": weight_cases(),
        "quantization": quantization_cases(),
        "decisions": decision_cases(bundle),
        "adapted_head": head_cases(adapted),
        **{f"site_model{suffix}": make_site_files(out, adapted, suffix) for suffix in SITE_MODELS},
    }))
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {len(list(out.iterdir()))} files, {total / 1024:.0f} KB, into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
