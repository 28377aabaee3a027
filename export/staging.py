"""Where an export writes and verifies its artifacts (a staging folder), and the moves that publish them.

An export holds RUN/.export.lock (flock) from start to end: a second export into the same run fails at once
with one line, and every RUN/.export-staging-* folder found while holding the lock is a leftover of a killed
export, removed. Artifacts are written and verified in RUN/.export-staging-<random>/, never over the files
the run's bundle.json lists. `commit` then publishes them in an order where every file bundle.json lists
matches its recorded sha256 at every instant, so a crash at any point leaves no listed file with a wrong hash
and no rejected artifact at the top level:

1. bundle.json is rewritten without the records of the re-exported formats (their top-level files are
   about to change or go);
2. each passed artifact replaces its top-level file (and an old reject of it in rejected/); each rejected
   one goes to RUN/rejected/ (replacing an old reject), and the old top-level file of its format is removed;
3. the final bundle.json, listing the new hashes, is written by the caller's callback.

The window left: a crash between 1 and 3 (renames and one JSON write, milliseconds) leaves the re-exported
formats unlisted (old or new files, refused as unverified, never run as verified) until the next export.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ..edge_runtime.bundle import BundleError, load_bundle, save_bundle
from ..edge_runtime.errors import FractureEdgeError

try:
    import fcntl
except ImportError:  # not POSIX: no lock, and no sweep (a leftover folder could then be a live export's)
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".export.lock"
STAGING_PREFIX = ".export-staging-"
REJECTED_DIR = "rejected"

T = TypeVar("T")


class ExportBusyError(FractureEdgeError):
    """Another export is writing this run folder right now."""


@dataclass(frozen=True)
class Staging:
    """The run folder and this export's staging folder inside it (artifacts live there until `commit`)."""

    run_dir: Path
    folder: Path


@contextlib.contextmanager
def staging_folder(run_dir: str | os.PathLike) -> Iterator[Staging]:
    """Lock the run folder, remove leftover staging folders, yield a fresh one; it is removed at the end."""
    run_dir = Path(run_dir)
    lock_fd = lock_run(run_dir)
    try:
        remove_leftovers(run_dir)
        try:
            folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=run_dir))
        except OSError as exc:
            raise FractureEdgeError(f"{run_dir}: cannot create the export's staging folder "
                                    f"({exc.strerror or exc})") from None
        try:
            yield Staging(run_dir, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        unlock_run(lock_fd)


def lock_run(run_dir: Path) -> int | None:
    """An fd holding RUN/.export.lock exclusively (with this pid in it); ExportBusyError at once if taken."""
    if not run_dir.is_dir():
        raise FractureEdgeError(f"{run_dir}: no such run folder (train first)")
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise FractureEdgeError(f"{run_dir}: cannot write in the run folder ({exc.strerror or exc})") from None
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        raise ExportBusyError(f"{run_dir}: another fracture-edge export is writing this run folder right now"
                              f"{f' (pid {holder})' if holder else ''}; wait for it to finish") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd


def unlock_run(fd: int | None) -> None:
    """Empty the lock file (no pid of a finished export in it) and drop the lock; the file stays."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Remove the staging folders killed exports left (call with the run lock held: none can be live)."""
    if fcntl is None:
        return []
    removed = []
    for path in sorted(run_dir.glob(STAGING_PREFIX + "*")):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            log.info("%s: removed the staging folder of an interrupted export", path)
            removed.append(path)
    return removed


def commit(staging: Staging, rows: list, write_bundle: Callable[[list], T]) -> tuple[list, T]:
    """Publish the staged artifacts (the module docstring's steps 1-3); rows come back with their final file.

    `rows` have .format, .file (a name in the staging folder) and .ok; `write_bundle(final_rows)` writes the
    final bundle.json once every file is in place and returns what the caller needs (the report context).
    """
    unlist(staging.run_dir, {row.format for row in rows}, {row.file for row in rows})
    placed = [place(staging, row) for row in rows]
    return placed, write_bundle(placed)


def unlist(run_dir: Path, formats: set[str], files: set[str]) -> None:
    """Rewrite bundle.json without the records of `formats` or of `files` (their top-level files will change)."""
    try:
        bundle = load_bundle(run_dir)
    except BundleError as exc:    # nothing readable lists anything; the final write replaces it
        log.debug("not unlisting: %s", exc)
        return
    artifacts = bundle.get("artifacts") or {}
    kept = {name: record for name, record in artifacts.items()
            if name not in formats and not (isinstance(record, dict) and record.get("file") in files)}
    if len(kept) != len(artifacts):
        save_bundle(run_dir, {**bundle, "artifacts": kept})


def place(staging: Staging, row):
    """Move one staged artifact to its final place: the top level if it passed, rejected/ if not."""
    staged = staging.folder / row.file
    top, reject = staging.run_dir / row.file, staging.run_dir / REJECTED_DIR / row.file
    if not staged.is_file():      # the export failed before writing it: nothing to move
        return row
    try:
        if row.ok:
            os.replace(staged, top)
            reject.unlink(missing_ok=True)        # a passing artifact replaces an old reject of its file
            return row
        reject.parent.mkdir(exist_ok=True)
        os.replace(staged, reject)
        top.unlink(missing_ok=True)               # unlisted since step 1: a rejected format has no top-level file
    except OSError as exc:
        raise FractureEdgeError(f"{top if row.ok else reject}: cannot move the new {row.format} artifact into "
                                f"place ({exc.strerror or exc}); bundle.json lists none of the re-exported "
                                "formats now: export again") from None
    return replace(row, file=f"{REJECTED_DIR}/{row.file}")
