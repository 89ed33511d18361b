"""Dataset cards (``datasets/<name>/card.toml``) and the data-directory setting.

A card is the single source of facts about a dataset: upstream source and mirrors, the sha256 of
every input file, licence, citation, lattice, sections, train/test assignment, pooling factors and
the gene-selection rule. Split files sit beside it (``split-k<k>.json``).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bench.data.card_schema import NORMALISATIONS as NORMALISATIONS  # re-exported
from bench.data.card_schema import REGION_RULES as REGION_RULES
from bench.data.card_schema import outside, validate
from bench.errors import BenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
CARDS_DIR = REPO_ROOT / "datasets"
CARDS_ENV = "STSR_DATASETS_DIR"  # an extra folder of user cards (<dir>/<name>/card.toml)
DATA_DIR_ENV = "STSR_DATA_DIR"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Card:
    """A parsed dataset card. ``raw`` keeps every field of the TOML file."""

    name: str
    raw: dict[str, Any]
    folder: Path  # datasets/<name>

    @property
    def files(self) -> dict[str, str]:
        """Input files relative to ``<data-dir>/<name>`` -> sha256."""
        return dict(self.raw["files"])

    @property
    def sections(self) -> dict[str, dict[str, str]]:
        return dict(self.raw["sections"])

    @property
    def split(self) -> dict[str, Any]:
        return dict(self.raw["split"])

    def split_path(self, k: int) -> Path:
        return self.folder / f"split-k{k}.json"


def confined(dataset_dir: Path, relpath: str, key: str) -> Path:
    """``dataset_dir / relpath`` once ``relpath`` is a plain relative path inside the folder.

    Card paths (``[files]`` keys, ``[sections]`` entries) name files under the dataset's folder
    ``<data-dir>/<name>``; an absolute path, a drive, a ``..`` part or an empty path would read or
    write outside it (and escape the checksums), so each is refused with a one-line
    :class:`BenchError` naming ``key`` (e.g. ``[files]."../x.csv"`` or ``[sections.A1].counts``).
    The check is lexical: a symlink placed inside the folder by its owner is followed.
    """
    if outside(relpath):
        raise BenchError(
            f"card key {key} = {relpath!r}: paths must be relative to the dataset folder "
            f"{dataset_dir} without '..' (e.g. \"counts/A1.tsv.gz\"); fix the card"
        )
    return Path(dataset_dir) / PurePosixPath(relpath)


def card_dirs() -> list[Path]:
    """Folders searched for cards: ``$STSR_DATASETS_DIR`` (user cards) first, then the repo's."""
    extra = os.environ.get(CARDS_ENV)
    return [Path(extra).expanduser(), CARDS_DIR] if extra else [CARDS_DIR]


def dataset_names() -> list[str]:
    """Datasets that have a card, sorted."""
    return sorted({p.parent.name for d in card_dirs() for p in d.glob("*/card.toml")})


def load_card(name: str) -> Card:
    """Read ``<cards>/<name>/card.toml`` and check it whole (:func:`check_card`) before any data
    file is read; unknown names fail listing the known ones and where cards are looked for."""
    valid = bool(_NAME.match(name))  # a name becomes a path: no separators, no ".."
    found = [d / name / "card.toml" for d in card_dirs() if valid and (d / name).is_dir()]
    found = [p for p in found if p.is_file()]
    if not found:
        where = ", ".join(str(d) for d in card_dirs())
        raise BenchError(
            f"unknown dataset {name!r} (no <name>/card.toml under {where}); known datasets: "
            f"{', '.join(dataset_names()) or 'none'}; for your own cards set ${CARDS_ENV} to "
            "the folder holding <name>/card.toml"
        )
    path = found[0]
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise BenchError(f"{path}: not valid TOML ({err}); fix the card") from None
    check_card(path, name, raw)
    return Card(name=name, raw=raw, folder=path.parent)


def resolve_datasets(spec: str) -> list[str]:
    """``"all"`` or ``"a,b"`` -> known dataset names (unknown ones fail with the known list)."""
    wanted = dataset_names() if spec.strip() == "all" else [s.strip() for s in spec.split(",")]
    wanted = [w for w in wanted if w]
    for name in wanted:
        load_card(name)
    if not wanted:
        raise BenchError(f"no dataset named; choose from: all, {', '.join(dataset_names())}")
    return list(dict.fromkeys(wanted))


def data_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``--data-dir``, else ``$STSR_DATA_DIR``, else the per-user cache."""
    value = flag or os.environ.get(DATA_DIR_ENV)
    if value:
        return Path(value).expanduser().resolve()
    return Path.home() / ".cache" / "stsr-bench" / "data"


def require_files(card: Card, root: Path) -> Path:
    """``root/<name>`` once every input file exists; else a one-line error with the fix."""
    folder = root / card.name
    # an input is a file, or a folder (a zarr store) digested whole (bench.data.fetch.sha256)
    missing = [p for p in card.files if not confined(folder, p, f"[files].{p!r}").exists()]
    if missing:
        mirrors = card.raw["source"].get("mirrors") if isinstance(card.raw["source"], dict) else 0
        how = (
            f"run 'python -m bench fetch --datasets {card.name} --data-dir {root}' or point "
            f"--data-dir / ${DATA_DIR_ENV} at the data"
            if mirrors
            else f"the card names no mirror, so copy the files into {folder} (paths as in "
            f"[files]) or point --data-dir / ${DATA_DIR_ENV} at the folder holding {card.name}/"
        )
        raise BenchError(
            f"dataset {card.name!r}: {len(missing)} input file(s) missing under {folder} "
            f"(first: {missing[0]}); {how}"
        )
    return folder


# ---------------------------------------------------------------- the whole-card check


def check_number(
    where: Path,
    key: str,
    value: Any,
    *,
    integer: bool = False,
    low: float = 0.0,
    high: float = math.inf,
    low_open: bool = True,
    high_open: bool = False,
) -> float:
    """``value`` as a float once it is a finite number (an int when ``integer``) in the range
    ``low..high`` (each end open or closed); else a one-line error naming ``key``. For readers'
    own ``check_card`` hooks; the card's tables are checked by :mod:`bench.data.card_schema`."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (isinstance(value, int) or not integer)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        kind = "an integer" if integer else "a number"
        if high == math.inf:
            rng = f"> {low:g}" if low_open else f">= {low:g}"
        else:
            rng = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise BenchError(f"{where}: {key} = {value!r} must be {kind} {rng}; fix the card")
    return float(value)


def check_card(where: Path, name: str, raw: dict[str, Any]) -> None:
    """Check a card whole, before any data file is read; the first problem raises a one-line
    :class:`BenchError` naming the card file and the key (the TOML path, e.g.
    ``[split].pooling[1]``), the value given and what it must be.

    The schema (:mod:`bench.data.card_schema`, one pydantic model per table) checks:

    - ``name`` (when given) is the card's folder name; ``reader`` names a known reader;
    - ``[files]``: relative paths inside the dataset folder (:func:`confined`) -> sha256 (64 lower
      hex digits); every file a ``[sections]`` entry names is listed there, so no input escapes
      the checksums and the split's fingerprint;
    - ``[sections]``: one table per section with the keys its reader needs (``ENTRY_KEYS``);
    - ``[lattice]``, ``[split]``, ``[genes]``: kinds known, numbers typed and in range, sections
      named by the split present in ``[sections]``, train and test disjoint, ``default_pooling``
      one of ``pooling``, every pooling factor dividing the canvas and leaving an LR map of at
      least 2 x 2 spots; ``[lattice]`` holds the reader's ``LATTICE_KEYS``;
    - ``[read]``: a table; its keys are the reader's, checked by the reader's own hook
      (``check_card(where, raw)`` in its module), called once the schema passes.
    """
    _, module = validate(where, name, raw)
    if hasattr(module, "check_card"):
        module.check_card(where, raw)
