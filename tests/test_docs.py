"""The docs say only what the code does (issue 23): every command in a ```bash block of the README, docs/*.md
and benchmarks/README.md parses with the real CLI parser, every `make` target named there exists, and every
relative link leads to a file (and, with a #fragment into a Markdown file, to one of its headings).

Fast and TensorFlow-free: the CLI parser imports only argparse and the light command modules.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest

from fracture_edge.edge_runtime.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
CLI_MODULE = "fracture_edge.edge_runtime"   # `python -m fracture_edge.edge_runtime ...` is the same CLI
# Files a document may point at before they exist, and who makes them; checked as usual once they exist.
PENDING: dict[str, str] = {}   # links allowed to be missing for now: path -> why
DUMMY = "1"          # stands for $VARS and <placeholders>: a valid path, int, float or name alike
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "2>", "(", ")"}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------- commands in bash blocks

def bash_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, logical line) of every ```bash block, continuation lines (ending in a backslash) joined."""
    out, in_bash, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = line.strip()
        if fence.startswith("```"):
            in_bash = not in_bash and fence[3:].strip() in ("bash", "sh", "shell", "console")
            continue
        if not in_bash:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def words_of(line: str) -> list[str]:
    """The words of the first simple command on a shell line, $VARS and <placeholders> replaced by DUMMY."""
    line = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", DUMMY, line)     # $D, ${W}; $(...) is left alone
    line = re.sub(r"<[A-Za-z][^<>]*>", DUMMY, line)                     # <this repository>, <path>
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:                       # '#' starts a comment, as in the shell
        if word in SHELL_OPERATORS or set(word) <= set("|&;<>()"):
            break
        words.append(word)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):   # FRACTURE_EDGE_TOKEN=... cmd
        words.pop(0)
    return words


def command_of(words: list[str]) -> tuple[str, list[str]] | None:
    """('fracture-edge' | a module | 'make', its arguments), or None for a line this test does not check."""
    if not words:
        return None
    program = Path(words[0]).name
    if program == "fracture-edge":
        return "fracture-edge", words[1:]
    if program.startswith("python") and len(words) >= 3 and words[1] == "-m" and words[2].startswith("fracture_edge"):
        return ("fracture-edge" if words[2] == CLI_MODULE else words[2]), words[3:]
    if program == "make":
        return "make", words[1:]
    return None


def collect_commands() -> list[tuple[str, str, str, list[str]]]:
    found = []
    for path in DOC_FILES:
        for number, line in bash_lines(path):
            command = command_of(words_of(line))
            if command is not None:
                found.append((f"{rel(path)}:{number}", line.strip(), *command))
    return found


COMMANDS = collect_commands()


class _Parsed(Exception):
    """Raised instead of running a module's main() once its parser has accepted the arguments."""


def parse_error(parse) -> str | None:
    """None when parse() accepts its arguments (or prints --help); else argparse's error line."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parse()
        except _Parsed:
            return None
        except SystemExit as exc:
            if exc.code in (0, None):
                return None
            lines = err.getvalue().strip().splitlines()
            return lines[-1] if lines else f"exit {exc.code}"
    return None


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def cli_parser() -> argparse.ArgumentParser:
    return build_parser()   # as edge_runtime/cli.py's main() builds it


@pytest.mark.parametrize("where, line, program, argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command_parses(where, line, program, argv, cli_parser, monkeypatch):
    if program == "make":
        missing = [t for t in argv if not t.startswith("-") and "=" not in t and t not in makefile_targets()]
        assert not missing, f"{where}: `{line}`: no Makefile target {missing}"
        return
    if program == "fracture-edge":
        def parse():
            args = cli_parser.parse_args(argv)
            if getattr(args, "handler", None) is None:
                raise AssertionError("names no subcommand")
    else:   # another module's main(): stop it right after its parser accepted the arguments
        try:
            module = importlib.import_module(program)
        except ImportError as exc:
            pytest.fail(f"{where}: `{line}`: module {program} cannot be imported ({exc})")
        assert hasattr(module, "main"), f"{where}: `{line}`: {program} has no main()"
        real = argparse.ArgumentParser.parse_args

        def stop_after_parsing(self, args=None, namespace=None):
            real(self, args, namespace)
            raise _Parsed

        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop_after_parsing)

        def parse():
            module.main(argv)
            raise AssertionError(f"{program}.main() returned without parsing its arguments")
    error = parse_error(parse)
    assert error is None, f"{where}: `{line}` does not parse: {error}"


def test_the_readme_shows_every_command():
    """Guards the collector itself: the README's blocks must reach every subcommand and both make targets."""
    readme = [c for c in COMMANDS if c[0].startswith("README.md:")]
    subcommands = {argv[0] for _, _, program, argv in readme if program == "fracture-edge" and argv}
    assert {"data", "train", "eval", "export", "predict", "info", "bench", "serve", "adapt"} <= subcommands
    assert {"demo", "test"} <= {argv[0] for _, _, program, argv in readme if program == "make" and argv}
    assert any(line.startswith("~/fe/bin/fracture-edge") for _, line, _, _ in readme)


def test_the_parser_check_catches_a_wrong_flag(cli_parser):
    """The check fails on what it is meant to catch: an old flag, a missing required option."""
    old = words_of("fracture-edge export runs/x --gate-int8-min-agreement 0   # removed on 2026-12-02")
    assert parse_error(lambda: cli_parser.parse_args(command_of(old)[1])) is not None
    assert parse_error(lambda: cli_parser.parse_args(["bench", "runs/x"])) is not None   # --data is required
    assert parse_error(lambda: cli_parser.parse_args(command_of(words_of("fracture-edge bench $R --data <dir>"))[1])) is None


# ---------------------------------------------------------------- relative links

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) outside fenced code blocks, with inline code spans removed."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced and not line.startswith("    "):
            out.append((number, re.sub(r"`+[^`]*`+", "", line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not '-'), spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def collect_links() -> list[tuple[str, Path, str]]:
    found = []
    for path in DOC_FILES:
        for number, text in prose_lines(path):
            targets = [m.group(1) for m in LINK.finditer(text)]
            reference = REFERENCE.match(text)
            if reference:
                targets.append(reference.group(1))
            for target in targets:
                if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):   # https:, mailto: ...
                    continue
                found.append((f"{rel(path)}:{number}", path, target))
    return found


LINKS = collect_links()


@pytest.mark.parametrize("where, source, target", LINKS, ids=[f"{w} {t}" for w, _, t in LINKS])
def test_relative_link_resolves(where, source, target):
    file_part, _, fragment = target.partition("#")
    resolved = (source.parent / file_part).resolve() if file_part else source
    try:
        inside = rel(resolved)
    except ValueError:
        pytest.fail(f"{where}: link {target!r} leads outside the repository")
    if not resolved.exists():
        if inside in PENDING:
            pytest.skip(f"{where}: {inside} does not exist yet ({PENDING[inside]})")
        pytest.fail(f"{where}: link {target!r}: no such file {inside}")
    if fragment and resolved.suffix == ".md":
        assert fragment in anchors(resolved), (
            f"{where}: link {target!r}: {inside} has no heading with the anchor #{fragment}")


def test_links_were_found():
    assert sum(1 for w, _, _ in LINKS if w.startswith("README.md:")) >= 10
    assert {rel(p) for _, p, _ in LINKS} >= {"README.md", "docs/fidelity.md"}
