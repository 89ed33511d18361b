"""Fetch a dataset's upstream files into the data directory, verified against the card's sha256.

The only module that touches the network. A file already present with the right checksum is
kept; a download goes to a temporary file beside its target and is renamed only when its sha256
matches, so an interrupted or corrupt download never leaves a half-written input behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.data.cards import Card
from bench.errors import BenchError

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


def _download(url: str, target: Path) -> tuple[str, str]:
    """Download ``url`` to a temporary file beside ``target``; return (temp path, sha256)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp, digest.hexdigest()


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
                tmp, got = _download(url, target)
            except OSError as err:
                errors.append(f"{url}: {err}")
                continue
            if got == expected:
                os.replace(tmp, target)
                fetched += 1
                log(f"fetched {rel}")
                break
            os.unlink(tmp)
            errors.append(f"{url}: sha256 {got[:12]}... != {expected[:12]}...")
        else:
            raise BenchError(
                f"could not fetch {card.name}/{rel} "
                f"({'; '.join(errors) or 'no mirror in the card'}); "
                f"download it by hand into {target.parent}"
            )
    return fetched
