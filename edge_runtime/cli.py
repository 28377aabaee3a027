"""The one CLI, `fracture-edge`. Imports cheaply: each stage registers its subcommands from a light
module, and heavy libraries (TensorFlow, LiteRT, ONNX Runtime) are imported inside the handlers."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .errors import FractureEdgeError

log = logging.getLogger("fracture_edge")

# Each module defines register(subparsers); its parsers set_defaults(handler=callable(args) -> int).
COMMAND_MODULES = (
    "fracture_edge.train.data_cli",       # data check | data split
    "fracture_edge.train.cli",            # train | eval | demo
    "fracture_edge.export.cli",           # export
    "fracture_edge.edge_runtime.predict_cli",  # predict | info
    "fracture_edge.edge_runtime.serve.cli",    # serve
    "fracture_edge.edge_runtime.adapt.cli",    # adapt
    "fracture_edge.edge_runtime.site_cli",     # check-site
    "fracture_edge.benchmarks.cli",       # bench
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; here 2 means 'some files failed', so usage errors exit 1."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fracture-edge",
        description="Train, export, verify, run and benchmark a bone-fracture X-ray classifier for edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"fracture-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # TensorFlow/absl are chatty at INFO; keep our own INFO lines readable.
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL", "tf2onnx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every problem a user can cause ends as one 'fracture-edge: error: ...' line and
    exit code 1 (2: some files failed, 3: a failed gate or leak); a traceback is a bug to report."""
    if sys.stderr is None:  # started with stderr closed (`2>&-`): messages go nowhere, the exit code stays
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
    if sys.stdout is None:  # started with stdout closed (`>&-`): the results would be lost
        print("fracture-edge: error: standard output is closed", file=sys.stderr)
        return 1
    _tolerate_odd_names(sys.stdout)
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 1
    try:
        return int(handler(args) or 0)
    except BrokenPipeError:  # the reader went away (`predict ... | head -1`): stop quietly
        _silence_stdout()
        return 1
    except FractureEdgeError as exc:
        print(f"fracture-edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:  # bad option values, raised with the valid choices listed
        print(f"fracture-edge: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the file system refused something no handler expected: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"fracture-edge: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fracture-edge: interrupted", file=sys.stderr)
        return 130


def _tolerate_odd_names(stream) -> None:
    """File names that are not valid UTF-8 reach Python as surrogates; print them escaped, not crash."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="backslashreplace")
        except (ValueError, OSError):
            pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (tests capture it): nothing will be flushed to a pipe


if __name__ == "__main__":
    sys.exit(main())
