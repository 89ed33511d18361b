"""User-facing errors: one line naming the problem and the fix; the CLI exits with status 2."""

from __future__ import annotations

import re
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


_SECRET_KEYS = r"(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key|sig|signature)"
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s:@]*):[^/\s]*@")
_QUERY = re.compile(rf"(?P<key>[?&;]{_SECRET_KEYS}=)[^&;\s'\"]*", re.IGNORECASE)
_OPTION = re.compile(rf"(?P<key>--?[\w-]*{_SECRET_KEYS}[\w-]*[= ])\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with credentials replaced by ``***``: the password of ``scheme://user:pass@host``
    URIs, secret query parameters (``?token=...``) and ``--...password ...`` options. Applied to
    everything shown (errors, the store printed) or stored (MLflow parameters, the leaderboard's
    command)."""
    text = _USERINFO.sub(r"\g<scheme>\g<user>:***@", text)
    text = _QUERY.sub(r"\g<key>***", text)
    return _OPTION.sub(r"\g<key>***", text)
