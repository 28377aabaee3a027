"""Find input files (files, folders, glob patterns) on a file system that may be hostile.

One set of rules for `predict` arguments and dataset folders:
- folders are listed with os.scandir; recursion descends into sub-folders but never through a symbolic
  link to a folder (a link back to an ancestor would never end), and a glob's `**` obeys the same rule
  (Python's glob.glob follows such links, so it is not used); a link to a file counts as that file;
- a folder that cannot be listed is reported as a Problem naming it, never skipped in silence and never
  a traceback; files that are not usable images (broken links, pipes, devices) are left to the decoder,
  which names them;
- files whose names start with '.' are skipped; wildcards and `**` also skip such folders, as glob does.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


def os_reason(exc: OSError) -> str:
    """'permission denied' from PermissionError(13, 'Permission denied'), else the message."""
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def path_mode(path: str) -> int | None:
    """st_mode of `path` (links followed), or None when it does not exist or cannot be looked at."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):  # ValueError: embedded NUL byte
        return None


def is_folder(path: str) -> bool:
    mode = path_mode(path)
    return mode is not None and stat.S_ISDIR(mode)


def lexists(path: str) -> bool:
    try:
        os.lstat(path)
    except (OSError, ValueError):
        return False
    return True


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in GLOB_CHARS) and not lexists(pattern)


def _entries(folder: str, problems: list[Problem]) -> list[os.DirEntry]:
    """The entries of `folder`, sorted by name; an unreadable folder adds a Problem and gives []."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        problems.append(Problem(folder, f"cannot read folder ({os_reason(exc)})"))
        return []


def _is_real_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _links_to_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink() and entry.is_dir()
    except OSError:
        return False


def walk(folder: str, recursive: bool, problems: list[Problem]) -> list[str]:
    """Every non-folder entry under `folder` (sub-folders only when recursive), unsorted. Hidden files are
    skipped; hidden folders are searched (as before). Iterative: a deep tree cannot exhaust the stack."""
    found, stack = [], [folder]
    while stack:
        current = stack.pop()
        for entry in _entries(current, problems):
            path = os.path.join(current, entry.name)
            if _is_real_dir(entry):
                if recursive:
                    stack.append(path)
            elif _links_to_dir(entry):
                if recursive:
                    log.info("%s: a symbolic link to a folder; not followed", path)
            elif not entry.name.startswith("."):
                found.append(path)
    return found


def child_folders(folder: str, problems: list[Problem]) -> list[str]:
    """The folders directly in `folder` (links to folders included: one level cannot loop), sorted by name."""
    return [os.path.join(folder, e.name) for e in _entries(folder, problems)
            if _is_real_dir(e) or _links_to_dir(e)]


def subfolders(folder: str, problems: list[Problem]) -> list[str]:
    """`folder` and every folder below it (not hidden, links not followed), for a glob's `**`."""
    found, stack = [], [folder]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(reversed([os.path.join(current, e.name) for e in _entries(current, problems)
                               if not e.name.startswith(".") and _is_real_dir(e)]))
    return found


def _checked_mode(path: str, problems: list[Problem]) -> int | None:
    """st_mode of `path`; None when it does not exist, plus a Problem when it exists but cannot be looked at."""
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    except OSError as exc:
        problems.append(Problem(path, f"cannot read ({os_reason(exc)})"))
        return None


def expand_glob(pattern: str, recursive: bool, problems: list[Problem]) -> list[str]:
    """Paths matching `pattern` (sorted); `**` spans folders only when recursive, without following links."""
    absolute = pattern.startswith(os.sep)
    parts = [p for p in pattern.split(os.sep) if p]
    literal = 0
    while literal < len(parts) - 1 and not any(c in parts[literal] for c in GLOB_CHARS):
        literal += 1
    root = os.path.join(os.sep if absolute else "", *parts[:literal]) or "."
    mode = _checked_mode(root, problems)
    current = [root] if mode is not None and stat.S_ISDIR(mode) else []
    segments = parts[literal:]
    for index, segment in enumerate(segments):
        current = _match_segment(current, segment, index == len(segments) - 1, recursive, problems)
    return sorted(dict.fromkeys(current))


def _match_segment(folders: list[str], segment: str, last: bool, recursive: bool,
                   problems: list[Problem]) -> list[str]:
    matched: list[str] = []
    if segment == "**" and recursive:
        return _below_each(folders, last, problems)
    if not any(c in segment for c in GLOB_CHARS):
        for folder in folders:
            path = os.path.join(folder, segment)
            mode = _checked_mode(path, problems) if not last else (0 if lexists(path) else None)
            if mode is not None and (last or stat.S_ISDIR(mode)):
                matched.append(path)
        return matched
    for folder in folders:
        for entry in _entries(folder, problems):
            if entry.name.startswith(".") and not segment.startswith("."):
                continue
            if fnmatch.fnmatchcase(entry.name, segment):
                path = os.path.join(folder, entry.name)
                if last or is_folder(path):
                    matched.append(path)
    return matched


def _below_each(folders: list[str], last: bool, problems: list[Problem]) -> list[str]:
    """What `**` matches under `folders`: every folder below each (and the files below, when last), each once.
    A folder already found below an earlier one is not searched again: its whole tree is in already, so
    `a/**/**/**` costs one walk of `a`, not one per folder per `**` (a tree 60 folders deep took 17 s with 4)."""
    matched: list[str] = []
    seen: set[str] = set()
    for folder in sorted(set(folders)):            # a folder sorts before the folders below it
        if folder in seen:
            continue
        below = subfolders(folder, problems)
        seen.update(below)
        matched += below[1:] + walk(folder, True, []) if last else below
    return matched


def find_images(arguments: list[str], recursive: bool, suffixes: tuple[str, ...]) -> tuple[list[str], list[Problem]]:
    """Expand files, folders and globs into image paths (input order, each once) + Problems (each once).

    An explicit file goes to the decoder whatever it is (the decoder says what is wrong with it); a glob
    match or a folder entry counts only with an image suffix; a glob match that is a link to a folder
    is not followed (the `**` rule)."""
    found: dict[str, None] = {}
    problems: list[Problem] = []
    for argument in arguments:
        globbed, before = is_glob(argument), len(problems)
        matches = expand_glob(argument, recursive, problems) if globbed else [argument]
        if globbed and not matches and len(problems) == before:
            problems.append(Problem(argument, "no file matches this pattern"))
        for match in matches:
            if not is_folder(match):
                if not globbed or os.path.splitext(match)[1].lower() in suffixes:
                    found.setdefault(str(Path(match)), None)
                continue
            if globbed and os.path.islink(match):
                log.info("%s: a symbolic link to a folder; not followed", match)
                continue
            before = len(problems)
            images = sorted(p for p in walk(match, recursive, problems) if os.path.splitext(p)[1].lower() in suffixes)
            if not images and len(problems) == before:
                problems.append(Problem(match, f"no images in this folder ({'/'.join(suffixes)})"
                                        + ("" if recursive else "; add --recursive for sub-folders")))
            found.update(dict.fromkeys(str(Path(p)) for p in images))
    return list(found), list(dict.fromkeys(problems))
