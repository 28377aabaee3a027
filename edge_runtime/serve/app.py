"""`fracture-edge serve`: a small web page and JSON API around one Classifier (starlette + uvicorn, no TensorFlow).

    GET  /            the page: pick or drop an X-ray, see the probability, both decisions and the heatmap
    POST /v1/predict  body = the image bytes -> probability, labels at both operating points, heatmap, latency
    GET  /v1/info     model, bundle and server facts
    GET  /healthz     liveness

Safe by default: it binds to 127.0.0.1; any other address needs a token (--token or FRACTURE_EDGE_TOKEN),
then checked on every /v1 call (`Authorization: Bearer TOKEN`). Without a token only loopback Host headers
(or --allowed-host names) are served (guard.py: also the CSP and framing rules). Uploads are read into
memory only (never written to disk), limited in size and time, at most `max_receiving` at once
(upload.py), and every bad one is a 4xx with {"error": "..."}; at most `max_pending` received requests
wait for the model, the next gets a 503; decode, model and overlay run one request at a time, so memory is
bounded by one image.
"""
from __future__ import annotations

import base64
import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .. import decoding
from ..bundle import THRESHOLD_NAMES, resolve_threshold
from ..errors import FractureEdgeError, MissingExtraError
from ..preprocessing import to_model_input
from .guard import SECURITY_HEADERS, GuardMiddleware, HostPolicy, is_loopback, normalize_allowed_host
from .upload import ApiError, UploadReader

log = logging.getLogger(__name__)

TOKEN_ENV = "FRACTURE_EDGE_TOKEN"
DISCLAIMER = "Research software, not a medical device: not for diagnosis or treatment decisions."


@dataclass(frozen=True)
class ServeOptions:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    format: str | None = None
    threads: int | None = None
    max_upload_mb: float = 20.0
    max_pending: int = 4          # received requests waiting for or in the model; more get 503
    allow_unverified: bool = False
    allowed_hosts: tuple[str, ...] = ()   # Host names served besides loopback ones (--allowed-host)
    body_timeout_s: float = 30.0  # a request body must arrive within this, else 408 and the connection closes
    max_receiving: int = 16       # request bodies being read at once; more get 503

    def __post_init__(self) -> None:
        if not 0 < self.max_upload_mb <= 512:
            raise ValueError(f"--max-upload-mb must be in (0, 512], got {self.max_upload_mb}")
        if not 1 <= self.max_pending <= 256:
            raise ValueError(f"--max-pending must be between 1 and 256, got {self.max_pending}")
        if not 0 < self.body_timeout_s <= 3600:
            raise ValueError(f"--body-timeout must be in (0, 3600] seconds, got {self.body_timeout_s}")
        if not 1 <= self.max_receiving <= 1024:
            raise ValueError(f"--max-receiving must be between 1 and 1024, got {self.max_receiving}")
        for name in self.allowed_hosts:
            normalize_allowed_host(name)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("the token must be at least 8 characters long")
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"--host {self.host} is reachable from other machines: give a token "
                             f"(--token or the {TOKEN_ENV} environment variable), checked on every API call")


class Service:
    """The model, its lock (one decode + model run + overlay at a time) and the admission counter."""

    def __init__(self, classifier, opts: ServeOptions):
        self.clf, self.opts = classifier, opts
        self.lock = threading.Lock()
        self.pending = 0          # received requests waiting for or holding the lock (event loop only)
        self.started = time.time()
        self.served = 0
        self.heatmap = "heatmap" in classifier.extra_outputs
        self.decisions = {name: resolve_threshold(classifier.bundle, name)[1] for name in THRESHOLD_NAMES}

    def info(self) -> dict:
        bundle, clf, opts = self.clf.bundle, self.clf, self.opts
        record = (bundle.get("artifacts") or {}).get(clf.format.name) or {}
        return {"model": bundle.get("model"), "format": clf.format.name, "file": os.path.basename(clf.path),
                "runtime": clf.runtime, "integrity": clf.integrity, "sha256": record.get("sha256"),
                "labels": bundle["labels"], "positive_label": bundle["positive_label"],
                "thresholds": self.decisions, "default_threshold": clf.threshold_name,
                "input_size": clf.contract.size, "extra_outputs": list(clf.extra_outputs),
                "heatmap": (bundle["output"].get("extra") or {}).get("heatmap"),
                "metrics_test": (bundle.get("metrics") or {}).get("test"),
                "synthetic": bool((bundle.get("data") or {}).get("synthetic")),
                "max_upload_bytes": int(opts.max_upload_mb * 1e6), "max_pending": opts.max_pending,
                "max_receiving": opts.max_receiving, "body_timeout_s": opts.body_timeout_s,
                "token_required": bool(opts.token), "served": self.served,
                "uptime_s": round(time.time() - self.started, 1), "disclaimer": DISCLAIMER}

    def predict(self, data: bytes, name: str, overlay: bool) -> dict:
        """Decode, run and describe one upload (called in a worker thread). Everything that holds the
        decoded image runs under the lock, so the server holds at most one decoded image at a time."""
        start = time.perf_counter()
        with self.lock:
            decode_start = time.perf_counter()
            gray = self.decode(data, name)
            pixels = to_model_input(gray, self.clf.contract)[None]
            model_start = time.perf_counter()
            probs, extra = self.clf.scored_outputs(pixels, self.heatmap)
            model_end = time.perf_counter()
            answer = self.describe(float(probs[0]), gray)
            answer["in_distribution"] = site_entry(self.clf, extra)
            if self.heatmap:
                answer["heatmap"] = heatmap_entry(gray, extra["heatmap"][0], answer, self.clf, overlay)
            self.served += 1
        answer["latency_ms"] = {"decode": round((model_start - decode_start) * 1000, 2),
                                "model": round((model_end - model_start) * 1000, 2),
                                "total": round((time.perf_counter() - start) * 1000, 2)}
        return answer

    @staticmethod
    def decode(data: bytes, name: str) -> np.ndarray:
        try:
            return decoding.decode_gray_bytes(data, name)
        except MissingExtraError as exc:
            raise ApiError(415, str(exc)) from None
        except FractureEdgeError as exc:
            raise ApiError(415 if "not an image" in str(exc) else 422, str(exc)) from None

    def describe(self, probability: float, gray: np.ndarray) -> dict:
        labels = {name: self.clf.positive_label if probability >= t else self.negative_label
                  for name, t in self.decisions.items()}
        return {"probability": probability, "label": self.clf.label_for(probability),
                "threshold_name": self.clf.threshold_name, "threshold": self.clf.threshold,
                "decisions": {n: {"threshold": self.decisions[n], "label": labels[n]} for n in THRESHOLD_NAMES},
                "heatmap": None, "image": {"width": int(gray.shape[1]), "height": int(gray.shape[0])},
                "model": {"format": self.clf.format.name, "file": os.path.basename(self.clf.path)},
                "disclaimer": DISCLAIMER}

    @property
    def negative_label(self) -> str:
        return next(label for label in self.clf.bundle["labels"] if label != self.clf.positive_label)


def site_entry(clf, extra: dict) -> dict | None:
    """The site check of one upload: its in_distribution score and flag (None without a site model)."""
    if "in_distribution" not in extra:
        return None
    score = float(extra["in_distribution"][0])
    return {"score": round(score, 4), "outside_training_data": bool(score < clf.site.flag_below),
            "flag_below": clf.site.flag_below}


def heatmap_entry(gray: np.ndarray, grid: np.ndarray, answer: dict, clf, overlay: bool) -> dict:
    """The small grid (row-major, the model's own values) and, unless turned off, the overlay as a PNG data URL."""
    from ..heatmap import overlay as draw_overlay, peak_cell, png_bytes

    entry = {"shape": list(grid.shape), "grid": np.round(grid, 5).tolist(), "peak_cell": list(peak_cell(grid)),
             "meaning": (clf.bundle["output"].get("extra") or {}).get("heatmap", {}).get("meaning")}
    if overlay:
        entry["overlay_png"] = "data:image/png;base64," + base64.b64encode(png_bytes(draw_overlay(gray, grid))).decode()
    return entry


STATIC = {"/page.js": ("page.js", "text/javascript; charset=utf-8"),
          "/page.css": ("page.css", "text/css; charset=utf-8")}
UNAUTHORIZED = "missing or wrong token (Authorization: Bearer TOKEN)"


def static_text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def create_app(classifier, opts: ServeOptions):
    """The starlette application around one loaded Classifier, behind guard.py's middleware."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    service = Service(classifier, opts)
    uploads = UploadReader(int(opts.max_upload_mb * 1e6), opts.body_timeout_s, opts.max_receiving)
    page = static_text("page.html")
    assets = {path: (static_text(name), media) for path, (name, media) in STATIC.items()}

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def authorized(request: Request) -> bool:
        if not opts.token:
            return True
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-token", "")
        return hmac.compare_digest(given.encode(), opts.token.encode())

    async def predict(request: Request):
        if not authorized(request):
            return error(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        try:
            data = await uploads.read(request)      # not yet pending: a slow body holds no model slot
            if not data:
                raise ApiError(400, "empty upload: send the image bytes as the request body")
        except ApiError as exc:
            return error(exc.status, exc.message, exc.headers)
        if service.pending >= opts.max_pending:
            return error(503, f"busy: {opts.max_pending} requests in progress, try again shortly", {"Retry-After": "1"})
        service.pending += 1
        try:
            name = request.query_params.get("name") or "upload"
            overlay = request.query_params.get("overlay", "1") not in ("0", "false", "no")
            return JSONResponse(await run_in_threadpool(service.predict, data, name[:200], overlay))
        except ApiError as exc:
            return error(exc.status, exc.message, exc.headers)
        except FractureEdgeError as exc:   # the model failed on a valid image: the server's problem
            log.error("%s", exc)
            return error(500, str(exc))
        finally:
            service.pending -= 1

    async def info(request: Request):
        if not authorized(request):
            return error(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        return JSONResponse(service.info())

    async def healthz(request: Request):
        return JSONResponse({"status": "ok"})

    async def index(request: Request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def asset(request: Request):
        text, media = assets[request.url.path]
        return Response(text, media_type=media, headers={"Cache-Control": "no-store"})

    async def not_found(request: Request, exc):
        return error(getattr(exc, "status_code", 404), getattr(exc, "detail", None) or "not found")

    async def internal_error(request: Request, exc):   # answered outside the middleware: add the headers here
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return error(500, "internal server error", SECURITY_HEADERS)

    routes = [Route("/", index), Route("/healthz", healthz), Route("/v1/info", info),
              Route("/v1/predict", predict, methods=["POST"]), *(Route(path, asset) for path in STATIC)]
    guard = Middleware(GuardMiddleware, policy=HostPolicy.of(opts.token, opts.allowed_hosts))
    app = Starlette(routes=routes, middleware=[guard],
                    exception_handlers={404: not_found, 405: not_found, 500: internal_error})
    app.state.service, app.state.uploads = service, uploads
    return app


def serve(opts: ServeOptions) -> int:
    """Load the model, build the app, and run uvicorn until interrupted."""
    from ..classifier import open_classifier
    from ..errors import missing_extra

    try:
        import uvicorn
    except ImportError:
        raise missing_extra("uvicorn", "serve", "serving the web page and API") from None
    integrity = "allow-unverified" if opts.allow_unverified else "require"
    clf = open_classifier(opts.model, num_threads=opts.threads, format=opts.format, integrity=integrity)
    try:
        app = create_app(clf, opts)
    except ImportError:
        raise missing_extra("starlette", "serve", "serving the web page and API") from None
    log.info("serving %s (%s) on http://%s:%d/%s", clf.path, clf.format.name, opts.host, opts.port,
             " (token required)" if opts.token else "")
    if opts.allowed_hosts:
        log.info("answering to Host names: loopback, %s", ", ".join(opts.allowed_hosts))
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)
    return 0
