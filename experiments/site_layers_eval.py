"""A lead for the site check (issue 22): the ppca distance on features of every stage of DenseNet121, in Keras.

    python -m fracture_edge.experiments.site_layers_eval runs/fracatlas-320 --out runs/site-layers

The design is in docs/site-check.md ("Fourth design, a lead"), written before this ran: the global average of
five post-ReLU maps (STAGES); per stage the shipped ppca (the same seeded home training images, hold-out and
seed as experiments/site_check_eval.py, K by that stage's val-home log-likelihood); the candidate distance is the
sum of the stages' per-image negative log-likelihoods (a block-diagonal probabilistic PCA), flagged by the same
conformal rule on the held-out training images. Reports the AUROC and folder verdicts per own source for each
stage alone and for all stages, and the stability probes' folder verdicts (invisible changes must read "like").
No artifact has these outputs: this measures whether building them is worth it. Needs TensorFlow.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..edge_runtime.bundle import input_contract, load_bundle
from ..edge_runtime.dataset import read_dataset
from ..edge_runtime.metrics import roc_auc
from ..edge_runtime.preprocessing import load_batch
from ..edge_runtime.progress import progress
from ..edge_runtime.shifts import STABILITY_PROBES, apply_shift
from ..edge_runtime.site_components import choose_components
from ..edge_runtime.site_model import FLAG_P, HOLDOUT_SHARE, conformal_scores, holdout_split
from ..export.site_fit import SITE_IMAGES
from .site_check_eval import SOURCES, cached_features, folder_draws, verdicts, write_outputs

log = logging.getLogger(__name__)

STAGES = ("conv1_relu", "pool2_relu", "pool3_relu", "pool4_relu", "relu")   # DenseNet121's post-ReLU maps
ALL = "all stages"
BATCH = 16
FIT_DITHER_SEED = 30_000   # --fit-dither's +-1 dither (docs/site-check.md, fifth design); never a probe's seed 0


def stage_model(model):
    """A Keras function image -> (N, sum of the stages' channels): each stage's map averaged over space."""
    import keras

    missing = [name for name in STAGES if name not in {layer.name for layer in model.layers}]
    if missing:
        raise SystemExit(f"the model has no layer {', '.join(missing)}: this lead is written for DenseNet121")
    pooled = [keras.layers.GlobalAveragePooling2D()(model.get_layer(name).output) for name in STAGES]
    return keras.Model(model.inputs, keras.layers.Concatenate()(pooled))


def stage_sizes(model) -> dict[str, int]:
    return {name: int(model.get_layer(name).output.shape[-1]) for name in STAGES}


def pooled_features(forward, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(forward(pixels[i:i + BATCH].astype(np.float32)))
                           for i in range(0, len(pixels), BATCH)])


def all_stage_features(forward, dims: int, samples, contract, cache: Path) -> np.ndarray:
    """(N, dims) stage features of every sample (NaN where it fails to decode), cached in `cache`."""
    return cached_features(samples, contract, dims, cache, "stage features", BATCH * 4,
                           lambda pixels: pooled_features(forward, pixels))


def fit_dither_features(forward, dims: int, samples, contract, cache: Path) -> np.ndarray:
    """(N, dims) stage features of every training sample under a +-1 dither (NaN elsewhere), cached in `cache`."""
    from ..train.stability import dither_augmenter

    train = [i for i, s in enumerate(samples) if s.split == "train"]
    dither = dither_augmenter(FIT_DITHER_SEED)   # one generator across chunks: seeded by the order of the files
    dithered = cached_features([samples[i] for i in train], contract, dims, cache, "dithered training features",
                               BATCH * 4, lambda pixels: pooled_features(forward, dither(pixels)))
    out = np.full((len(samples), dims), np.nan, np.float32)
    out[train] = dithered
    return out


def slices(sizes: dict[str, int]) -> dict[str, slice]:
    """Each stage's columns in the concatenated features."""
    ends = np.cumsum(list(sizes.values()))
    return {name: slice(int(end - size), int(end)) for (name, size), end in zip(sizes.items(), ends)}


class JointSite:
    """The candidate: per-stage ppca models; distance = the sum of their negative log-likelihoods."""

    def __init__(self, fit: np.ndarray, val_home: np.ndarray, columns: dict[str, slice], seed: int,
                 copies: np.ndarray | None = None):
        self.columns = columns
        self.choices = {name: choose_components(fit[:, cols], val_home[:, cols], seed,
                                                None if copies is None else copies[:, cols])
                        for name, cols in columns.items()}
        held = holdout_split(len(fit), HOLDOUT_SHARE, seed)[1]
        self.held_out = {name: np.sort(self.nll(fit[held], (name,))) for name in (*columns, ALL)}

    def nll(self, x: np.ndarray, stages: tuple[str, ...]) -> np.ndarray:
        names = tuple(self.columns) if stages == (ALL,) else stages
        return sum(-self.choices[n].model.log_likelihood(x[:, self.columns[n]]) for n in names)

    def flags(self, x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(distances, flagged) of `x` for one stage or ALL, by the conformal rule of the held-out images."""
        d = self.nll(x, (name,))
        return d, conformal_scores(self.held_out[name], d) < FLAG_P


def source_rows(samples, features: np.ndarray, columns: dict[str, slice], seed: int,
                copies: np.ndarray | None = None) -> tuple[dict, dict]:
    """(per source: per stage and ALL the AUROC and folder verdicts, the fitted JointSite per source); copies:
    the same images' features under FIT_DITHER, fitted beside them (--fit-dither)."""
    split = np.array([s.split for s in samples])
    ok = np.isfinite(features).all(axis=1)
    rows, sites = {}, {}
    for name, (what, is_source) in SOURCES.items():
        source = np.array([is_source(s) for s in samples])
        train_home = np.flatnonzero((split == "train") & ~source & ok)
        chosen = np.random.default_rng(seed).permutation(train_home)[:SITE_IMAGES]
        val_home = np.flatnonzero((split == "val") & ~source & ok)
        site = JointSite(features[chosen], features[val_home], columns, seed,
                         None if copies is None else copies[chosen])
        home, other = np.flatnonzero((split == "test") & ~source & ok), np.flatnonzero(source & ok)
        home_draws, other_draws = folder_draws(home.size, seed), folder_draws(other.size, seed + 1)
        row = {"what": what, "home_test_images": int(home.size), "source_images": int(other.size),
               "components": {n: c.components for n, c in site.choices.items()}, "stages": {}}
        for stage in (*columns, ALL):
            d_home, f_home = site.flags(features[home], stage)
            d_other, f_other = site.flags(features[other], stage)
            row["stages"][stage] = {
                "auroc": roc_auc(np.r_[np.zeros(home.size), np.ones(other.size)], np.r_[d_home, d_other]),
                "home_flagged": float(f_home.mean()), "source_flagged": float(f_other.mean()),
                "home_folders_like": float(1 - verdicts(f_home, home_draws).mean()),
                "source_folders_different": float(verdicts(f_other, other_draws).mean())}
        rows[name], sites[name] = row, site
        log.info("%s: AUROC %s", name, {s: round(c["auroc"], 3) for s, c in row["stages"].items()})
    return rows, sites


def probe_rows(forward, samples, contract, sites: dict, seed: int) -> dict:
    """Per stability probe and per source's fitted model: the share of home-test folders judged different."""
    paths = [str(s.path) for s in samples if s.split == "test"]
    pixels, kept, _ = load_batch(paths, contract)
    rows = {}
    for probe in progress(list(STABILITY_PROBES), "stability probes", len(STABILITY_PROBES)):
        shifted = pooled_features(forward, apply_shift(probe, pixels, seed=seed))
        draws = folder_draws(len(shifted), seed + 2)
        rows[probe] = {source: {stage: float(verdicts(site.flags(shifted, stage)[1], draws).mean())
                                for stage in (STAGES[-1], ALL)} for source, site in sites.items()}
    return rows


def markdown(result: dict) -> str:
    fitted = " (fitted also on dithered copies)" if result.get("fit_dither") else ""
    lines = [f"# Site check, features of every stage (a lead){fitted}: {result['run']}", "",
             "| source | stage | K | AUROC | home test flagged | source flagged | home folders 'like' "
             "| source folders 'different' |", "|---|---|--:|--:|--:|--:|--:|--:|"]
    for name, row in result["sources"].items():
        for stage, c in row["stages"].items():
            k = row["components"].get(stage, "+".join(str(v) for v in row["components"].values()))
            lines.append(f"| {name} | {stage} | {k} | {c['auroc']:.3f} | {c['home_flagged']:.1%} | "
                         f"{c['source_flagged']:.1%} | {c['home_folders_like']:.1%} | "
                         f"{c['source_folders_different']:.1%} |")
    if result.get("probes"):
        lines += ["", "Stability probes on FracAtlas test: share of 50-image folders judged different "
                  "(must be ~0)", "", "| probe | model fitted without | final stage | all stages |", "|---|---|--:|--:|"]
        for probe, per_source in result["probes"].items():
            for source, v in per_source.items():
                lines.append(f"| {probe} | {source} | {v[STAGES[-1]]:.1%} | {v[ALL]:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--data", default=None, help="the dataset with split.csv metadata (default: the run's)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-probes", action="store_true", help="skip the stability probes (3 model passes)")
    parser.add_argument("--fit-dither", action="store_true",
                        help="fit each stage also on its images under a +-1 dither (the fifth design; one more pass "
                             "over the training images)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import keras
    import tensorflow as tf

    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(run)
    contract = input_contract(bundle)
    model = keras.models.load_model(run / "model.keras", compile=False)
    staged = stage_model(model)
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    forward = tf.function(lambda x: staged(x, training=False), input_signature=[spec], reduce_retracing=True)
    sizes = stage_sizes(model)
    samples = read_dataset(args.data or (bundle.get("data") or {}).get("source"))
    features = all_stage_features(forward, sum(sizes.values()), samples, contract, out / "stage_features.npz")
    copies = (fit_dither_features(forward, sum(sizes.values()), samples, contract, out / "stage_features_dither.npz")
              if args.fit_dither else None)
    rows, sites = source_rows(samples, features, slices(sizes), args.seed, copies)
    result = {"run": str(run), "stages": sizes, "seed": args.seed, "fit_dither": args.fit_dither, "sources": rows}
    if not args.no_probes:
        result["probes"] = probe_rows(forward, samples, contract, sites, args.seed)
    write_outputs(out, "site_layers", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
