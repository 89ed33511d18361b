"""User-facing errors: one line naming the problem and the fix; the CLI exits with status 2."""

from __future__ import annotations

import tempfile
from pathlib import Path


class BenchError(Exception):
    """Bad input (argument, config value or data file). ``str(err)`` is the one-line message."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, else its type name (for one-line
    errors wrapping third-party exceptions whose messages span many lines)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def one_line(err: BaseException) -> str:
    """``"<ExceptionType>: <first line of its message>"``, how a failed cell, a dead worker or a
    third-party failure is reported in records, MLflow tags and the leaderboard."""
    return f"{type(err).__name__}: {first_line(err)}"


def writable_dir(path: Path, what: str) -> Path:
    """``path`` created if missing and checked writable (resolved); else a :class:`BenchError`
    naming ``what`` (e.g. "results dir") and the fix."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise BenchError(
            f"{what} {path} is not writable ({err.strerror}); pass a writable folder"
        ) from None
    return path.resolve()
