"""Site adaptation, simulated on FracAtlas: one body region plays the new site (issue 15).

    python -m fracture_edge.experiments.site_adaptation split --data ../shared/data/fracatlas --out-dir runs/site-hand
    fracture-edge train --data runs/site-hand/holdout.csv --out runs/no-hand --weights W ...   # the base model
    fracture-edge export runs/no-hand
    python -m fracture_edge.experiments.site_adaptation run runs/no-hand --region-csv runs/site-hand/region.csv \\
        --out runs/site-hand/results

`split` writes holdout.csv (FracAtlas without the region: no row whose `region` is it, and no row flagged
with it, e.g. a `mixed` image showing a hand) and region.csv (the rows whose `region` is it), paths relative
to the CSVs. `run` reads the region's features once through the base run's artifact, then for each N
(25 / 50 / 100) draws 5 seeded labelled sets (at least 10 per class, else the region's prevalence), runs
the adapt code on each (edge_runtime.adapt.stage.adapt_local: the same fit, cross-validation and run folder as
`fracture-edge adapt`), and scores the rest of the region with the adapted head and with the base model.
Writes site_adaptation.{json,md,png} to --out. numpy only, except the plot (matplotlib, skipped if absent).
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..edge_runtime.bundle_schema import THRESHOLD_NAMES

log = logging.getLogger(__name__)

SIZES = (25, 50, 100)
DRAWS = 5
MIN_PER_CLASS = 10


@dataclass(frozen=True)
class SiteOptions:
    base_run: Path
    region_csv: Path
    out: Path
    sizes: tuple[int, ...] = SIZES
    draws: int = DRAWS
    format: str | None = None
    threads: int | None = None
    seed: int = 0


def write_site_split(data: Path, region: str, out_dir: Path, keep_flagged: bool = False) -> dict:
    """holdout.csv (without the region; without images flagged with it unless keep_flagged) and region.csv
    (the rows whose region is it) from data/split.csv; returns the counts."""
    source = data / "split.csv" if data.is_dir() else data
    with open(source, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or ()), list(reader)
    if "region" not in fields:
        raise ValueError(f"{source}: no 'region' column")
    regions = sorted({r["region"] for r in rows})
    if region not in regions:
        raise ValueError(f"unknown region {region!r}; valid: {', '.join(regions)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for row in rows:                                 # paths relative to the new CSVs' folder
        absolute = Path(row["path"]) if Path(row["path"]).is_absolute() else source.parent / row["path"]
        row["path"] = os.path.relpath(absolute.resolve(), out_dir.resolve())
    in_region = [r for r in rows if r["region"] == region]
    flagged = [r for r in rows if r["region"] != region and r.get(region) == "1"]
    holdout = [r for r in rows if r["region"] != region and (keep_flagged or r.get(region) != "1")]
    for name, part in (("holdout.csv", holdout), ("region.csv", in_region)):
        with open(out_dir / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(part)
    def count(part):
        return {"images": len(part), "fractured": sum(r["label"] == "fractured" for r in part)}
    return {"region": region, "holdout": count(holdout), "region_rows": count(in_region),
            "flagged_elsewhere": count(flagged), "flagged_kept_in_holdout": keep_flagged, "out_dir": str(out_dir)}


def draw_indices(targets: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n images, at least MIN_PER_CLASS of each class, otherwise in the region's proportions (seeded)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(targets == 1), np.flatnonzero(targets == 0)
    n_pos = int(np.clip(round(n * pos.size / targets.size), MIN_PER_CLASS, n - MIN_PER_CLASS))
    if n_pos > pos.size or n - n_pos > neg.size:
        raise ValueError(f"the region has {pos.size} fractured / {neg.size} other images: too few for N = {n}")
    return np.sort(np.r_[rng.choice(pos, n_pos, replace=False), rng.choice(neg, n - n_pos, replace=False)])


def score_rest(y: np.ndarray, adapted: np.ndarray, base: np.ndarray, bundle: dict, base_bundle: dict) -> dict:
    from ..edge_runtime.confidence import auc_ci
    from ..edge_runtime.metrics import metrics_at

    out = {"n": int(y.size), "n_positive": int(y.sum()), "auc_adapted": auc_ci(y, adapted, n=500),
           "auc_base": auc_ci(y, base, n=500)}
    for name in THRESHOLD_NAMES:
        a = metrics_at(y, adapted, bundle["thresholds"][name])
        b = metrics_at(y, base, base_bundle["thresholds"][name])
        out[name] = {"adapted": {k: a[k] for k in ("sensitivity", "specificity")},
                     "base": {k: b[k] for k in ("sensitivity", "specificity")}}
    return out


def run_simulation(opts: SiteOptions) -> dict:
    """Every (N, draw): adapt on the draw, score the rest of the region; returns the summary written to --out."""
    from ..edge_runtime import atomic
    from ..edge_runtime.adapt.stage import AdaptOptions, adapt_local
    from ..edge_runtime.adapt.data import load_local_set, read_local_samples
    from ..edge_runtime.adapt.head import AdaptedHead
    from ..edge_runtime.bundle import load_bundle
    from ..edge_runtime.classifier import open_classifier

    if opts.out.exists() and any(opts.out.iterdir()):
        raise ValueError(f"{opts.out}: exists and is not empty; choose a new output folder")
    base = load_bundle(opts.base_run)
    clf = open_classifier(opts.base_run, num_threads=opts.threads, format=opts.format, integrity="require")
    region = load_local_set(read_local_samples(opts.region_csv), clf)
    log.info("region: %d images (%d fractured), %d skipped", len(region.paths), int(region.targets.sum()),
             len(region.failures))
    rows = []
    for n in opts.sizes:
        for draw in range(opts.draws):
            chosen = draw_indices(region.targets, n, opts.seed + 1000 * n + draw)
            rest = np.setdiff1d(np.arange(len(region.paths)), chosen)
            folder = opts.out / "runs" / f"n{n}_draw{draw}"
            result = adapt_local(AdaptOptions(run=opts.base_run, data=opts.region_csv, out=folder, seed=draw),
                                 base, clf, region.subset(chosen))
            bundle = load_bundle(folder)
            adapted = AdaptedHead.from_bundle(bundle).probabilities(region.features[rest])
            check_against_runtime(folder, clf.format.name, [region.paths[i] for i in rest[:4]], adapted[:4])
            ev = result.report["evaluation"]
            rows.append({"n": n, "draw": draw, "run": str(folder), "counts": result.report["counts"],
                         "C": result.report["C"], "cv_auc": ev["adapted"]["auc"], "cv_baseline_auc": ev["baseline"]["auc"],
                         "beats_baseline": ev["beats_baseline"],
                         "rest": score_rest(region.targets[rest], adapted, region.base_probabilities[rest], bundle, base)})
            log.info("N=%d draw %d: rest AUC base %.3f -> adapted %.3f", n, draw, rows[-1]["rest"]["auc_base"]["value"],
                     rows[-1]["rest"]["auc_adapted"]["value"])
    summary = {"base_run": str(opts.base_run), "region_csv": str(opts.region_csv), "format": clf.format.name,
               "region_images": len(region.paths), "region_fractured": int(region.targets.sum()),
               "skipped": [list(f) for f in region.failures], "rows": rows, "by_n": summarise(rows)}
    opts.out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(opts.out / "site_adaptation.json", summary)
    atomic.write_text(opts.out / "site_adaptation.md", render_markdown(summary))
    plot_summary(summary, opts.out / "site_adaptation.png")
    return summary


def check_against_runtime(run: Path, fmt: str, paths: list[str], expected: np.ndarray) -> None:
    """The rest is scored from features read once; the adapted run, loaded as users load it, must agree."""
    from ..edge_runtime.classifier import Classifier

    got = np.array([p.probability for p in Classifier(run, format=fmt, integrity="require").predict_files(paths)])
    if not np.allclose(got, expected, rtol=0, atol=1e-9):
        raise RuntimeError(f"{run}: the adapted run's own predictions differ from the simulation's "
                           f"(max {np.abs(got - expected).max():.2e}): a bug")


def summarise(rows: list[dict]) -> list[dict]:
    """Per N: mean, min and max over draws of the rest-of-region AUCs and the screening rates."""
    out = []
    for n in sorted({r["n"] for r in rows}):
        part = [r for r in rows if r["n"] == n]
        def spread(values):
            values = np.asarray(values, dtype=np.float64)
            return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
        out.append({"n": n, "draws": len(part),
                    "auc_base": spread([r["rest"]["auc_base"]["value"] for r in part]),
                    "auc_adapted": spread([r["rest"]["auc_adapted"]["value"] for r in part]),
                    "delta_auc": spread([r["rest"]["auc_adapted"]["value"] - r["rest"]["auc_base"]["value"] for r in part]),
                    "cv_auc": spread([r["cv_auc"]["value"] for r in part]),
                    "beats_baseline": sum(r["beats_baseline"] for r in part),
                    **{f"screening_{k}_{who}": spread([r["rest"]["screening"][who][k] for r in part])
                       for k in ("sensitivity", "specificity") for who in ("base", "adapted")}})
    return out


def render_markdown(summary: dict) -> str:
    def fmt(entry):
        return f"{entry['mean']:.3f} ({entry['min']:.3f}-{entry['max']:.3f})"
    lines = [f"# Site adaptation: `{summary['base_run']}` on `{summary['region_csv']}`", "",
             f"Features from `{summary['format']}`; region: {summary['region_images']} images "
             f"({summary['region_fractured']} fractured), {len(summary['skipped'])} skipped. Each N: seeded draws "
             "(at least 10 per class), adapted with `fracture-edge adapt`'s code, scored on the rest of the region. "
             "Cells: mean (min-max over draws).", "",
             "| N | draws | AUC base (rest) | AUC adapted (rest) | ΔAUC | CV AUC (adapt's own estimate) | beats baseline | "
             "screening sens base / adapted | screening spec base / adapted |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["by_n"]:
        lines.append(f"| {row['n']} | {row['draws']} | {fmt(row['auc_base'])} | {fmt(row['auc_adapted'])} | "
                     f"{row['delta_auc']['mean']:+.3f} ({row['delta_auc']['min']:+.3f} to {row['delta_auc']['max']:+.3f}) | "
                     f"{fmt(row['cv_auc'])} | {row['beats_baseline']}/{row['draws']} | "
                     f"{row['screening_sensitivity_base']['mean']:.3f} / {row['screening_sensitivity_adapted']['mean']:.3f} | "
                     f"{row['screening_specificity_base']['mean']:.3f} / {row['screening_specificity_adapted']['mean']:.3f} |")
    return "\n".join(lines + ["", "Base thresholds: the base run's (chosen on its own validation split); adapted "
                                  "thresholds: chosen by cross-validation on the draw.", ""])


def plot_summary(summary: dict, path: Path) -> None:
    """AUC on the rest of the region before/after adaptation vs N, every draw as a dot, mean as a line."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, colour in (("auc_base", "base model", "grey"), ("auc_adapted", "adapted head", "tab:blue")):
        ns = [r["n"] for r in summary["rows"]]
        ax.scatter(ns, [r["rest"][key]["value"] for r in summary["rows"]], color=colour, alpha=0.5, s=18)
        by_n = summary["by_n"]
        ax.plot([r["n"] for r in by_n], [r[key]["mean"] for r in by_n], color=colour, label=label, marker="o")
        ax.fill_between([r["n"] for r in by_n], [r[key]["min"] for r in by_n], [r[key]["max"] for r in by_n],
                        color=colour, alpha=0.15)
    ax.set_xlabel("labelled images of the new site (N)")
    ax.set_ylabel("AUC on the rest of the site")
    ax.set_xticks([r["n"] for r in summary["by_n"]])
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from ..edge_runtime.cli import configure_logging
    from ..edge_runtime.errors import FractureEdgeError

    parser = argparse.ArgumentParser(prog="python -m fracture_edge.experiments.site_adaptation",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    split = sub.add_parser("split", help="write holdout.csv (without the region) and region.csv")
    split.add_argument("--data", required=True, type=Path, help="FracAtlas folder (with split.csv) or its split CSV")
    split.add_argument("--region", default="hand", help="the region playing the new site (default hand)")
    split.add_argument("--out-dir", required=True, type=Path)
    split.add_argument("--keep-flagged", action="store_true",
                       help="keep images of other regions flagged with this one (e.g. 'mixed' with a hand) in the hold-out")
    run = sub.add_parser("run", help="adapt on N = 25/50/100 images of the region (5 draws each), score the rest")
    run.add_argument("base_run", type=Path, help="a run trained on holdout.csv and exported (features output)")
    run.add_argument("--region-csv", required=True, type=Path)
    run.add_argument("--out", required=True, type=Path)
    run.add_argument("--sizes", default="25,50,100", help="comma-separated N (default 25,50,100)")
    run.add_argument("--draws", type=int, default=DRAWS)
    run.add_argument("--format", default=None, help="artifact giving the features (default: the runtime's choice)")
    run.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.command == "split":
            print(write_site_split(args.data, args.region, args.out_dir, args.keep_flagged))
            return 0
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
        summary = run_simulation(SiteOptions(args.base_run, args.region_csv, args.out, sizes, args.draws,
                                             args.format, args.threads))
        print(render_markdown(summary))
        return 0
    except (FractureEdgeError, ValueError, OSError) as exc:
        print(f"site_adaptation: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
