"""Shared pytest fixtures (keep generic: several test modules use them)."""
from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os

import numpy as np
import pytest


def draw_synthetic_xray(seed: int, shape: tuple[int, int] = (160, 128)) -> np.ndarray:
    """A distinct, smooth, radiograph-like uint8 image: soft blobs and bright 'bone' bars on a dark field."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.full(shape, 20.0, dtype=np.float32)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 30)
        image += rng.uniform(30, 90) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    for _ in range(3):
        angle, offset, width = rng.uniform(0, np.pi), rng.uniform(-0.3, 0.3) * w, rng.uniform(3, 9)
        distance = np.abs((xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle) - offset)
        image += rng.uniform(60, 120) * (distance < width)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def synthetic_xray():
    """Factory: synthetic_xray(seed, shape=(160, 128)) -> distinct uint8 grayscale image."""
    return draw_synthetic_xray


IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _under(path, folders) -> bool:
    """Whether `path` lies strictly inside one of `folders` (string prefix on absolute paths)."""
    if isinstance(path, int):
        return False
    text = os.path.abspath(os.fsdecode(path))
    return any(text.startswith(folder + os.sep) for folder in folders)


@contextlib.contextmanager
def simulated_unreadable(*folders):
    """Make folders (and files) behave as chmod 000 does for a normal user, also when the tests run as root
    (CI): listing such a folder, or looking at or opening anything inside it, or opening such a file,
    raises PermissionError."""
    files = [os.path.abspath(f) for f in folders if not os.path.isdir(f)]  # a file: opening it is denied
    folders = [os.path.abspath(f) for f in folders if os.path.isdir(f)]
    real = {name: getattr(os, name) for name in ("scandir", "listdir", "stat", "lstat", "access")}
    real_open = builtins.open

    def denied(path):
        return PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))

    def listing(name):
        def call(path=".", *args, **kwargs):
            if not isinstance(path, int) and os.path.abspath(os.fsdecode(path)) in folders or _under(path, folders):
                raise denied(path)
            return real[name](path, *args, **kwargs)
        return call

    def looking(name):
        def call(path, *args, **kwargs):
            if _under(path, folders):
                raise denied(path)
            return real[name](path, *args, **kwargs)
        return call

    def is_denied_file(path) -> bool:
        return not isinstance(path, int) and os.path.abspath(os.fsdecode(path)) in files

    def access(path, mode, *args, **kwargs):
        if _under(path, folders) or is_denied_file(path):
            return False
        return real["access"](path, mode, *args, **kwargs)

    def opening(file, *args, **kwargs):
        if _under(file, folders) or is_denied_file(file):
            raise denied(file)
        return real_open(file, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    for name in ("scandir", "listdir"):
        patch.setattr(os, name, listing(name))
    for name in ("stat", "lstat"):
        patch.setattr(os, name, looking(name))
    patch.setattr(os, "access", access)
    patch.setattr(builtins, "open", opening)
    patch.setattr(io, "open", opening)
    try:
        yield
    finally:
        patch.undo()


@contextlib.contextmanager
def chmod_unreadable(*folders):
    """The real thing: chmod 000 (only meaningful for a non-root user), restored afterwards."""
    modes = {f: os.stat(f).st_mode for f in folders}
    try:
        for folder in folders:
            os.chmod(folder, 0)
        yield
    finally:
        for folder, mode in modes.items():
            os.chmod(folder, mode)


@pytest.fixture(params=["chmod", "simulated"])
def unreadable(request):
    """unreadable(*folders): a context manager making folders unreadable: really (chmod 000, skipped as root,
    which reads them anyway) or simulated (PermissionError from os/open, which works as root too)."""
    if request.param == "chmod" and IS_ROOT:
        pytest.skip("running as root: chmod 000 does not stop root from reading; the simulated variant runs")
    return chmod_unreadable if request.param == "chmod" else simulated_unreadable


def _built_once(tmp_path_factory, name: str, build):
    """build(folder) run once per test session, also under pytest-xdist (`make test` runs two workers): the
    first worker to need it builds it under a file lock in the session's shared temp folder; the others wait
    and read its pickled result."""
    import fcntl
    import pickle
    import shutil

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base   # xdist: .../pytest-N/popen-gwK
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / f"{name}.pickle"
        if done.is_file():
            return pickle.loads(done.read_bytes())
        folder = shared / name
        if folder.exists():          # a worker that died while building: start again
            shutil.rmtree(folder)
        folder.mkdir()
        result = build(folder)
        tmp = done.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(result))
        os.replace(tmp, done)
        return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """export_fixture.TinyRun: the tiny 64-px DenseNet121 run, trained once per session, never exported into.
    Tests that export with their own options export a copy of it (export_fixture.copy_run)."""
    pytest.importorskip("tensorflow")
    from export_fixture import build_tiny_run

    return _built_once(tmp_path_factory, "tiny-run", build_tiny_run)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_run):
    """export_fixture.TinyExport: tiny_run exported once in every default format, read by the export tests
    (test_export, test_heatmaps_export, test_export_staging, test_equalize). Never modify its run folder.

    Under xdist every test that uses it starts on one worker (see pytest_collection_modifyitems): that worker
    builds it while the other runs the rest, instead of waiting for it."""
    from export_fixture import build_tiny_export

    return _built_once(tmp_path_factory, "tiny-export", lambda folder: build_tiny_export(folder, tiny_run))


def pytest_collection_modifyitems(config, items):
    """Order the tests so that two xdist workers share the two big jobs instead of one waiting for the other.

    Under pytest-xdist's default `--dist load`, each worker starts with a chunk of consecutive tests (a quarter
    of its share, about 100 here). The tests that read the tiny export come first, so they all land on the
    first worker, which trains the tiny run and builds the export; the tests that export their own copy of the
    tiny run close the second worker's chunk, so that they find the run trained (`--dist loadgroup` would say this directly, but does not group on pytest 9.2:
    pytest-dev/pytest-xdist#1386). Without xdist they come last. Within each part the order is pytest's, so a
    module's fixtures are still set up once."""
    def uses(item, name: str) -> bool:
        return name in getattr(item, "fixturenames", ())

    reads_export = [item for item in items if uses(item, "tiny_export")]
    re_exports = [item for item in items if uses(item, "tiny_run") and not uses(item, "tiny_export")]
    picked = {id(item) for item in reads_export + re_exports}
    head = reads_export + [item for item in items if id(item) not in picked]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    chunk = max(len(items) // workers // 4, 2)          # xdist's first chunk per worker
    # the re-exports close the second chunk: its quick tests run while the first worker trains the tiny run
    cut = 2 * chunk - len(re_exports) if workers > 1 and 2 * chunk - len(re_exports) >= chunk else len(head)
    items[:] = head[:cut] + re_exports + head[cut:]
