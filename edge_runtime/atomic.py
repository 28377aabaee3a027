"""Atomic writes: temp file in the same folder + os.replace, so a crash never leaves a half-written file.

A write error names the file the caller asked for (never the temporary one), so the CLI's one error line
reads `fracture-edge: error: <path>: No space left on device`. A new output folder (adapt --out) is claimed
at the start and built out of sight (claimed_folder), so it is never half-made.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import FractureEdgeError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    For writers that insist on a path (model.save, converters). The temporary name keeps the
    final suffix (or `suffix`) because some writers dispatch on it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)   # an error here names the folder it could not make
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    except OSError as exc:                           # it names the temporary file: name `path` instead
        raise naming(exc, path, exc.filename) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
    except OSError as exc:  # a full disk, a quota: name the file the user asked for, not the temporary one
        raise naming(exc, path, tmp_path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


def naming(exc: OSError, path: str | os.PathLike, temporary=None) -> OSError:
    """The same error (same errno, so the same OSError subclass) naming `path`, when it named no file or the
    `temporary` one: the one error line (`fracture-edge: error: <path>: <reason>`) then names the file being
    written. An error about another file (one the writer read, a folder it could not make) is left as it is."""
    named = os.fspath(exc.filename) if exc.filename is not None else None
    if isinstance(exc, BrokenPipeError) or (named is not None and named != (os.fspath(temporary) if temporary else None)):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: object) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: object) -> object:
    """Make numpy scalars/arrays and paths JSON-serialisable."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# ---- a new output folder, claimed at the start and filled out of sight -------------------------------------

try:
    import fcntl
except ImportError:  # not POSIX: a claim is then the claim folder's existence alone
    fcntl = None

LOCK_NAME = ".lock"
CLAIM_ATTEMPTS = 3


class FolderClaimError(FractureEdgeError):
    """The output folder is taken: it is not empty, or another process is filling it right now."""


class ClaimedFolder:
    """`out` claimed by this process: it is built at `build` (in a hidden folder beside `out`) and renamed onto
    `out` when complete, so `out` is never half-made. The claim is an exclusive lock (flock) on a file in the
    hidden folder: the kernel drops it when the process dies, even by kill -9, and the next claim then removes
    what was left behind."""

    def __init__(self, out: Path, holder: Path, lock_fd: int | None):
        self.out, self.holder = out, holder          # holder: .<name>.partial beside out (lock file + build)
        self._fd = lock_fd

    @property
    def build(self) -> Path:
        return self.holder / self.out.name

    def finish(self) -> Path:
        """Rename the build folder onto `out` (which must still be absent or empty), then drop the claim."""
        try:
            os.rename(self.build, self.out)
        except OSError as exc:
            if out_taken(self.out):
                raise FolderClaimError(f"{self.out}: was created by something else while this run was being "
                                       "written; nothing was changed there, choose a new folder") from None
            raise naming(exc, self.out, exc.filename) from None
        self.release()
        return self.out

    def release(self) -> None:
        """Remove the hidden folder (with a build that did not finish) and drop the lock; safe to call twice."""
        shutil.rmtree(self.holder, ignore_errors=True)
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def out_taken(out: Path) -> bool:
    """`out` exists (a broken link too) and is not an empty folder."""
    if not os.path.lexists(out):
        return False
    try:
        return not out.is_dir() or any(out.iterdir())
    except FileNotFoundError:
        return False
    except OSError:                 # an unreadable folder: not ours to fill
        return True


@contextlib.contextmanager
def claimed_folder(out: str | os.PathLike, command: str = "fracture-edge") -> Iterator[Path]:
    """Claim the new folder `out` now (FolderClaimError at once when it is not empty or another `command` is
    filling it), yield the folder to build in, rename it onto `out` if the block succeeds; on any error, or
    if the block fails, nothing is left behind (and what a killed run left is removed by the next claim)."""
    claim = claim_folder(Path(out), command)
    try:
        yield claim.build
        claim.finish()
    except OSError as exc:          # a full disk while building: name the file as it would be in `out`
        raise _in_out(exc, claim) from None
    finally:
        claim.release()


def _in_out(exc: OSError, claim: ClaimedFolder) -> OSError:
    """exc, its file name moved from the build folder to `out` (where the user will look for it)."""
    named, build = os.fspath(exc.filename) if exc.filename is not None else "", os.fspath(claim.build)
    if isinstance(exc, BrokenPipeError) or not (named == build or named.startswith(build + os.sep)):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(claim.out) + named[len(build):])


def claim_folder(out: Path, command: str = "fracture-edge") -> ClaimedFolder:
    if out_taken(out):
        raise FolderClaimError(f"{out}: exists and is not an empty folder; choose a new folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _sweep(out)
        claim = _claim(out, command)
    except OSError as exc:
        raise FractureEdgeError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
    if out_taken(out):                    # finished by another process just before this claim
        claim.release()
        raise FolderClaimError(f"{out}: exists and is not an empty folder; choose a new folder")
    return claim


def _claim(out: Path, command: str) -> ClaimedFolder:
    """Make a locked folder and rename it into place: the rename is the atomic step two processes race for."""
    holder = out.parent / f".{out.name}.partial"
    for _ in range(CLAIM_ATTEMPTS):
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.claim-", dir=out.parent))
        fd = _locked(staging / LOCK_NAME, create=True)
        (staging / out.name).mkdir()
        try:
            os.rename(staging, holder)
            return ClaimedFolder(out, holder, fd)
        except OSError:                    # the holder exists: a live claim, or one left by a killed run
            ClaimedFolder(out, staging, fd).release()
        if not _remove_if_stale(holder):
            raise FolderClaimError(f"{out}: another {command} is writing this folder right now (its work in "
                                   f"progress: {holder}); wait for it to finish, or choose another folder")
    raise FolderClaimError(f"{out}: could not claim the folder ({holder} keeps coming back); try again")


def _locked(path: Path, create: bool = False) -> int | None:
    """An fd holding an exclusive lock on `path`; None when another process holds it (or, without fcntl, when
    the file was not created here). FileNotFoundError when it does not exist and create is False."""
    fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
    if fcntl is None:
        return fd if create else _closed(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return _closed(fd)
    return fd


def _closed(fd: int) -> None:
    os.close(fd)
    return None


def _remove_if_stale(holder: Path) -> bool:
    """Remove `holder` if no live process holds its lock (moved aside first: removal is not atomic)."""
    try:
        fd = _locked(holder / LOCK_NAME)
    except FileNotFoundError:
        fd = -1                            # gone already, or a folder without a lock: nobody's claim
    except OSError:
        return False
    if fd is None:
        return False
    aside = Path(tempfile.mkdtemp(prefix=f"{holder.name[:-len('.partial')]}.stale-", dir=holder.parent))
    try:
        os.rename(holder, aside / "old")
    except FileNotFoundError:
        pass
    shutil.rmtree(aside, ignore_errors=True)
    if fd >= 0:
        os.close(fd)
    return True


def _sweep(out: Path) -> None:
    """Remove what killed claims of `out` left beside it: staging folders nobody holds, and stale leftovers."""
    for prefix in (f".{out.name}.claim-", f".{out.name}.stale-"):
        for path in out.parent.glob(glob.escape(prefix) + "*"):
            try:
                fd = _locked(path / LOCK_NAME)
            except FileNotFoundError:
                fd = -1 if prefix.endswith("stale-") else None   # a staging folder before its lock: leave it
            except OSError:
                continue
            if fd is not None:
                shutil.rmtree(path, ignore_errors=True)
                if fd >= 0:
                    os.close(fd)
