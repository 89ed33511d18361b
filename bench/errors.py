"""User-facing errors: one line naming the problem and the fix; the CLI exits with status 2."""

from __future__ import annotations

import errno
import re
import tempfile
from pathlib import Path


class BenchError(Exception):
    """Bad input (argument, config value or data file). ``str(err)`` is the one-line message."""


class DiskFull(BenchError):
    """A write of the grid ran out of space (``ENOSPC``, ``EDQUOT``, SQLite's "database or disk
    is full"): the grid stops at once with one line naming the path, the space free there and
    the space needed (exit status 2); what was written before stays (atomic writes)."""


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "database or disk is full")


def disk_error(err: BaseException) -> BaseException | None:
    """The exception of ``err``'s chain (``err``, its cause, its context) that says the disk is
    full: an ``OSError`` with errno ``ENOSPC`` or ``EDQUOT``, or one whose message says so (SQLite
    through SQLAlchemy and MLflow); None when none does."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return current
        if is_disk_full_text(str(current)):
            return current
        current = current.__cause__ or current.__context__
    return None


def is_disk_full_text(text: str) -> bool:
    """Whether a one-line error (a failed cell's ``record.error``) says the disk was full."""
    low = text.lower()
    return any(t in low for t in _FULL_TEXTS) or "[errno 28]" in low or "[errno 122]" in low


def size_text(n: float) -> str:
    """A byte count for people: ``"6.2 GiB"`` from one GiB up, else ``"300 MiB"`` (or KiB)."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{max(n, 0) / 2**10:.0f} KiB"


class Interrupted(BaseException):
    """SIGTERM (or another stop signal) received: like ``KeyboardInterrupt`` for SIGINT, it
    unwinds past ordinary ``except Exception`` handlers. ``signum`` is the signal's number; the
    CLI exits with ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


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
