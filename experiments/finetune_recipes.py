"""Compare fine-tuning recipes on the validation split under the shift suite, in minutes each (issue 13).

    python -m fracture_edge.experiments.finetune_recipes cache --data ../shared/data/fracatlas \\
        --weights ../shared/weights/densenet121_imagenet_notop.weights.h5 --cache runs/recipes --views 3
    python -m fracture_edge.experiments.finetune_recipes run --cache runs/recipes --tag views2 --views 0,1
    python -m fracture_edge.experiments.finetune_recipes run --cache runs/recipes --tag views3 --views 0,1,2

`train` spends most of its time in the frozen backbone (input -> `pool4`), which is the same for every recipe
that fine-tunes `conv5`. `cache` runs it once: training view 0 (the original) and views 1.. (augmented exactly
as `train` makes view v: seed + v, `--augment`), and the validation split clean and under every shift of the
suite (edge_runtime/shifts.py, the seed `eval --shifts` uses), stored as float16 .npy files. `run` then does
what `train` does after its cache (head on pooled features, fine-tune with early stopping on validation AUC,
the best epoch kept) on the chosen views, and scores the clean and shifted validation activations: clean
AUC, the worst and the mean over the acquisition shifts, as `eval --shifts --split val` reports them. The
test split is never read: recipes are chosen on validation, test stays a report. Each run appends one line
to CACHE/recipes.jsonl and rewrites CACHE/recipes.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheOptions:
    data: str
    cache: Path
    weights: str = "imagenet"
    size: int = 320
    views: int = 3
    augment: str = "robust"
    seed: int = 0
    max_images: int = 0          # >0: first N of each split (smoke runs)


@dataclass(frozen=True)
class RecipeOptions:
    cache: Path
    tag: str
    views: tuple[int, ...] = (0, 1)
    finetune_lr: float = 1e-4
    finetune_epochs: int = 6
    patience: int = 2
    dropout: float = 0.3
    head_epochs: int = 40
    batch_size: int = 32
    seed: int = 0


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def write_cache(opts: CacheOptions) -> None:
    """pool4 activations of the training views and of validation clean + every shift (skips files present)."""
    import keras

    from ..edge_runtime.dataset import read_dataset, select_split
    from ..edge_runtime.preprocessing import InputContract
    from ..edge_runtime.shifts import apply_shift, shift_names
    from ..train import activations
    from ..train.augment import AUGMENTATIONS, view_augmenter
    from ..train.model import FINETUNE_FROM, build_model, feature_extractor

    opts.cache.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(opts.seed)
    contract, samples = InputContract(size=opts.size), read_dataset(opts.data)
    loaded = {}
    for name in ("train", "val"):
        chosen = select_split(samples, name, opts.data)
        loaded[name] = activations.load_split(name, chosen[:opts.max_images] if opts.max_images else chosen, contract)
        _save(opts.cache / f"{name}_y.npy", loaded[name].targets)
    extractor = feature_extractor(build_model(opts.size, opts.weights), FINETUNE_FROM["conv5"])
    jobs = [(f"train_v{v}", loaded["train"].pixels,
             None if v == 0 else view_augmenter(opts.seed + v, AUGMENTATIONS[opts.augment])) for v in range(opts.views)]
    jobs += [(f"val_{n}", loaded["val"].pixels if n == "clean" else apply_shift(n, loaded["val"].pixels, opts.seed),
              None) for n in ("clean",) + shift_names()]
    for stem, pixels, augment in jobs:
        if not (opts.cache / f"{stem}.npy").exists():
            _save(opts.cache / f"{stem}.npy", activations.cache_activations(
                extractor, pixels, 32, f"caching {stem}", dtype=np.float16, augment=augment))
    (opts.cache / "cache.json").write_text(json.dumps({**asdict(opts), "cache": str(opts.cache)}, indent=2))


def score_validation(tail, cache: Path, y: np.ndarray) -> dict:
    """Clean AUC, per-shift AUC, the worst and the mean over acquisition shifts (dither probe left out)."""
    from ..edge_runtime.metrics import roc_auc
    from ..edge_runtime.shifts import STABILITY_PROBES, shift_names

    aucs = {n: float(roc_auc(y, tail.predict(np.load(cache / f"val_{n}.npy"), batch_size=64, verbose=0).ravel()))
            for n in ("clean",) + shift_names()}
    acquisition = {n: a for n, a in aucs.items() if n != "clean" and n not in STABILITY_PROBES}
    worst = min(acquisition, key=acquisition.get)
    return {"clean": aucs["clean"], "worst": acquisition[worst], "worst_shift": worst,
            "mean": float(np.mean(list(acquisition.values()))), "aucs": aucs}


def run_recipe(opts: RecipeOptions) -> dict:
    """Head + conv5 fine-tune on the cached views (as `train` does), scored on the cached validation sets."""
    import keras

    from ..train import activations, stages
    from ..train.model import FINETUNE_FROM, build_model, trainable_tail
    from ..train.trainer import pooled

    started = time.perf_counter()
    meta = json.loads((opts.cache / "cache.json").read_text())
    layer = FINETUNE_FROM["conv5"]
    train_y, val_y = np.load(opts.cache / "train_y.npy"), np.load(opts.cache / "val_y.npy")
    x = np.concatenate([np.load(opts.cache / f"train_v{v}.npy", mmap_mode="r") for v in opts.views])
    y = np.tile(train_y, len(opts.views))
    val_x = np.load(opts.cache / "val_clean.npy")
    keras.utils.set_random_seed(opts.seed)
    model = build_model(meta["size"], meta["weights"], opts.dropout)
    weights = activations.class_weights(y)
    history = {"head": stages.fit_head(model, pooled(model, layer, x, opts.batch_size, "train"), y,
                                       pooled(model, layer, val_x, opts.batch_size, "val"), val_y, weights,
                                       opts.head_epochs, 1e-3, opts.batch_size * 2, opts.patience)}
    tail = trainable_tail(model, layer)
    history["finetune"] = stages.fit_tail(tail, x, y, val_x, val_y, weights, opts.finetune_epochs, opts.finetune_lr,
                                          opts.batch_size, opts.patience)
    record = {**asdict(opts), "cache": str(opts.cache), "val_auc_per_epoch": history["finetune"].get("val_auc", []),
              "seconds": round(time.perf_counter() - started), **score_validation(tail, opts.cache, val_y)}
    with open(opts.cache / "recipes.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    write_table(opts.cache)
    log.info("%s: val clean %.4f, worst %.4f (%s), mean %.4f", opts.tag, record["clean"], record["worst"],
             record["worst_shift"], record["mean"])
    return record


def write_table(cache: Path) -> None:
    """CACHE/recipes.md: one row per recipe run so far."""
    lines = ["# Fine-tuning recipes on the validation split (cached pool4 activations)", "",
             "| tag | views | lr | epochs | patience | dropout | val AUC clean | worst shift | mean over shifts | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for line in (cache / "recipes.jsonl").read_text().splitlines():
        r = json.loads(line)
        lines.append(f"| {r['tag']} | {','.join(map(str, r['views']))} | {r['finetune_lr']:g} | {r['finetune_epochs']} "
                     f"| {r['patience']} | {r['dropout']} | {r['clean']:.4f} | {r['worst']:.4f} ({r['worst_shift']}) "
                     f"| {r['mean']:.4f} | {r['seconds']} |")
    tmp = cache / "recipes.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(cache / "recipes.md")


def main(argv: list[str] | None = None) -> int:
    from ..edge_runtime.cli import configure_logging
    from ..edge_runtime.errors import FractureEdgeError

    parser = argparse.ArgumentParser(prog="python -m fracture_edge.experiments.finetune_recipes",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="cache pool4 activations: training views, validation clean + shifts")
    c.add_argument("--data", required=True)
    c.add_argument("--cache", required=True, type=Path)
    c.add_argument("--weights", default="imagenet")
    for flag, kind, default in (("--size", int, 320), ("--views", int, 3), ("--seed", int, 0),
                                ("--max-images", int, 0), ("--augment", str, "robust")):
        c.add_argument(flag, type=kind, default=default)
    r = sub.add_parser("run", help="fit one recipe on cached views and score it on validation")
    r.add_argument("--cache", required=True, type=Path)
    r.add_argument("--tag", required=True)
    r.add_argument("--views", default="0,1", help="cached training views to use, e.g. 0,1,2")
    for flag, kind, default in (("--finetune-lr", float, 1e-4), ("--finetune-epochs", int, 6), ("--patience", int, 2),
                                ("--dropout", float, 0.3), ("--head-epochs", int, 40), ("--batch-size", int, 32),
                                ("--seed", int, 0)):
        r.add_argument(flag, type=kind, default=default)
    args = parser.parse_args(argv)
    configure_logging()
    fields = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        if args.command == "cache":
            write_cache(CacheOptions(**fields))
        else:
            views = tuple(int(v) for v in args.views.split(","))
            missing = [v for v in views if not (args.cache / f"train_v{v}.npy").exists()]
            if missing or not (args.cache / "cache.json").exists():
                raise FractureEdgeError(f"{args.cache}: no cached view(s) {missing or ''}; run `cache` first")
            run_recipe(RecipeOptions(**{**fields, "views": views}))
    except (FractureEdgeError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
