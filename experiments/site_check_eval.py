"""How well the site check (issue 22) tells FracAtlas from sources it has not seen, on data we have.

    python -m fracture_edge.experiments.site_check_eval runs/fracatlas-320 --out runs/fracatlas-320/site_eval \
        [--formats tflite-fp32,tflite-int8-dynamic,tflite-int8] [--designs shipped,residual] [--no-shifts]

The design is in docs/site-check.md ("Our own check of it"), written before this ran on the default model:
- two "other sources" from what split.csv records: another detector (originals not 373x454) and another body
  region (hip, shoulder). For each, the shipped fit_site_model is refitted on tflite-fp32 features of up to
  SITE_IMAGES seeded training images WITHOUT that source; per-image AUROC (home test vs the source, every
  split), share flagged, and the share of seeded 50-image folders judged right;
- the shipped site model on the shift suite (acquisition shifts: reports; stability probes: must be "like");
- each named design (DESIGNS: the subspace distance, the shipped ppca, and the third design's candidates) is
  refitted per source on the same images and reported side by side;
- per format: the same folders' verdicts from that format's features, and how many differ from tflite-fp32 (an
  artifact export rejected is read from RUN/rejected/ and labelled so);
- the per-image scoring cost of the model export ships ("ppca" at its chosen K, the residual term included).
Features of every image are cached per format in --out (features_<format>.npz).
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..edge_runtime import atomic
from ..edge_runtime.bundle import input_contract
from ..edge_runtime.classifier import FEATURES, open_classifier
from ..edge_runtime.dataset import read_dataset
from ..edge_runtime.metrics import roc_auc
from ..edge_runtime.preprocessing import load_batch
from ..edge_runtime.progress import progress
from ..edge_runtime.shifts import STABILITY_PROBES, SHIFTS, apply_shift
from ..edge_runtime.site_components import candidate_components, choose_components
from ..edge_runtime.site_model import PPCA_METHOD, SiteModel, fit_site_model, fit_site_models, judge_site
from ..export.site_fit import CHOICE_IMAGES, SITE_IMAGES

log = logging.getLogger(__name__)

SITE_SIZE = 50
DRAWS = 200
BATCH = 16
REFERENCE = "tflite-fp32"
HOME_DEVICE = {("373", "454"), ("454", "373")}
SOURCES = {   # name -> (what it is, predicate on a Sample)
    "another-device": ("originals not 373x454 px (a second detector)",
                       lambda s: (s.meta.get("orig_w"), s.meta.get("orig_h")) not in HOME_DEVICE),
    "another-region": ("hip and shoulder radiographs", lambda s: s.meta.get("region") in ("hip", "shoulder")),
}


def all_features(clf, dims: int, samples, cache: Path) -> np.ndarray:
    """(N, D) features of every sample through `clf` (cached in `cache`; a sample that fails to decode is NaN)."""
    return cached_features(samples, clf.contract, dims, cache, f"features through {clf.format.name}", BATCH,
                           lambda pixels: clf.outputs(pixels, (FEATURES,))[1][FEATURES].reshape(len(pixels), -1))


def cached_features(samples, contract, dims: int, cache: Path, what: str, chunk: int, compute) -> np.ndarray:
    """(N, dims) `compute(pixels)` of every sample, decoded `chunk` at a time (NaN where a file fails to decode);
    kept in `cache` (.npz with the paths) and read back from it while the paths are the same."""
    paths = [str(s.path) for s in samples]
    if cache.is_file():
        stored = np.load(cache)
        if list(stored["paths"]) == paths:
            return stored["features"]
    out = np.full((len(paths), dims), np.nan, np.float32)
    starts = range(0, len(paths), chunk)
    for start in progress(starts, what, len(starts)):
        pixels, kept, failures = load_batch(paths[start:start + chunk], contract)
        for path, reason in failures:
            log.warning("skipped %s: %s", path, reason)
        if kept:
            out[[start + i for i in kept]] = compute(pixels)
    atomic.write_bytes(cache, _npz_bytes(paths=np.array(paths), features=out))
    return out


def write_outputs(out: Path, stem: str, result: dict, text: str) -> None:
    """OUT/STEM.json and OUT/STEM.md, each written atomically, and the markdown on stdout."""
    atomic.write_json(out / f"{stem}.json", result)
    atomic.write_text(out / f"{stem}.md", text)
    print(text)


def _npz_bytes(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def folder_draws(n: int, seed: int) -> np.ndarray:
    """(DRAWS, SITE_SIZE) seeded folders (indices, without replacement) out of n images."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(n, SITE_SIZE, replace=False) for _ in range(DRAWS)])


def verdicts(flags: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(DRAWS,) True where the folder is judged "different"."""
    return np.array([judge_site(flags[d]).verdict == "different" for d in draws])


@dataclass(frozen=True)
class Design:
    """A site-model design measured on the own sources (docs/site-check.md)."""

    label: str
    residual: bool = True          # probabilistic PCA (K chosen on val-home images), else the 64-component subspace
    images: int = SITE_IMAGES      # training images of the home source it is fitted on (0: every one)
    feature_map: str = "identity"  # applied to every feature vector before fitting and scoring


FEATURE_MAPS = {"identity": lambda x: x, "sqrt": lambda x: np.sqrt(np.maximum(x, 0.0))}
DESIGNS = {
    "shipped": Design("shipped (subspace)", residual=False),
    "residual": Design("residual"),
    # the third design (docs/site-check.md, written 2026-12-06 before it ran)
    "residual-all": Design("residual, every training image", images=0),
    "residual-sqrt": Design("residual, sqrt features", feature_map="sqrt"),
    "residual-sqrt-all": Design("residual, sqrt features, every training image", images=0, feature_map="sqrt"),
}


def fit_design(design: Design, fit: np.ndarray, val_home: np.ndarray, seed: int) -> tuple:
    """(the site model, how it was chosen) of `design` on mapped features; for the residual designs K is chosen by
    the mean log-likelihood of the val-home images (edge_runtime/site_components.py, as export chooses it)."""
    if not design.residual:
        return fit_site_model(fit, seed=seed), {"method": design.label}
    if not len(val_home):
        raise SystemExit("the residual design needs val images of the home source to choose K")
    choice = choose_components(fit, val_home, seed)
    if choice is None:
        raise SystemExit(f"the residual design: no candidate K fits {fit.shape[0]} images of {fit.shape[1]} features")
    return choice.model, {"method": f"{design.label}, K={choice.components}", "components": choice.components,
                          "val_log_likelihood": choice.log_likelihood}


def per_k_auroc(fit: np.ndarray, home: np.ndarray, other: np.ndarray, seed: int) -> dict:
    """Report only (after the choice): the residual design's AUROC at every candidate K."""
    labels = np.r_[np.zeros(len(home)), np.ones(len(other))]
    models = fit_site_models(fit, tuple(candidate_components(*fit.shape)), seed=seed, residual=True)
    return {k: roc_auc(labels, model.distances(np.r_[home, other])) for k, model in models.items()}


def source_rows(samples, features: dict[str, np.ndarray], seed: int, design: str = "shipped") -> dict:
    """The own-built sources: refit on the reference format's home training features, judge every format."""
    rows = {}
    split = np.array([s.split for s in samples])
    how_fit = DESIGNS[design]
    mapped = FEATURE_MAPS[how_fit.feature_map]
    features = {fmt: mapped(f) for fmt, f in features.items()}
    reference = features[REFERENCE]
    for name, (what, is_source) in SOURCES.items():
        source = np.array([is_source(s) for s in samples])
        ok = np.isfinite(reference).all(axis=1)
        train_home = np.flatnonzero((split == "train") & ~source & ok)
        chosen = np.random.default_rng(seed).permutation(train_home)[:how_fit.images or None]
        val_home = np.flatnonzero((split == "val") & ~source & ok)
        site, how = fit_design(how_fit, reference[chosen], reference[val_home], seed)
        home = np.flatnonzero((split == "test") & ~source & ok)
        other = np.flatnonzero(source & ok)
        home_draws, other_draws = folder_draws(home.size, seed), folder_draws(other.size, seed + 1)
        row = {"what": what, "design": how, "fit_images": int(chosen.size), "home_test_images": int(home.size),
               "source_images": int(other.size), "formats": {}}
        if how_fit.residual:
            row["auroc_per_k"] = per_k_auroc(reference[chosen], reference[home], reference[other], seed)
        for fmt, feats in features.items():
            d_home, d_other = site.distances(feats[home]), site.distances(feats[other])
            f_home = site.scores_of_distances(d_home) < site.flag_below
            f_other = site.scores_of_distances(d_other) < site.flag_below
            v_home, v_other = verdicts(f_home, home_draws), verdicts(f_other, other_draws)
            row["formats"][fmt] = {
                "auroc": roc_auc(np.r_[np.zeros(home.size), np.ones(other.size)], np.r_[d_home, d_other]),
                "home_flagged": float(f_home.mean()), "source_flagged": float(f_other.mean()),
                "home_folders_like": float(1 - v_home.mean()), "source_folders_different": float(v_other.mean()),
                "_verdicts": np.r_[v_home, v_other]}
        ref = row["formats"][REFERENCE]["_verdicts"]
        for fmt, cell in row["formats"].items():
            cell["folders_unlike_reference"] = int(np.sum(cell.pop("_verdicts") != ref))
        rows[name] = row
        log.info("%s: AUROC %s", name, {f: round(c["auroc"], 3) for f, c in row["formats"].items()})
    return rows


def shift_rows(clf, site: SiteModel, samples, seed: int) -> dict:
    """The run's site model on FracAtlas test through every shift of the suite, from `clf`'s features."""
    paths = [str(s.path) for s in samples if s.split == "test"]
    pixels, kept, failures = load_batch(paths, input_contract(clf.bundle))

    def distances(x: np.ndarray) -> np.ndarray:
        return np.concatenate([site.distances(clf.outputs(x[i:i + BATCH], (FEATURES,))[1][FEATURES]
                                              .reshape(-1, site.features)) for i in range(0, len(x), BATCH)])

    base = distances(pixels)
    base_flags = site.scores_of_distances(base) < site.flag_below
    rows = {"test": {"flagged": float(base_flags.mean()),
                     "folders_like": float(1 - verdicts(base_flags, folder_draws(base.size, seed)).mean())}}
    for name in progress(list(SHIFTS), f"shift suite through {clf.format.name}", len(SHIFTS)):
        d = distances(apply_shift(name, pixels, seed=seed))
        flags = site.scores_of_distances(d) < site.flag_below
        rows[name] = {"kind": "stability probe" if name in STABILITY_PROBES else "acquisition",
                      "auroc": roc_auc(np.r_[np.zeros(base.size), np.ones(d.size)], np.r_[base, d]),
                      "flagged": float(flags.mean()),
                      "folders_different": float(verdicts(flags, folder_draws(d.size, seed + 1)).mean())}
    return rows


def shipped_site_model(clf, samples, reference: np.ndarray, seed: int) -> tuple[SiteModel, dict]:
    """The site model export ships ("ppca", residual included, at its chosen K): the run's own when its bundle
    records one, else fitted as export/site_fit.py fits it, from the cached reference features (up to SITE_IMAGES
    seeded training images; K chosen on up to CHOICE_IMAGES seeded val images)."""
    record = clf.bundle.get("site_model") or {}
    if record.get("method") == PPCA_METHOD:
        return clf.site, {"method": PPCA_METHOD, "components": int(record["components"]),
                          "residual_scale": record["residual_scale"], "model": "the run's bundle"}
    split = np.array([s.split for s in samples])
    ok = np.isfinite(reference).all(axis=1)
    rng = np.random.default_rng(seed)
    train = rng.permutation(np.flatnonzero((split == "train") & ok))[:SITE_IMAGES]
    val = np.random.default_rng(seed).permutation(np.flatnonzero((split == "val") & ok))[:CHOICE_IMAGES]
    choice = choose_components(reference[train], reference[val], seed)
    if choice is None:
        raise SystemExit(f"no candidate K fits {train.size} training images of {reference.shape[1]} features")
    return choice.model, {"method": PPCA_METHOD, "components": choice.components,
                          "residual_scale": choice.model.residual_scale,
                          "model": f"refitted as export fits it ({train.size} training images, K chosen on "
                                   f"{val.size} val images; the run's bundle has {record.get('method')})"}


def scoring_cost_ms(site: SiteModel, repeats: int = 2000) -> float:
    """Median time of scoring one image's features with `site` (distance, the residual term of a ppca model
    included, and the conformal score): the site check's cost beyond the model run."""
    x = np.random.default_rng(0).standard_normal((1, site.features)).astype(np.float32)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        site.scores(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def open_format(run: str, fmt: str) -> tuple[str, object]:
    """(row label, classifier) of the run's `fmt` artifact; one export rejected (RUN/rejected/, checked against the
    export report as bench checks it) is opened with its embedded bundle and labelled '<format> (rejected)'."""
    from ..benchmarks.predictors import verify_rejected
    from ..benchmarks.runner import REJECTED_DIR
    from ..benchmarks.targets import rejected_label
    from ..edge_runtime.artifacts import artifact_file
    from ..edge_runtime.bundle import load_bundle
    from ..edge_runtime.formats import get_format

    folder = Path(run)
    rejected = folder / REJECTED_DIR / get_format(fmt).filename
    if folder.is_dir() and not artifact_file(load_bundle(folder), folder, get_format(fmt)).is_file() \
            and rejected.is_file():
        verify_rejected(str(rejected), run, "require")
        return rejected_label(fmt), open_classifier(rejected, integrity="trust-embedded")
    return fmt, open_classifier(run, format=fmt, integrity="require")


def evaluate(run: str, formats: list[str], data: str | None, out: Path, seed: int, shifts: bool,
             designs: tuple[str, ...] = tuple(DESIGNS)) -> dict:
    clfs = dict(open_format(run, fmt) for fmt in formats)
    reference = clfs[REFERENCE]
    if reference.site is None:
        raise SystemExit(f"{run}: no site model (export the run with this version)")
    source = data or (reference.bundle.get("data") or {}).get("source")
    samples = read_dataset(source)
    caches = {fmt: out / f"features_{fmt.replace(' (rejected)', '-rejected')}.npz" for fmt in clfs}
    features = {fmt: all_features(clf, reference.site.features, samples, caches[fmt]) for fmt, clf in clfs.items()}
    shipped, scored_with = shipped_site_model(reference, samples, features[REFERENCE], seed)
    result = {"run": run, "data": str(source), "formats": formats, "site_size": SITE_SIZE, "draws": DRAWS,
              "seed": seed, "scoring_ms_per_image": scoring_cost_ms(shipped), "scoring_model": scored_with,
              "designs": {design: source_rows(samples, features, seed, design=design) for design in designs}}
    if shifts:
        result["shifts"] = {fmt: shift_rows(clf, reference.site, samples, seed) for fmt, clf in clfs.items()}
    return result


def markdown(result: dict) -> str:
    lines = [f"# Site check on our own sources: {result['run']}", "",
             f"Data {result['data']}; {result['draws']} seeded {result['site_size']}-image folders per set; "
             f"scoring cost {result['scoring_ms_per_image'] * 1000:.0f} us per image beyond the model run"
             f"{_scored_with(result.get('scoring_model'))}.", "",
             "| source | format | fit on | AUROC | home test flagged | source flagged | home folders 'like' "
             "| source folders 'different' | verdicts unlike fp32 |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    rows_by_design = result.get("designs", {})
    for name, row in [(f"{n} [{r['design']['method']}]", r) for rows in rows_by_design.values()
                      for n, r in rows.items()]:
        for fmt, c in row["formats"].items():
            lines.append(f"| {name} ({row['source_images']}: {row['what']}) | {fmt} | {row['fit_images']} | "
                         f"{c['auroc']:.3f} | {c['home_flagged']:.1%} | {c['source_flagged']:.1%} | "
                         f"{c['home_folders_like']:.1%} | {c['source_folders_different']:.1%} | "
                         f"{c['folders_unlike_reference']} |")
    for name, row in [(f"{n}, {r['design']['method']}", r) for rows in rows_by_design.values()
                      for n, r in rows.items() if "auroc_per_k" in r]:
        lines += ["", f"{name}: val-home log-likelihood per K "
                  + ", ".join(f"{k}: {v:.0f}" for k, v in row["design"]["val_log_likelihood"].items())
                  + f" (chosen K={row['design']['components']}); AUROC per K, a report only: "
                  + ", ".join(f"{k}: {v:.3f}" for k, v in row["auroc_per_k"].items())]
    for fmt, rows in result.get("shifts", {}).items():
        lines += ["", f"## The shipped site model on the shift suite ({fmt})", "",
                  f"FracAtlas test: {rows['test']['flagged']:.1%} flagged, {rows['test']['folders_like']:.1%} of "
                  "folders judged like the training data.", "",
                  "| shift | kind | AUROC vs test | flagged | folders judged different |", "|---|---|--:|--:|--:|"]
        for name, v in rows.items():
            if name != "test":
                lines.append(f"| {name} | {v['kind']} | {v['auroc']:.3f} | {v['flagged']:.1%} | "
                             f"{v['folders_different']:.1%} |")
    return "\n".join(lines) + "\n"


def _scored_with(model: dict | None) -> str:
    if not model:
        return ""
    return f" ({model['method']}, K={model['components']}, residual term included; {model['model']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--formats", default=REFERENCE, help=f"comma-separated; {REFERENCE} is always included")
    parser.add_argument("--data", default=None, help="the dataset with split.csv metadata (default: the run's)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-shifts", action="store_true", help="skip the shift suite (a model run per shift)")
    parser.add_argument("--designs", default=",".join(DESIGNS),
                        help=f"comma-separated site-model designs to measure (of {', '.join(DESIGNS)})")
    args = parser.parse_args(argv)
    designs = tuple(d for d in args.designs.split(",") if d)
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        parser.error(f"unknown design(s) {', '.join(unknown)}: choose from {', '.join(DESIGNS)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    formats = [REFERENCE] + [f for f in args.formats.split(",") if f and f != REFERENCE]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate(args.run, formats, args.data, out, args.seed, not args.no_shifts, designs)
    write_outputs(out, "site_eval", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
