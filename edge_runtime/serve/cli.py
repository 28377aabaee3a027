"""`fracture-edge serve RUN`: the web page and JSON API (edge_runtime/serve/app.py); needs the `serve` extra."""
from __future__ import annotations

import argparse
import os

from ..formats import EXPORT_FORMATS


def register(subparsers) -> None:
    serve = subparsers.add_parser(
        "serve", help="a web page and JSON API for one model (no TensorFlow; pip install '.[serve]')",
        description="Serve a small page (pick or drop an X-ray: probability, both decisions, heatmap) and a JSON API "
                    "(POST /v1/predict with the image bytes, GET /v1/info, GET /healthz). Binds to 127.0.0.1; "
                    "another --host needs a token (--token or FRACTURE_EDGE_TOKEN), checked on every API call. "
                    "Without a token only loopback Host headers (localhost, 127.0.0.0/8, [::1]) and --allowed-host "
                    "names are answered (DNS-rebinding guard).")
    serve.add_argument("model", metavar="MODEL_OR_RUN", help="run folder, bundle.json, or a .tflite/.onnx artifact")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--token", default=None,
                       help="required on every API call as 'Authorization: Bearer TOKEN' (default: $FRACTURE_EDGE_TOKEN)")
    serve.add_argument("--format", choices=EXPORT_FORMATS, default=None, help="artifact to use from a run folder")
    serve.add_argument("--threads", type=int, default=None, metavar="N", help="interpreter threads")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest upload (default 20)")
    serve.add_argument("--max-pending", type=int, default=4, metavar="N",
                       help="received requests waiting for or in the model (one decode + model run at a time); "
                            "more get 503 (default 4)")
    serve.add_argument("--max-receiving", type=int, default=16, metavar="N",
                       help="request bodies being received at once; more get 503 (default 16)")
    serve.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                       help="seconds a request body may take to arrive; later: 408, connection closed (default 30)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="answer to this Host name too, any port (repeatable). Default: only loopback names "
                            "without a token, any name with one; given: loopback names and these")
    serve.add_argument("--allow-unverified", action="store_true",
                       help="serve an artifact that no bundle.json records (its embedded bundle is used)")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from .app import TOKEN_ENV, ServeOptions, serve

    opts = ServeOptions(model=args.model, host=args.host, port=args.port,
                        token=args.token or os.environ.get(TOKEN_ENV) or None, format=args.format,
                        threads=args.threads, max_upload_mb=args.max_upload_mb, max_pending=args.max_pending,
                        allow_unverified=args.allow_unverified, allowed_hosts=tuple(args.allowed_host),
                        body_timeout_s=args.body_timeout, max_receiving=args.max_receiving)
    return serve(opts)
