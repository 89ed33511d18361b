"""Fetch a dataset's upstream files into the data directory, verified against the card's sha256.

The only module that touches the network. A file already present with the right checksum is
kept; a download goes to a temporary file beside its target and is renamed only when its sha256
matches, so an interrupted or corrupt download never leaves a half-written input behind. Every
target path is confined to the dataset's folder (:func:`bench.data.cards.confined`); mirrors must
be ``https`` (a test may allow ``http`` or ``file`` through ``schemes``); a download stops at the
card's ``[source].max_file_bytes`` (default :data:`MAX_FILE_BYTES`).
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench.data.cards import Card, confined
from bench.errors import BenchError, redact
from bench.files import atomic_write

_CHUNK = 1 << 20
MAX_FILE_BYTES = 4 * 2**30  # per file, when the card states no [source].max_file_bytes
SCHEMES = ("https",)


def sha256(path: Path) -> str:
    r"""Hex sha256 of a file, read in 1 MiB chunks; of a folder (a zarr store), the sha256 of the
    lines ``"<sha256 of file>  <path relative to the folder>\n"`` of every file below it, sorted
    by path, which is what ``(cd FOLDER && find . -type f | sed 's|^\./||' | LC_ALL=C sort |
    xargs -d '\n' sha256sum) | sha256sum`` prints."""
    path = Path(path)
    if path.is_dir():
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
        lines = "".join(f"{sha256(p)}  {rel}\n" for rel, p in files)
        return hashlib.sha256(lines.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(card: Card, root: Path) -> None:
    """Check every input file of ``card`` under ``root/<name>`` against its sha256."""
    folder = root / card.name
    for rel, expected in card.files.items():
        got = sha256(confined(folder, rel, f"[files].{rel!r}"))
        if got != expected:
            source = card.raw.get("source")
            mirrored = isinstance(source, dict) and bool(source.get("mirrors"))
            fix = (
                f"delete the file and run 'python -m bench fetch --datasets {card.name}'"
                if mirrored  # fetch can restore it
                else "the card names no mirror to fetch it again, so keep the file: if it is "
                "the right one, put its sha256 in the card's [files] (python -m bench split "
                "then rebuilds the split), else copy the original back"
            )
            raise BenchError(
                f"{folder / rel}: sha256 {got[:12]}... does not match the card's "
                f"{expected[:12]}...; {fix}"
            )


class _Mismatch(Exception):
    """A download whose sha256 is not the card's, or too large (its temporary file is
    discarded)."""


def _download(url: str, expected: str, cap: int) -> Callable[[Path], None]:
    """A writer for :func:`bench.files.atomic_write` that streams ``url`` into its path and
    raises :class:`_Mismatch` (so nothing is renamed into place) past ``cap`` bytes or unless
    the sha256 is ``expected``."""

    def write(path: Path) -> None:
        digest, size = hashlib.sha256(), 0
        with open(path, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise _Mismatch(f"larger than the card's cap of {cap} bytes")
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            raise _Mismatch(f"sha256 {digest.hexdigest()[:12]}... != {expected[:12]}...")

    return write


def _cap(card: Card) -> int:
    value = card.raw["source"].get("max_file_bytes", MAX_FILE_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BenchError(
            f"{card.folder / 'card.toml'}: [source].max_file_bytes = {value!r} is not a "
            "positive integer; fix the card"
        )
    return value


def _mirrors(card: Card, schemes: tuple[str, ...]) -> list[str]:
    mirrors = card.raw["source"].get("mirrors", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise BenchError(
            f"{card.folder / 'card.toml'}: [source].mirrors must be a list of URL templates; "
            "fix the card"
        )
    for mirror in mirrors:
        scheme = urlsplit(mirror).scheme.lower()
        if scheme not in schemes:
            raise BenchError(
                f"{card.folder / 'card.toml'}: mirror {redact(mirror)!r} is not "
                f"{' or '.join(schemes)}; only {', '.join(schemes)} mirrors are fetched"
            )
    return mirrors


def fetch(
    card: Card,
    root: Path,
    log: Callable[[str], None] = print,
    schemes: tuple[str, ...] = SCHEMES,
) -> int:
    """Make ``root/<name>`` hold every input file of ``card``; returns how many were downloaded.

    ``schemes``: the URL schemes a mirror may use (``https`` only; tests add ``http``/``file``).
    """
    folder = root / card.name
    mirrors = _mirrors(card, schemes)
    cap = _cap(card)
    commit = card.raw["source"].get("commit", "")
    fetched = 0
    targets = {rel: confined(folder, rel, f"[files].{rel!r}") for rel in card.files}
    for rel, expected in card.files.items():
        target = targets[rel]
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
                atomic_write(target, _download(url, expected, cap))
            except (OSError, ValueError) as err:
                errors.append(f"{redact(url)}: {redact(str(err))}")
                continue
            except _Mismatch as why:
                errors.append(f"{redact(url)}: {why}")
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
