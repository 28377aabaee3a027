"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class FractureEdgeError(Exception):
    """A problem the user can fix: bad path, bad input file, missing extra. Printed as one line."""

    exit_code = 1


class MissingExtraError(FractureEdgeError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def missing_extra(module: str, extra: str, what: str) -> MissingExtraError:
    """Build the one-line error for a missing optional dependency."""
    return MissingExtraError(
        f"{what} needs the '{module}' package, which is not installed: "
        f"pip install \"fracture-edge[{extra}]\" (or pip install -e \".[{extra}]\" in a checkout)"
    )
