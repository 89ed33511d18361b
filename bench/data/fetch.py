"""Fetch a dataset's upstream files into the data directory, verified against the card's sha256.

The only module that touches the network. A file already present with the right checksum is
kept; a download goes to a temporary file beside its target and is renamed only when its sha256
matches, so an interrupted or corrupt download never leaves a half-written input behind.
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.data.cards import Card
from bench.errors import BenchError
from bench.files import atomic_write

_CHUNK = 1 << 20


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(card: Card, root: Path) -> None:
    """Check every input file of ``card`` under ``root/<name>`` against its sha256."""
    folder = root / card.name
    for rel, expected in card.files.items():
        got = sha256(folder / rel)
        if got != expected:
            raise BenchError(
                f"{folder / rel}: sha256 {got[:12]}... does not match the card's "
                f"{expected[:12]}...; "
                f"delete the file and run 'python -m bench fetch --datasets {card.name}'"
            )


class _Mismatch(Exception):
    """A download whose sha256 is not the card's (its temporary file is discarded)."""


def _download(url: str, expected: str) -> Callable[[Path], None]:
    """A writer for :func:`bench.files.atomic_write` that streams ``url`` into its path and
    raises :class:`_Mismatch` (so nothing is renamed into place) unless the sha256 is
    ``expected``."""

    def write(path: Path) -> None:
        digest = hashlib.sha256()
        with open(path, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            raise _Mismatch(digest.hexdigest())

    return write


def fetch(card: Card, root: Path, log: Callable[[str], None] = print) -> int:
    """Make ``root/<name>`` hold every input file of ``card``; returns how many were downloaded."""
    folder = root / card.name
    mirrors = list(card.raw["source"].get("mirrors", []))
    commit = card.raw["source"].get("commit", "")
    fetched = 0
    for rel, expected in card.files.items():
        target = folder / rel
        if target.is_file() and sha256(target) == expected:
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BenchError(
                f"cannot create {target.parent} ({err.strerror}); choose a writable --data-dir"
            ) from None
        errors = []
        for mirror in mirrors:
            url = mirror.format(commit=commit, path=rel)
            try:
                atomic_write(target, _download(url, expected))
            except OSError as err:
                errors.append(f"{url}: {err}")
                continue
            except _Mismatch as got:
                errors.append(f"{url}: sha256 {str(got)[:12]}... != {expected[:12]}...")
                continue
            fetched += 1
            log(f"fetched {rel}")
            break
        else:
            raise BenchError(
                f"could not fetch {card.name}/{rel} "
                f"({'; '.join(errors) or 'no mirror in the card'}); "
                f"download it by hand into {target.parent}"
            )
    return fetched
