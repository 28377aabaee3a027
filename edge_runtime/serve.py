"""`fracture-edge serve`: a small web page and JSON API around one Classifier (starlette + uvicorn, no TensorFlow).

    GET  /            the page: pick or drop an X-ray, see the probability, both decisions and the heatmap
    POST /v1/predict  body = the image bytes -> probability, labels at both operating points, heatmap, latency
    GET  /v1/info     model, bundle and server facts
    GET  /healthz     liveness

Safe by default: it binds to 127.0.0.1; any other address needs a token (--token or FRACTURE_EDGE_TOKEN),
then checked on every /v1 call (`Authorization: Bearer TOKEN`). Uploads are read into memory only (never
written to disk), limited in size, and every bad one is a 4xx with {"error": "..."}; at most
`max_pending` requests are in the server at once (one model run at a time), the next gets a 503.
"""
from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .bundle import THRESHOLD_NAMES, resolve_threshold
from .errors import FractureEdgeError, MissingExtraError

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
    max_pending: int = 4          # requests inside the server at once (running + waiting); more get 503
    allow_unverified: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.max_upload_mb <= 512:
            raise ValueError(f"--max-upload-mb must be in (0, 512], got {self.max_upload_mb}")
        if not 1 <= self.max_pending <= 256:
            raise ValueError(f"--max-pending must be between 1 and 256, got {self.max_pending}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("the token must be at least 8 characters long")
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"--host {self.host} is reachable from other machines: give a token "
                             f"(--token or the {TOKEN_ENV} environment variable), checked on every API call")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Service:
    """The model, its lock (one inference at a time) and the admission counter."""

    def __init__(self, classifier, opts: ServeOptions):
        self.clf, self.opts = classifier, opts
        self.lock = threading.Lock()
        self.pending = 0
        self.started = time.time()
        self.served = 0
        self.heatmap = "heatmap" in classifier.extra_outputs
        self.decisions = {name: resolve_threshold(classifier.bundle, name)[1] for name in THRESHOLD_NAMES}

    def info(self) -> dict:
        bundle, clf = self.clf.bundle, self.clf
        record = (bundle.get("artifacts") or {}).get(clf.format.name) or {}
        return {"model": bundle.get("model"), "format": clf.format.name, "file": os.path.basename(clf.path),
                "runtime": clf.runtime, "integrity": clf.integrity, "sha256": record.get("sha256"),
                "labels": bundle["labels"], "positive_label": bundle["positive_label"],
                "thresholds": self.decisions, "default_threshold": clf.threshold_name,
                "input_size": clf.contract.size, "extra_outputs": list(clf.extra_outputs),
                "heatmap": (bundle["output"].get("extra") or {}).get("heatmap"),
                "metrics_test": (bundle.get("metrics") or {}).get("test"),
                "synthetic": bool((bundle.get("data") or {}).get("synthetic")),
                "max_upload_bytes": int(self.opts.max_upload_mb * 1e6), "max_pending": self.opts.max_pending,
                "token_required": bool(self.opts.token), "served": self.served,
                "uptime_s": round(time.time() - self.started, 1), "disclaimer": DISCLAIMER}

    def predict(self, data: bytes, name: str, overlay: bool) -> dict:
        """Decode, run and describe one upload (called in a worker thread)."""
        from .decoding import decode_gray_bytes
        from .preprocessing import to_model_input

        start = time.perf_counter()
        try:
            gray = decode_gray_bytes(data, name)
        except MissingExtraError as exc:
            raise ApiError(415, str(exc)) from None
        except FractureEdgeError as exc:
            raise ApiError(415 if "not an image" in str(exc) else 422, str(exc)) from None
        pixels = to_model_input(gray, self.clf.contract)[None]
        decoded = time.perf_counter()
        with self.lock:
            model_start = time.perf_counter()
            probs, extra = self.clf.outputs(pixels, ("heatmap",) if self.heatmap else ())
            model_ms = (time.perf_counter() - model_start) * 1000
        probability = float(probs[0])
        labels = {name: self.clf.positive_label if probability >= t else self.negative_label
                  for name, t in self.decisions.items()}
        answer = {"probability": probability, "label": self.clf.label_for(probability),
                  "threshold_name": self.clf.threshold_name, "threshold": self.clf.threshold,
                  "decisions": {n: {"threshold": self.decisions[n], "label": labels[n]} for n in THRESHOLD_NAMES},
                  "heatmap": None, "image": {"width": int(gray.shape[1]), "height": int(gray.shape[0])},
                  "model": {"format": self.clf.format.name, "file": os.path.basename(self.clf.path)},
                  "disclaimer": DISCLAIMER}
        if self.heatmap:
            answer["heatmap"] = heatmap_entry(gray, extra["heatmap"][0], answer, self.clf, overlay)
        answer["latency_ms"] = {"decode": round((decoded - start) * 1000, 2), "model": round(model_ms, 2),
                                "total": round((time.perf_counter() - start) * 1000, 2)}
        self.served += 1
        return answer

    @property
    def negative_label(self) -> str:
        return next(label for label in self.clf.bundle["labels"] if label != self.clf.positive_label)


def heatmap_entry(gray: np.ndarray, grid: np.ndarray, answer: dict, clf, overlay: bool) -> dict:
    """The small grid (row-major, the model's own values) and, unless turned off, the overlay as a PNG data URL."""
    from .heatmap import overlay as draw_overlay, peak_cell, png_bytes

    entry = {"shape": list(grid.shape), "grid": np.round(grid, 5).tolist(), "peak_cell": list(peak_cell(grid)),
             "meaning": (clf.bundle["output"].get("extra") or {}).get("heatmap", {}).get("meaning")}
    if overlay:
        entry["overlay_png"] = "data:image/png;base64," + base64.b64encode(png_bytes(draw_overlay(gray, grid))).decode()
    return entry


def create_app(classifier, opts: ServeOptions):
    """The starlette application around one loaded Classifier."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    service = Service(classifier, opts)
    limit = int(opts.max_upload_mb * 1e6)
    page = resources.files(__package__).joinpath("serve_page.html").read_text(encoding="utf-8")

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def authorized(request: Request) -> bool:
        if not opts.token:
            return True
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-token", "")
        return hmac.compare_digest(given.encode(), opts.token.encode())

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise ApiError(413, f"upload too large: {declared} bytes, limit {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"upload too large: over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(request: Request):
        if not authorized(request):
            return error(401, "missing or wrong token (Authorization: Bearer TOKEN)", {"WWW-Authenticate": "Bearer"})
        if service.pending >= opts.max_pending:
            return error(503, f"busy: {opts.max_pending} requests in progress, try again shortly", {"Retry-After": "1"})
        service.pending += 1
        try:
            data = await read_body(request)
            if not data:
                raise ApiError(400, "empty upload: send the image bytes as the request body")
            name = request.query_params.get("name") or "upload"
            overlay = request.query_params.get("overlay", "1") not in ("0", "false", "no")
            return JSONResponse(await run_in_threadpool(service.predict, data, name[:200], overlay))
        except ApiError as exc:
            return error(exc.status, exc.message)
        except ClientDisconnect:
            return error(400, "the client went away during the upload")
        except FractureEdgeError as exc:   # the model failed on a valid image: the server's problem
            log.error("%s", exc)
            return error(500, str(exc))
        finally:
            service.pending -= 1

    async def info(request: Request):
        if not authorized(request):
            return error(401, "missing or wrong token (Authorization: Bearer TOKEN)", {"WWW-Authenticate": "Bearer"})
        return JSONResponse(service.info())

    async def healthz(request: Request):
        return JSONResponse({"status": "ok"})

    async def index(request: Request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    async def not_found(request: Request, exc):
        return error(getattr(exc, "status_code", 404), getattr(exc, "detail", None) or "not found")

    routes = [Route("/", index), Route("/healthz", healthz), Route("/v1/info", info),
              Route("/v1/predict", predict, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.service = service
    return app


def serve(opts: ServeOptions) -> int:
    """Load the model, build the app, and run uvicorn until interrupted."""
    from .classifier import open_classifier
    from .errors import missing_extra

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
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)
    return 0
