"""One way to write a file: atomically, with the records' permissions.

Every writer of the harness (records, side files, figures, split files, the split cache, the
leaderboard, AnnData exports, downloads) goes through :func:`atomic_write`: the content is
written to a temporary file in the target's folder, flushed to disk, given the permissions a
plain ``open(path, "w")`` would (``0o666`` less the umask; ``mkstemp``'s ``0o600`` would hide
results from other users) and renamed over the target, so a reader sees the old file or the new
one, never half of either, even after SIGKILL.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
