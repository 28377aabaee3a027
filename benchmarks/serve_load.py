"""Load test of `fracture-edge serve` on 127.0.0.1: N concurrent clients x M requests, bounded in count and time.

    python -m fracture_edge.benchmarks.serve_load RUN --image xray.jpg [--clients 4 --requests 200]

Starts the server in its own process on a free loopback port (never another address), warms it up, then
every client posts the same image M times. Reports errors, the probabilities seen (all must be the one
`predict` gives), p50/p99 client-side latency, throughput, and the server's RSS before and after.
Standard library only (urllib, threads), so it measures the server, not a client library.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


@dataclass(frozen=True)
class LoadResult:
    clients: int
    requests: int
    errors: int
    error_examples: list
    unsent: int                    # requests not sent because the time limit was reached (not errors)
    probabilities: list            # distinct probabilities answered
    p50_ms: float
    p99_ms: float
    seconds: float
    requests_per_s: float
    rss_before_mb: float | None
    rss_after_mb: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process (Linux /proc), MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_server(model: str, port: int, extra: tuple[str, ...] = (), timeout: float = 60.0) -> subprocess.Popen:
    """`fracture-edge serve MODEL` on 127.0.0.1:port in a child process, returned once /healthz answers."""
    command = [sys.executable, "-m", "fracture_edge.edge_runtime", "-q", "serve", model, "--host", HOST,
               "--port", str(port), *extra]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read().strip()}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"server did not answer /healthz within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post(url: str, body: bytes, token: str | None = None, timeout: float = 60.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/octet-stream",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def run_load(port: int, image: bytes, clients: int = 4, requests: int = 200, pid: int | None = None,
             warmup: int = 20, time_limit_s: float = 300.0) -> LoadResult:
    """Post `image` clients x requests times (after `warmup` requests); stops early past time_limit_s."""
    url = f"http://{HOST}:{port}/v1/predict?overlay=0"
    for _ in range(warmup):
        post(url, image)
    before = rss_mb(pid) if pid else None
    deadline = time.monotonic() + time_limit_s
    latencies, probabilities, errors, unsent = [], set(), [], []
    lock = threading.Lock()

    def client(_: int) -> None:
        for sent in range(requests):
            if time.monotonic() > deadline:
                with lock:
                    unsent.append(requests - sent)
                return
            start = time.perf_counter()
            try:
                status, answer = post(url, image)
            except Exception as exc:  # a dropped connection is an error to count, not a crash
                status, answer = 0, {"error": f"{type(exc).__name__}: {exc}"}
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)
                if status == 200:
                    probabilities.add(answer["probability"])
                else:
                    errors.append(f"{status}: {answer.get('error')}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - start
    after = rss_mb(pid) if pid else None
    lat = np.array(latencies) if latencies else np.zeros(1)
    return LoadResult(clients, len(latencies), len(errors), errors[:5], sum(unsent), sorted(probabilities),
                      round(float(np.percentile(lat, 50)), 2), round(float(np.percentile(lat, 99)), 2),
                      round(seconds, 2), round(len(latencies) / seconds, 1),
                      None if before is None else round(before, 1), None if after is None else round(after, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="run folder or artifact (as for fracture-edge serve)")
    parser.add_argument("--image", required=True, help="the image every request posts")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--serve-args", default="", help="extra arguments for serve, e.g. '--format tflite-fp16'")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds before clients stop sending")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 10_000):
        parser.error("--clients must be 1..64 and --requests 1..10000")
    port = free_port()
    proc = start_server(args.model, port, tuple(args.serve_args.split()))
    try:
        result = run_load(port, Path(args.image).read_bytes(), args.clients, args.requests, proc.pid,
                          time_limit_s=args.time_limit)
    finally:
        stop_server(proc)
    json.dump(result.to_dict(), sys.stdout, indent=2)
    print()
    return 0 if result.errors == 0 and result.unsent == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
