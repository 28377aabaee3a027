"""Where full-integer int8 loses time against float32, layer block by layer block (issue 24).

    python -m fracture_edge.experiments.int8_kernel_speed [--backbone mobilenetv2-0.35] [--size 224]
        [--weights FILE] [--threads 1,2] [--runs 300] [--json OUT.json]

Cuts the backbone after a few named activations (the stem, then every few inverted-residual blocks, then the
whole net), puts a global average pool on each cut, converts each prefix to TFLite float32 and to full-integer
int8 (the export's own converter settings: uint8 pixels in, seeded random calibration images: latency does not
depend on the weights' values), and times each with the installed LiteRT runtime (XNNPACK, the default
delegate) at batch 1. The difference between consecutive prefixes is what those blocks cost, so the table
shows whether int8 is slower everywhere or in one place. Prints a markdown table; --json keeps the numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np

from ..benchmarks.stats import percentile
from ..benchmarks.worker import time_calls
from ..edge_runtime import atomic
from ..edge_runtime.backends import tflite_interpreter_class, without_delegate_banner
from ..edge_runtime.environment import describe_environment, device_line

log = logging.getLogger(__name__)

CUTS = {"mobilenetv2-0.35": ("Conv1_relu", "block_2_add", "block_5_add", "block_9_add", "block_12_add",
                             "block_15_add", "out_relu"),
        "densenet121": ("pool1", "pool2_pool", "pool3_pool", "pool4_pool", "relu")}
PRECISIONS = ("fp32", "int8")
WARMUP = 30


def prefix_models(backbone: str, size: int, weights: str):
    """[(cut layer, Keras model: raw pixels -> that layer's output, pooled)] in network order."""
    import keras

    from ..train.model import build_model

    model = build_model(size, weights=weights, backbone=backbone)
    cuts = []
    for name in CUTS[backbone]:
        output = model.get_layer(name).output
        cuts.append((name, keras.Model(model.input, keras.layers.GlobalAveragePooling2D()(output))))
    return cuts


def p50_ms(model_bytes: bytes, threads: int, runs: int, seed: int = 0) -> float:
    """Median latency of one batch-1 call of a .tflite model, after WARMUP untimed calls."""
    interpreter_class, _ = tflite_interpreter_class()
    interpreter = interpreter_class(model_content=model_bytes, num_threads=threads)
    with without_delegate_banner():
        interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    pixels = np.random.default_rng(seed).integers(0, 256, size=detail["shape"]).astype(detail["dtype"])

    def call(x):
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()

    time_calls(call, pixels, WARMUP, budget_s=60.0)
    return percentile(time_calls(call, pixels, runs, budget_s=60.0, min_count=runs), 50)


def measure(backbone: str, size: int, weights: str, threads: tuple[int, ...], runs: int) -> list[dict]:
    """One row per cut: its output shape and p50 per (precision, threads)."""
    from ..export.tflite_export import convert_tflite

    calibration = np.random.default_rng(1).integers(0, 256, size=(16, size, size, 3)).astype(np.float32)
    rows = []
    for name, model in prefix_models(backbone, size, weights):
        row = {"cut": name, "shape": [int(v) for v in model.layers[-2].output.shape[1:]], "p50_ms": {}}
        for precision in PRECISIONS:
            converted = convert_tflite(model, precision, calibration if precision == "int8" else None)
            for t in threads:
                row["p50_ms"][f"{precision} t{t}"] = p50_ms(converted, t, runs)
        log.info("%s: %s", name, row["p50_ms"])
        rows.append(row)
    return rows


def markdown(rows: list[dict], threads: tuple[int, ...]) -> str:
    keys = [f"{p} t{t}" for t in threads for p in PRECISIONS]
    lines = ["| network up to | output | " + " | ".join(f"{k} ms" for k in keys)
             + " | " + " | ".join(f"int8 / fp32 t{t}" for t in threads) + " |",
             "|---|---|" + "--:|" * (len(keys) + len(threads))]
    for row in rows:
        p50 = row["p50_ms"]
        ratios = [p50[f"int8 t{t}"] / p50[f"fp32 t{t}"] for t in threads]
        lines.append(f"| {row['cut']} | {'x'.join(map(str, row['shape']))} | "
                     + " | ".join(f"{p50[k]:.2f}" for k in keys) + " | "
                     + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ..train.backbones import BACKBONES

    parser = argparse.ArgumentParser(prog="python -m fracture_edge.experiments.int8_kernel_speed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenetv2-0.35", choices=sorted(CUTS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--weights", default="none",
                        help="ImageNet weights file (latency does not depend on it; default: random weights)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=300, help="timed calls per model (default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write the rows and the device to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.backbone not in BACKBONES:
        parser.error(f"--backbone {args.backbone}: not a trainable backbone")
    threads = tuple(int(t) for t in args.threads.split(","))
    rows = measure(args.backbone, args.size, args.weights, threads, args.runs)
    environment = describe_environment()
    print(f"{args.backbone} at {args.size} px, batch 1; {device_line(environment)}\n")
    print(markdown(rows, threads))
    if args.json:
        atomic.write_json(os.fspath(args.json), {"backbone": args.backbone, "size": args.size, "rows": rows,
                                                 "environment": environment, "date": time.strftime("%Y-%m-%d")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
