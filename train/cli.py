"""CLI registration for `train`, `eval` and `demo` (TensorFlow is imported only inside the handlers)."""
from __future__ import annotations

import argparse
import json

from ..edge_runtime.errors import missing_extra

SHARED_WEIGHTS_HINT = "../shared/weights/densenet121_imagenet_notop.weights.h5"
MOBILE_WEIGHTS_HINT = "../shared/weights/mobilenetv2_035_224_imagenet_notop.weights.h5"


def _require_tensorflow(what: str) -> None:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise missing_extra("tensorflow", "train", what) from None


def register(subparsers) -> None:
    _register_train(subparsers)
    _register_eval(subparsers)
    _register_demo(subparsers)


def _register_train(subparsers) -> None:
    from .augment import AUGMENTATIONS
    from .backbones import BACKBONES
    from .options import AUTO, TrainOptions

    d = TrainOptions(data="", out="")
    tails = "; ".join(f"{name}: {' | '.join(row.tails)} (default {row.default_tail})" for name, row in BACKBONES.items())
    sizes = ", ".join(f"{name} {row.default_size}" for name, row in BACKBONES.items())
    p = subparsers.add_parser("train", help="train the fracture classifier (DenseNet121 unless --backbone)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                              description="Two-stage transfer learning on CPU: head on cached features, then "
                                          "fine-tuning of the last dense block(s) on cached activations.")
    p.add_argument("--data", required=True, help="dataset folder (split/class/image) or split CSV")
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--backbone", choices=list(BACKBONES), default=d.backbone,
                   help="ImageNet backbone (train/backbones.py); its preprocessing is inside the model graph")
    p.add_argument("--weights", default=d.weights,
                   help=f"imagenet (Keras download, needs internet) | none | PATH to the backbone's no-top weights "
                        f"(e.g. {SHARED_WEIGHTS_HINT} or {MOBILE_WEIGHTS_HINT})")
    p.add_argument("--size", type=int, default=0, help=f"input side in pixels (0: the backbone's: {sizes})")
    p.add_argument("--views", type=int, default=d.views, help="cached views per training image (1 = no augmentation)")
    p.add_argument("--augment", choices=sorted(AUGMENTATIONS), default=d.augment,
                   help="augmented views: basic (flips, small rotations, brightness/contrast) or robust (also "
                        "quarter turns, inversion, crops, exposure, markers, low resolution, blur, JPEG, noise)")
    p.add_argument("--head-epochs", type=int, default=d.head_epochs)
    p.add_argument("--head-lr", type=float, default=d.head_lr)
    p.add_argument("--finetune-from", default=AUTO,
                   help=f"first fine-tuned block, or none (head only); auto = the backbone's default. {tails}")
    p.add_argument("--finetune-epochs", type=int, default=d.finetune_epochs)
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping patience (val AUC)")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--stability", type=float, default=d.stability,
                   help="weight of a logit-consistency term between each training view and its +-1 grey-level "
                        "dithered copy (0 = off; caches one more copy of every view; docs/training.md)")
    p.add_argument("--stem-lowpass", action="store_true",
                   help="put a fixed 3x3 binomial low-pass in the graph before the first convolution (issue 21: the "
                        "model then reads less of a pixel-level noise; docs/robustness.md)")
    p.add_argument("--view-dither", type=int, default=d.view_dither, metavar="L",
                   help="add a fresh uniform integer in [-L, L] to every pixel of every cached training view, the "
                        "original included (0 = off; issue 21: noise the model should learn to ignore; "
                        "docs/robustness.md)")
    p.add_argument("--mixed-precision", action="store_true",
                   help="train in bfloat16 compute with float32 weights (Keras mixed_bfloat16); the saved model "
                        "stays float32. Faster only on CPUs with AVX512_BF16 or AMX (docs/training.md)")
    p.add_argument("--teacher", default=d.teacher, metavar="RUN",
                   help="distil from this trained run: its logits on the training images (never val/test) join "
                        "the labels in the loss (train/distill.py)")
    p.add_argument("--distill-alpha", type=float, default=d.distill_alpha,
                   help="weight of the labels' BCE; 1 - alpha weighs the teacher term")
    p.add_argument("--distill-temperature", type=float, default=d.distill_temperature, help="distillation temperature T")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-images", type=int, default=d.max_images, help="cap each split (0 = all); smoke runs")
    p.add_argument("--allow-leakage", action="store_true", help="train even if val/test images have copies in train")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out folder")
    p.set_defaults(handler=_run_train)


def _options_from_args(args, **overrides):
    from .options import TrainOptions

    fields = {k: getattr(args, k) for k in TrainOptions.__dataclass_fields__ if hasattr(args, k)}
    return TrainOptions(**{**fields, **overrides})


def _run_train(args) -> int:
    opts = _options_from_args(args)
    _require_tensorflow("training")
    from .evaluate import format_metrics_lines
    from .trainer import train

    summary = train(opts)
    print(f"run folder: {summary.run_dir}")
    for line in format_metrics_lines({"format": "keras", "split": "test", **summary.test}):
        print(line)
    print(f"train time {summary.seconds / 60:.1f} min, peak RSS {summary.peak_rss_mb:.0f} MB")
    return 0


def _register_eval(subparsers) -> None:
    from ..edge_runtime.formats import FORMATS

    p = subparsers.add_parser("eval", help="re-score a run on a dataset split (Keras or an exported format)")
    p.add_argument("run", help="run folder")
    p.add_argument("--data", help="dataset folder or split CSV (default: the one the run was trained on)")
    p.add_argument("--split", default="test", help="train | val | test")
    p.add_argument("--format", choices=list(FORMATS),
                   help="which model to score (default: keras, or the runtime's pick of the exported artifacts when "
                        "the run has no model.keras, as a run made by `fracture-edge adapt`)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--shifts", nargs="?", const="all", metavar="NAMES",
                   help="score the split under acquisition shifts (all, or a comma list such as invert,jpeg-30); "
                        "writes RUN/shifts_<format>_<split>.{json,md,png}")
    p.add_argument("--seed", type=int, default=0, help="seed of the random shifts and of the bootstrap CIs")
    p.set_defaults(handler=_run_eval)


def _default_format(run: str) -> str:
    """keras when the run folder has its Keras model, else the artifact `predict RUN` would run."""
    from pathlib import Path

    from ..edge_runtime.artifacts import resolve_model

    if (Path(run) / "model.keras").exists() or not Path(run).is_dir():
        return "keras"
    return resolve_model(run).format.name


def _run_eval(args) -> int:
    args.format = args.format or _default_format(args.run)
    if args.format == "keras":
        _require_tensorflow("evaluating the Keras model")
    if args.shifts:
        return _run_shift_eval(args)
    from .evaluate import evaluate_run, format_metrics_lines

    result = evaluate_run(args.run, args.data, args.split, args.format)
    print(json.dumps(result, indent=2) if args.json else "\n".join(format_metrics_lines(result)))
    return 0


def _run_shift_eval(args) -> int:
    from ..edge_runtime.errors import FractureEdgeError
    from ..edge_runtime.shift_scores import parse_shift_names
    from .shift_eval import evaluate_shifts, shift_table_lines

    try:
        names = parse_shift_names(args.shifts)
    except ValueError as exc:
        raise FractureEdgeError(str(exc)) from None
    result = evaluate_shifts(args.run, args.data, args.split, args.format, names, args.seed)
    print(json.dumps(result, indent=2) if args.json else "\n".join(shift_table_lines(result)))
    return 0


def _register_demo(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the whole pipeline on built-in SYNTHETIC radiographs",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                              description="Draws a small synthetic radiograph set (labelled synthetic), trains "
                                          "DenseNet121 from scratch (--weights none) at a small input size, then "
                                          "exports, verifies and benchmarks every format. Needs no download.")
    p.add_argument("--out", default="runs/demo", help="demo folder (replaced on every run)")
    p.add_argument("--size", type=int, default=64, help="input side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    _require_tensorflow("the demo")
    from .demo import run_demo

    return run_demo(args.out, args.size, args.seed)
