"""One way to write a file: atomically, with the records' permissions.

Every writer of the harness (records, side files, figures, split files, the split cache, the
leaderboard, AnnData exports, downloads) goes through :func:`atomic_write`: the content is
written to a temporary file in the target's folder, flushed to disk, given the permissions a
plain ``open(path, "w")`` would (``0o666`` less the umask; ``mkstemp``'s ``0o600`` would hide
results from other users) and renamed over the target, so a reader sees the old file or the new
one, never half of either, even after SIGKILL.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.errors import DiskFull

__all__ = [
    "FileLock",
    "atomic_write",
    "atomic_write_text",
    "disk_full",
    "free_bytes",
    "stop_when_full",
]


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary name ends with ``path``'s suffix (``.npz``, ``.png``, ...) so writers that go by
    the extension write the same format. If ``write`` raises, the temporary file is removed and
    ``path`` is untouched. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    tmp = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            err.filename = str(path)  # the file that did not fit, not its temporary name
        raise
    return path


def atomic_write_dir(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a fresh path inside a temporary folder beside ``path`` (a folder
    such as a zarr store), then move it to ``path``; an existing ``path`` is replaced only once
    the new one is whole. If ``write`` raises, nothing is left and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(scratch / path.name)
        old = scratch / "old"
        if path.exists():
            os.replace(path, old)
        os.replace(scratch / path.name, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


class FileLock:
    """An exclusive lock held through a lock file (``flock``): released when this process exits
    however it exits, SIGKILL included, so a stale file left by a killed holder never blocks.

    The file holds the holder's host and pid (for messages). :meth:`release` removes it; an
    acquirer that finds its locked file was removed meanwhile tries again on the new one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, blocking: bool = False) -> bool:
        """Take the lock; with ``blocking`` False return False at once when another holds it."""
        import fcntl
        import socket

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
                self._fd = fd
                return True
            os.close(fd)  # released and removed while we waited: lock the current file

    def holder(self) -> str:
        """``"host pid"`` of the holder as written in the file ('' when unknown)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def check_writable(path: Path, what: str, kind: str = "dir") -> Path:
    """Check, creating nothing, that ``path`` can be written as a ``kind`` (``"dir"`` or
    ``"file"``): an existing one must be of that kind and writable; a missing one needs its
    nearest existing ancestor to be a writable folder. Returns ``path`` made absolute; else a
    :class:`bench.errors.BenchError` naming ``what`` and the fix."""
    from bench.errors import BenchError

    path = Path(os.path.abspath(Path(path).expanduser()))
    fix = f"pass another {what}"
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise BenchError(f"{what} {path} is not writable (a file, not a folder); {fix}")
        if kind == "file" and path.is_dir():
            raise BenchError(f"{what} {path} is not writable (a folder, not a file); {fix}")
        mode = os.W_OK | (os.X_OK if kind == "dir" else 0)
        if not os.access(path, mode):
            why = " (on a read-only file system)" if _read_only(path) else ""
            raise BenchError(f"{what} {path} is not writable{why}; {fix}")
        if kind == "dir":
            return path
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BenchError(f"{what} {path} is not writable ({parent} is a file); {fix}")
    if not os.access(parent, os.W_OK | os.X_OK):
        why = "on a read-only file system" if _read_only(parent) else "is read-only"
        raise BenchError(f"{what} {path} is not writable ({parent} {why}); {fix}")
    return path


def _read_only(path: Path) -> bool:
    """Whether ``path`` lies on a file system mounted read-only (which stops root too, whom
    permission bits do not)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def free_bytes(path: Path) -> int:
    """Bytes free to this user on the file system that holds ``path`` (or would: its nearest
    existing folder)."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def disk_full(err: BaseException | None, where: Path, needed: int) -> DiskFull:
    """The one-line :class:`bench.errors.DiskFull` for a write that ran out of space: the file
    it names (``err.filename``, else ``where``), the space free there and ``needed`` bytes."""
    from bench.errors import DiskFull, size_text

    name = getattr(err, "filename", None)
    path = Path(name) if isinstance(name, str) and name else Path(where)
    try:
        free = size_text(free_bytes(path))
    except OSError:
        free = "unknown"
    return DiskFull(
        f"disk full writing {path}: {free} free, {size_text(needed)} needed; the grid stopped "
        "and the cells finished before it are kept: free space (or pass another --results-dir) "
        "and rerun the same command to resume"
    )


@contextlib.contextmanager
def stop_when_full(where: Path, needed: int = 0) -> Iterator[None]:
    """Turn a full disk met in the block (:func:`bench.errors.disk_error`: ``ENOSPC``,
    ``EDQUOT``, SQLite's "database or disk is full") into :func:`disk_full`'s one line, naming
    the file (else ``where``) and ``needed`` bytes; other errors pass unchanged."""
    from bench.errors import DiskFull, disk_error

    try:
        yield
    except DiskFull:
        raise
    except Exception as err:
        found = disk_error(err)
        if found is None:
            raise
        raise disk_full(found, where, needed) from None


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back in the main thread until the block ends, then deliver the
    first one received to its usual handler: a record, its side files and its MLflow run are
    written whole or not at all, and no library (MLflow's database session, a zip writer) is
    interrupted half-way. Elsewhere than in the main thread the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _frame: held.append(signum)) for s in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
        if held:
            signal.raise_signal(held[0])
