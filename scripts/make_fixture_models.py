"""Regenerate the tiny fixture models in tests/fixtures/models/ (needs the export extra: TensorFlow + onnx).

    .venv/bin/python scripts/make_fixture_models.py [--out tests/fixtures/models]

Writes a TFLite float32, a TFLite full-int8 (uint8 input and output), a TFLite dynamic-range int8 (int8
weights, float32 input; its conv is widened to 40 channels so the converter quantizes it: it skips weights
of fewer than 1,024 values, and the 36 added channels carry no weight into the output) and an ONNX float32
model of one
tiny conv net with the real I/O contract: input "pixels" (N, 32, 32, 3) raw 0..255, output (N, 1)
sigmoid P(fractured). The weights are fixed (seeded), and the first conv channel averages the pixels
with a large positive output weight, so P(fractured) rises with image brightness: tests can assert
"bright image -> higher probability" and float/int8 agreement. Then writes bundle.json and embeds it
into each artifact (export/embed.py), so each file also works alone. Total size: a few KB.

With --heatmap (default folder tests/fixtures/heatmap_models) the same net also outputs its class
activation map, "heatmap" (N, 30, 30, 1): the ReLU feature map through the dense weights per cell,
declared in bundle.json under output.extra as the real export does (export/extra_outputs.py).

With --features (default folder tests/fixtures/adapt_models) it also outputs "features" (N, 4): the pooled
vector the dense layer reads, the input of a head fitted by `fracture-edge adapt` (issue 15).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fracture_edge.edge_runtime.bundle import SCHEMA_VERSION, artifact_record, save_bundle
from fracture_edge.edge_runtime.preprocessing import InputContract
from fracture_edge.export.embed import embed_bundle

SIZE = 32
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "models"
HEATMAP_OUT = DEFAULT_OUT.parent / "heatmap_models"
FEATURES_OUT = DEFAULT_OUT.parent / "adapt_models"
HEATMAP_GRID = SIZE - 2
FEATURE_SIZE = 4


def make_weights(seed: int = 0) -> dict:
    """Conv 3x3x3x4 (channel 0: plain mean), global average pool, dense 4 -> 1 (brightness dominates)."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0.0, 0.1, size=(3, 3, 3, 4)).astype(np.float32)
    kernel[..., 0] = 1.0 / 27.0
    conv_bias = np.array([0.0, 0.05, -0.05, 0.02], np.float32)
    dense = np.array([[8.0], [0.3], [-0.3], [0.2]], np.float32)
    dense_bias = np.array([-4.0], np.float32)
    return {"kernel": kernel, "conv_bias": conv_bias, "dense": dense, "dense_bias": dense_bias}


def reference_probs(pixels: np.ndarray, w: dict) -> np.ndarray:
    """The same net in numpy (documents what the models compute)."""
    x = pixels.astype(np.float32) / 255.0
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # N,30,30,C,3,3
    conv = np.einsum("nhwcij,ijco->nhwo", windows, w["kernel"]) + w["conv_bias"]
    pooled = np.maximum(conv, 0).mean(axis=(1, 2))
    return 1.0 / (1.0 + np.exp(-(pooled @ w["dense"] + w["dense_bias"])))


def calibration_images(n: int = 64, seed: int = 1) -> np.ndarray:
    """Images from black to white with noise: the int8 calibration set covers the full pixel range."""
    rng = np.random.default_rng(seed)
    levels = np.linspace(0, 255, n)[:, None, None, None]
    noise = rng.normal(0, 40, size=(n, SIZE, SIZE, 3))
    return np.clip(levels + noise, 0, 255).astype(np.float32)


DYNAMIC_CHANNELS = 40   # 3 x 3 x 3 x 40 = 1,080 conv weights: enough for dynamic-range quantization


def widened(w: dict, channels: int = DYNAMIC_CHANNELS) -> dict:
    """The same net with `channels` conv channels: the added ones have small weights and a zero dense weight."""
    rng = np.random.default_rng(1)
    extra = channels - w["kernel"].shape[-1]
    return {"kernel": np.concatenate([w["kernel"], rng.normal(0, 0.01, (3, 3, 3, extra)).astype(np.float32)], -1),
            "conv_bias": np.concatenate([w["conv_bias"], np.zeros(extra, np.float32)]),
            "dense": np.concatenate([w["dense"], np.zeros((extra, 1), np.float32)]), "dense_bias": w["dense_bias"]}


def convert_tflite(w: dict, int8: bool, heatmap: bool = False, features: bool = False, dynamic: bool = False) -> bytes:
    import tensorflow as tf

    if dynamic:
        w = widened(w)

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name="pixels")])
        def serve(self, pixels):
            x = tf.nn.conv2d(pixels / 255.0, w["kernel"], strides=1, padding="VALID") + w["conv_bias"]
            pooled = tf.reduce_mean(tf.nn.relu(x), axis=[1, 2])
            out = {"fracture_prob": tf.sigmoid(tf.matmul(pooled, w["dense"]) + w["dense_bias"])}
            if heatmap:
                out["heatmap"] = tf.nn.conv2d(tf.nn.relu(x), w["dense"][None, None], 1, "VALID") + w["dense_bias"]
            if features:
                out["features"] = pooled[:, :FEATURE_SIZE] if dynamic else pooled   # what the dense layer reads
            return out

    module = Tiny()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    if dynamic:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]   # no representative dataset: dynamic range
    if int8:
        images = calibration_images()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([img[None]] for img in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def build_onnx(w: dict, heatmap: bool = False, features: bool = False) -> bytes:
    """The same net as an ONNX graph (NHWC input transposed to NCHW inside), dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array(255.0, np.float32), "scale"),
        numpy_helper.from_array(w["kernel"].transpose(3, 2, 0, 1).copy(), "kernel"),  # OIHW
        numpy_helper.from_array(w["conv_bias"], "conv_bias"),
        numpy_helper.from_array(w["dense"], "dense"),
        numpy_helper.from_array(w["dense_bias"], "dense_bias"),
    ]
    nodes = [
        helper.make_node("Div", ["pixels", "scale"], ["x"]),
        helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "kernel", "conv_bias"], ["conv"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "dense", "dense_bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["fracture_prob"]),
    ]
    outputs = [helper.make_tensor_value_info("fracture_prob", TensorProto.FLOAT, ["N", 1])]
    if heatmap:
        inits.append(numpy_helper.from_array(w["dense"].T.reshape(1, -1, 1, 1).copy(), "cam_kernel"))
        nodes += [helper.make_node("Conv", ["relu", "cam_kernel", "dense_bias"], ["cam"], kernel_shape=[1, 1]),
                  helper.make_node("Transpose", ["cam"], ["heatmap"], perm=[0, 2, 3, 1])]
        outputs.append(helper.make_tensor_value_info("heatmap", TensorProto.FLOAT,
                                                     ["N", HEATMAP_GRID, HEATMAP_GRID, 1]))
    if features:
        outputs.append(helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["N", FEATURE_SIZE]))
    graph = helper.make_graph(
        nodes, "tiny_fracture_fixture",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])],
        outputs, initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="fracture-edge")
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    return model.SerializeToString()


def fixture_bundle(artifacts: dict, heatmap: bool = False, features: bool = False) -> dict:
    output = {"kind": "sigmoid", "positive_index": 0, "meaning": "one probability per image: P(fractured)"}
    if heatmap:
        output["extra"] = {"heatmap": {"shape": [HEATMAP_GRID, HEATMAP_GRID],
                                       "meaning": "class activation map (fixture: brightness)"}}
    if features:
        output.setdefault("extra", {})["features"] = {"shape": [FEATURE_SIZE],
                                                      "meaning": "pooled features the dense layer reads"}
    return {
        "schema_version": SCHEMA_VERSION,
        "model": "tiny fixture conv net (tests only; P(fractured) rises with brightness)",
        "labels": ["not_fractured", "fractured"],
        "positive_label": "fractured",
        "output": output,
        "thresholds": {"balanced": 0.5, "screening": 0.25, "default": "balanced", "chosen_on": "fixture"},
        "input": InputContract(size=SIZE).to_dict(),
        "metrics": {"test": {"n": 4, "n_positive": 2, "auc": 1.0,
                             "balanced": {"threshold": 0.5, "f1": 1.0, "sensitivity": 1.0, "specificity": 1.0}}},
        "artifacts": artifacts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--heatmap", action="store_true", help="models with a heatmap output too")
    parser.add_argument("--features", action="store_true", help="models with heatmap and pooled-features outputs")
    args = parser.parse_args()
    heatmap, features = args.heatmap or args.features, args.features
    out = args.out or (FEATURES_OUT if features else HEATMAP_OUT if heatmap else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    w = make_weights()
    files = {"tflite-fp32": out / "model_fp32.tflite", "tflite-int8": out / "model_int8.tflite",
             "tflite-int8-dynamic": out / "model_int8_dynamic.tflite", "onnx-fp32": out / "model_fp32.onnx"}
    files["tflite-fp32"].write_bytes(convert_tflite(w, int8=False, heatmap=heatmap, features=features))
    files["tflite-int8"].write_bytes(convert_tflite(w, int8=True, heatmap=heatmap, features=features))
    files["tflite-int8-dynamic"].write_bytes(convert_tflite(w, int8=False, heatmap=heatmap, features=features,
                                                            dynamic=True))
    files["onnx-fp32"].write_bytes(build_onnx(w, heatmap, features))
    bundle = fixture_bundle({name: {"file": path.name} for name, path in files.items()}, heatmap, features)
    for path in files.values():
        embed_bundle(path, bundle)
    bundle["artifacts"] = {name: artifact_record(path) for name, path in files.items()}
    save_bundle(out, bundle)
    print(f"wrote {', '.join(p.name for p in files.values())} + bundle.json to {out}")


if __name__ == "__main__":
    main()
