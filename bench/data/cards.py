"""Dataset cards (``datasets/<name>/card.toml``) and the data-directory setting.

A card is the single source of facts about a dataset: upstream source and mirrors, the sha256 of
every input file, licence, citation, lattice, sections, train/test assignment, pooling factors and
the gene-selection rule. Split files sit beside it (``split-k<k>.json``).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

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
    text = relpath if isinstance(relpath, str) else ""
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    bad = (
        not text.strip()
        or posix.is_absolute()
        or windows.is_absolute()
        or bool(windows.drive)
        or text.startswith(("~", "\\"))
        or ".." in posix.parts
        or ".." in windows.parts
    )
    if bad:
        raise BenchError(
            f"card key {key} = {relpath!r}: paths must be relative to the dataset folder "
            f"{dataset_dir} without '..' (e.g. \"counts/A1.tsv.gz\"); fix the card"
        )
    return Path(dataset_dir) / posix


def card_dirs() -> list[Path]:
    """Folders searched for cards: ``$STSR_DATASETS_DIR`` (user cards) first, then the repo's."""
    extra = os.environ.get(CARDS_ENV)
    return [Path(extra).expanduser(), CARDS_DIR] if extra else [CARDS_DIR]


def dataset_names() -> list[str]:
    """Datasets that have a card, sorted."""
    return sorted({p.parent.name for d in card_dirs() for p in d.glob("*/card.toml")})


def load_card(name: str) -> Card:
    """Read ``<cards>/<name>/card.toml``; unknown names fail listing the known ones."""
    valid = bool(_NAME.match(name))  # a name becomes a path: no separators, no ".."
    found = [d / name / "card.toml" for d in card_dirs() if valid and (d / name).is_dir()]
    found = [p for p in found if p.is_file()]
    if not found:
        raise BenchError(
            f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names()) or 'none'}"
        )
    path = found[0]
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise BenchError(f"{path}: not valid TOML ({err}); fix the card") from None
    for key in ("files", "sections", "split", "genes", "source"):
        if key not in raw:
            raise BenchError(f"{path}: missing table [{key}]; every card needs it")
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
    missing = [p for p in card.files if not (folder / p).is_file()]
    if missing:
        raise BenchError(
            f"dataset {card.name!r}: {len(missing)} input file(s) missing under {folder} "
            f"(first: {missing[0]}); run 'python -m bench fetch --datasets {card.name} "
            f"--data-dir {root}' or point --data-dir / ${DATA_DIR_ENV} at the data"
        )
    return folder
