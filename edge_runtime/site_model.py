"""Whether an image looks like the training data: a Mahalanobis distance on the pooled features (issue 22).

numpy only, so the runtime (predict, serve, a Raspberry Pi) scores it from the `features` output of the same
forward pass. Designed and fixed here before it was run on any model it will judge:

- Fit on TRAINING images only. A seeded quarter of them is held out; the mean and the principal components
  (at most COMPONENTS, or the K export chooses for "ppca") come from the rest.
- The distance of an image is the root mean square of its whitened principal-component scores: about 1 for a
  typical training image, larger the further it lies from them. The "ppca" method (probabilistic PCA, the
  design docs/site-check.md measured and ships) also counts the energy outside the subspace, divided by the
  mean variance of the discarded directions, as an RMS over all D features; export chooses its K
  (site_components.py). A "mahalanobis-pca" record (residual_scale 0) is the subspace distance alone.
- Its `in_distribution` score is a conformal p-value: (1 + held-out training images at least as far) /
  (1 + held-out images). An image is flagged when the score is below FLAG_P: it lies further than 95 % of the
  held-out training images, so about 5 % of new images from the training distribution are flagged, by
  construction, whatever the model.
- A site (a folder of images, no labels) is judged by an exact one-sided binomial test of its flagged count
  against that 5 %: "different" when p < SITE_ALPHA, with the flagged share's Wilson 95 % interval.

Stored as one little-endian float32 file (mean, components, scales, held-out distances; `describe()` says
where each starts), readable from Kotlin with a ByteBuffer, and a small JSON record in bundle.json (the method,
and for "ppca" the residual_scale, 1/sigma^2, as a JSON number: the float32 file is laid out alike for both).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic
from .bundle_schema import SITE_METHOD as METHOD, SITE_METHOD_PPCA as PPCA_METHOD, is_number   # one spelling each

log = logging.getLogger(__name__)

SITE_FILE = "site_model.f32"     # beside the artifacts in a run folder (and in Android assets)
BUNDLE_KEY = "site_model"        # bundle.json: describe() + file, sha256, bytes, source, images
COMPONENTS = 64
HOLDOUT_SHARE = 0.25
FLAG_P = 0.05
SITE_ALPHA = 0.01
MIN_SITE_IMAGES = 20
LEVEL = 0.95
_Z95 = 1.959963984540054     # the normal quantile of a two-sided 95 % interval
_VARIANCE_FLOOR = 1e-6       # of the largest component's variance: keeps the whitening finite


@dataclass(frozen=True)
class SiteModel:
    """The fitted in-distribution model: features -> distance -> in_distribution score."""

    mean: np.ndarray          # (D,) float32
    components: np.ndarray    # (K, D) float32, orthonormal rows
    scales: np.ndarray        # (K,) float32, 1 / standard deviation of each component's score
    held_out: np.ndarray      # (M,) float32, sorted distances of the held-out training images
    fitted_on: int            # training images the mean and components came from
    residual_scale: float = 0.0   # 1 / sigma^2 of the directions outside the subspace; 0: the subspace only

    @property
    def features(self) -> int:
        return int(self.mean.size)

    @property
    def flag_below(self) -> float:
        return FLAG_P

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(N,) distance of each (N, D) feature vector."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ValueError(f"site model: expected features of shape (N, {self.features}), got {x.shape}")
        centred = x - self.mean
        projected = centred @ self.components.T
        inside = np.sum(np.square(projected * self.scales, dtype=np.float64), axis=1)
        if not self.residual_scale:
            return np.sqrt(inside / self.components.shape[0])
        return np.sqrt((inside + self.residual_scale * self._residual_energy(centred, projected)) / self.features)

    @staticmethod
    def _residual_energy(centred: np.ndarray, projected: np.ndarray) -> np.ndarray:
        """(N,) squared norm of each centred vector outside the subspace (>= 0)."""
        total = np.sum(np.square(centred, dtype=np.float64), axis=1)
        return np.maximum(total - np.sum(np.square(projected, dtype=np.float64), axis=1), 0.0)

    def log_likelihood(self, features: np.ndarray) -> np.ndarray:
        """(N,) Gaussian log-density of each feature vector under the probabilistic-PCA model (needs the residual)."""
        if not self.residual_scale:
            raise ValueError("site model: the log-likelihood needs the residual variance (fit with residual=True)")
        x = np.asarray(features, dtype=np.float32)
        d, k = self.features, self.components.shape[0]
        log_det = -2.0 * np.sum(np.log(self.scales.astype(np.float64))) - (d - k) * math.log(self.residual_scale)
        return -0.5 * (d * self.distances(x) ** 2 + log_det + d * math.log(2 * math.pi))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N,) in_distribution score: the conformal p-value of each image against the held-out images."""
        return self.scores_of_distances(self.distances(features))

    def scores_of_distances(self, d: np.ndarray) -> np.ndarray:
        """(N,) in_distribution scores of distances already computed."""
        return conformal_scores(self.held_out, d)

    def flags(self, features: np.ndarray) -> np.ndarray:
        """(N,) True where an image lies outside the training data."""
        return self.scores(features) < self.flag_below

    def describe(self) -> dict:
        """The bundle.json record: method, sizes and the float32 file's layout (offsets in values); "ppca" with
        its residual_scale when the distance counts the residual (an older reader refuses that method)."""
        k, d, m = self.components.shape[0], self.features, self.held_out.size
        method = {"method": PPCA_METHOD, "residual_scale": float(self.residual_scale)} if self.residual_scale else {
            "method": METHOD}
        return {**method, "features": d, "components": k, "fitted_on": self.fitted_on, "held_out": m,
                "flag_below": FLAG_P, "site_alpha": SITE_ALPHA, "dtype": "float32-le",
                "layout": {"mean": 0, "components": d, "scales": d + k * d, "held_out": d + k * d + k,
                           "values": d + k * d + k + m}}

    def to_bytes(self) -> bytes:
        parts = (self.mean, self.components.ravel(), self.scales, self.held_out)
        return b"".join(np.ascontiguousarray(p, dtype="<f4").tobytes() for p in parts)

    def save(self, path: str | Path) -> Path:
        """Write the float32 file atomically; returns its path."""
        return atomic.write_bytes(path, self.to_bytes())


def conformal_scores(held_out: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(N,) conformal p-values of distances `d` against the sorted held-out distances: (1 + held-out images at
    least as far) / (1 + held-out images)."""
    d = np.asarray(d, dtype=np.float64)
    at_least_as_far = held_out.size - np.searchsorted(held_out, d, side="left")
    return (1.0 + at_least_as_far) / (1.0 + held_out.size)


def load_site_model(path: str | Path, record: dict) -> SiteModel:
    """The model from its float32 file and its bundle.json record; one clear error if they disagree."""
    path = Path(path)
    layout = record.get("layout", {})
    try:
        values = np.frombuffer(path.read_bytes(), dtype="<f4")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the site model: {exc.strerror or exc}") from None
    residual_scale = _residual_scale(path, record)
    d, k = int(record.get("features", 0)), int(record.get("components", 0))
    if values.size != layout.get("values") or d <= 0 or k <= 0:
        raise ValueError(f"{path}: not a {record['method']} site model matching bundle.json "
                         f"({values.size} values, the record says {layout.get('values')})")
    start = layout["held_out"]
    return SiteModel(values[:d].copy(), values[d:d + k * d].reshape(k, d).copy(),
                     values[d + k * d:start].copy(), values[start:].copy(), int(record.get("fitted_on", 0)),
                     residual_scale)


def _residual_scale(path: Path, record: dict) -> float:
    """0 for the subspace method, the record's positive residual_scale for "ppca"; one clear error otherwise."""
    method = record.get("method")
    if method == METHOD:
        return 0.0
    if method != PPCA_METHOD:
        raise ValueError(f"{path}: site_model.method {method!r} is not one this fracture-edge reads ({METHOD}, "
                         f"{PPCA_METHOD}): a newer export? upgrade fracture-edge or re-export the run")
    scale = record.get("residual_scale")
    if not is_number(scale) or scale <= 0:
        raise ValueError(f"{path}: a {PPCA_METHOD} site model needs a positive residual_scale, got {scale!r}")
    return float(scale)


def site_model_for(bundle: dict, folder: str | Path) -> SiteModel | None:
    """The run's site model when its bundle records one and its file lies in `folder`, checked against the
    recorded sha256 (a mismatch is one clear error); None when the bundle has none or the file is absent
    (a lone artifact copied without it: predictions then carry no in_distribution score)."""
    import hashlib

    record = bundle.get(BUNDLE_KEY)
    if not isinstance(record, dict):
        return None
    path = Path(folder) / str(record.get("file", SITE_FILE))
    if not path.is_file():
        log.info("%s: no site model file beside the model: no in_distribution score", path)
        return None
    data = path.read_bytes()
    if record.get("sha256") and hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ValueError(f"{path}: the site model does not match the sha256 bundle.json records "
                         "(re-export the run)")
    return load_site_model(path, record)


def fit_site_model(features: np.ndarray, components: int = COMPONENTS, holdout_share: float = HOLDOUT_SHARE,
                   seed: int = 0, residual: bool = False) -> SiteModel:
    """Fit on training-image features (N, D): the mean and components on a seeded part, distances of the rest;
    with `residual`, the distance also counts the energy outside the subspace (probabilistic PCA)."""
    return fit_site_models(features, (components,), holdout_share, seed, residual)[components]


def fit_site_models(features: np.ndarray, components: tuple[int, ...], holdout_share: float = HOLDOUT_SHARE,
                    seed: int = 0, residual: bool = False, copies: np.ndarray | None = None) -> dict[int, SiteModel]:
    """fit_site_model at each number of components (K -> model), from one split and one SVD; a K beyond what
    the fit images and features support is cut to it (holdout_split() says which images fit).

    copies: optional (N, D) features of the same images under an invisible change, row for row; those of the
    fitting images are fitted beside them, the held-out images still calibrate clean (docs/site-check.md, fifth
    design)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"site model: training features must be a finite (N, D) array, got shape {x.shape}")
    fitting, held = holdout_split(x.shape[0], holdout_share, seed)
    fit, rest = x[fitting], x[held]
    if copies is not None:
        copies = np.asarray(copies, dtype=np.float64)
        if copies.shape != x.shape or not np.isfinite(copies).all():
            raise ValueError(f"site model: copies must be finite and shaped like the features {x.shape}, "
                             f"got {copies.shape}")
        fit = np.concatenate([fit, copies[fitting]])
    mean = fit.mean(axis=0)
    _, singular, vt = np.linalg.svd(fit - mean, full_matrices=False)
    return {k: _model_at(k, mean, singular, vt, fit.shape[0], rest, residual) for k in components}


def holdout_split(n: int, holdout_share: float = HOLDOUT_SHARE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indices that fit the mean and components, indices held out to calibrate the scores) of n training images."""
    held = int(round(n * holdout_share))
    if held < 20 or n - held < 2:
        raise ValueError(f"site model: {n} training images are too few (needs >= 20 held out, at "
                         f"{holdout_share:.0%} held out)")
    order = np.random.default_rng(seed).permutation(n)
    return order[held:], order[:held]


def _model_at(components: int, mean: np.ndarray, singular: np.ndarray, vt: np.ndarray, fitted: int,
              rest: np.ndarray, residual: bool) -> SiteModel:
    """The model of the first `components` directions of an SVD of `fitted` centred images, calibrated on `rest`."""
    d = mean.size
    k = max(1, min(components, fitted - 1, d))
    variance = singular[:k] ** 2 / (fitted - 1)
    variance = np.maximum(variance, _VARIANCE_FLOOR * max(float(variance[0]), 1e-30))
    residual_scale = 0.0
    if residual and d > k:
        discarded = np.sum(singular[k:] ** 2) / (fitted - 1) / (d - k)
        residual_scale = 1.0 / max(float(discarded), _VARIANCE_FLOOR * max(float(variance[0]), 1e-30))
    model = SiteModel(mean.astype(np.float32), vt[:k].astype(np.float32),
                      (1.0 / np.sqrt(variance)).astype(np.float32), np.zeros(0, np.float32), fitted, residual_scale)
    held_out = np.sort(model.distances(rest)).astype(np.float32)
    return SiteModel(model.mean, model.components, model.scales, held_out, model.fitted_on, residual_scale)


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly (log-space sum)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
            + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion k / n."""
    if n <= 0:
        return (float("nan"), float("nan"))
    z, share = _Z95, k / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class SiteVerdict:
    """A folder of images judged against the training data."""

    images: int
    flagged: int
    share: float
    ci_low: float
    ci_high: float
    expected: float           # the share flagged among images like the training data (FLAG_P)
    p_value: float            # one-sided exact binomial test: more flagged than expected
    verdict: str              # "like the training data", "different" or "too few images"

    @property
    def words(self) -> str:
        if self.verdict == "different":
            return ("different from the training data: adapt before use (fracture-edge adapt RUN --data FOLDER "
                    "with labelled local images)")
        if self.verdict == "too few images":
            return f"too few images to judge the site ({self.images} < {MIN_SITE_IMAGES})"
        return "like the training data"

    def to_dict(self) -> dict:
        return {"images": self.images, "flagged": self.flagged, "share": round(self.share, 4),
                "ci_low": round(self.ci_low, 4), "ci_high": round(self.ci_high, 4), "level": LEVEL,
                "expected": self.expected, "p_value": float(f"{self.p_value:.3g}"), "alpha": SITE_ALPHA,
                "test": "exact one-sided binomial against the expected share", "verdict": self.verdict,
                "words": self.words}


def judge_site(flags) -> SiteVerdict:
    """The verdict on a site from its images' flags."""
    flags = np.asarray(flags, dtype=bool).ravel()
    n, k = int(flags.size), int(flags.sum())
    low, high = wilson_interval(k, n)
    p = binomial_upper_tail(k, n, FLAG_P) if n else 1.0
    verdict = "too few images" if n < MIN_SITE_IMAGES else "different" if p < SITE_ALPHA else "like the training data"
    return SiteVerdict(n, k, k / n if n else float("nan"), low, high, FLAG_P, p, verdict)
