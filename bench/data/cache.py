"""A cache of built splits, keyed by the split's fingerprint.

Building a split reads every input file (counts tables of ~15k genes, transcripts, whole-slide
images), verifies their sha256 and pools them; the result is a few MB of arrays. The first build
is stored as ``<cache-dir>/<dataset>-k<k>-<fingerprint>.npz`` (written to a temporary file and
renamed, loaded with ``allow_pickle=False``), together with the sha256 of each input file and a
hash of the split-building code. Every load first verifies each input's sha256 against the card
(:func:`bench.data.fetch.verify`: a file changed in place, even with its size and mtime kept, is
refused, never served from the cache), then uses the cache when the fingerprint (which covers the
inputs' sha256), the checksums and the code hash still match; a damaged cache file is rebuilt.
The cache folder is ``$STSR_CACHE_DIR``, else ``~/.cache/stsr-bench/splits``; an unwritable cache
is skipped with a note, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from bench.data.cards import Card, require_files
from bench.data.fetch import verify
from bench.data.splits import Split, SplitSpec, Truth, build, load_spec
from bench.files import atomic_write
from methods.contract import Sample

CACHE_ENV = "STSR_CACHE_DIR"
_ARRAYS = ("lr", "lr_mask", "hr_mask", "image", "hr")
_TRUTH = ("hr", "tissue", "scored", "counts", "totals")


def code_hash() -> str:
    """sha256 (16 hex digits) of the source of every module of :mod:`bench.data` (the code that
    turns input files into samples: a change to any of them invalidates the cache)."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted(here.rglob("*.py")):
        digest.update(path.relative_to(here).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """``$STSR_CACHE_DIR``, else ``~/.cache/stsr-bench/splits``."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "stsr-bench" / "splits"


def _stamp(card: Card, root: Path) -> dict[str, str]:
    """The inputs' sha256, once every file is present and matches the card (else BenchError)."""
    require_files(card, root)
    verify(card, root)
    return {rel: card.files[rel] for rel in sorted(card.files)}


def _path(card: Card, k: int, fingerprint: str) -> Path:
    return cache_dir() / f"{card.name}-k{k}-{fingerprint}.npz"


def _save(path: Path, split: Split, stamp: dict[str, str]) -> None:
    arrays: dict[str, np.ndarray] = {"data_range": split.data_range}
    for role, samples in (("train", split.train), ("test", split.test)):
        for i, s in enumerate(samples):
            names = _ARRAYS if role == "train" else _ARRAYS[:-1]  # test inputs carry no hr
            arrays.update({f"{role}/{i}/{name}": getattr(s, name) for name in names})
    arrays.update({f"truth/{name}": getattr(split.truth, name) for name in _TRUTH})
    meta = {"spec": split.spec.to_json(), "stamp": stamp, "code": code_hash()}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda p: np.savez(p, **arrays))


def _load(path: Path, stamp: dict[str, str]) -> Split | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            if meta["stamp"] != stamp or meta.get("code") != code_hash():
                return None
            spec = SplitSpec.from_json(meta["spec"])
            genes, k = spec.genes, spec.k

            def samples(role: str) -> list[Sample]:
                names = _ARRAYS if role == "train" else _ARRAYS[:-1]
                return [
                    Sample(
                        region=rid,
                        genes=genes,
                        scale=k,
                        **{name: z[f"{role}/{i}/{name}"] for name in names},
                    )
                    for i, rid in enumerate(getattr(spec, role))
                ]

            truth = Truth(**{name: z[f"truth/{name}"] for name in _TRUTH})
            return Split(spec, samples("train"), samples("test"), z["data_range"], truth)
    except Exception:  # noqa: BLE001 - a damaged or foreign cache file is rebuilt, never trusted
        return None


def load(card: Card, root: Path, k: int, fold: int | None = None) -> Split:
    """The committed split for pooling ``k`` (or its fold ``fold``), from the cache when valid,
    else built and cached."""
    spec = load_spec(card, k, fold)
    stamp = _stamp(card, root)
    path = _path(card, k, spec.fingerprint)
    if path.is_file():
        split = _load(path, stamp)
        if split is not None and split.spec == spec:
            return split
    split = build(card, root, k, verify_inputs=False, fold=fold)  # verified by _stamp just now
    try:
        _save(path, split, stamp)
    except OSError as err:
        print(f"note: split cache {path.parent} not written ({err.strerror})", file=sys.stderr)
    return split
