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
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from bench.data.section import LATTICES, UM_PER_PX_RANGE
from bench.errors import BenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
CARDS_DIR = REPO_ROOT / "datasets"
CARDS_ENV = "STSR_DATASETS_DIR"  # an extra folder of user cards (<dir>/<name>/card.toml)
DATA_DIR_ENV = "STSR_DATA_DIR"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
NORMALISATIONS = ("log1p_cp10k", "log1p_area")
REGION_RULES = ("sections", "tiles")


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
    missing = [p for p in card.files if not confined(folder, p, f"[files].{p!r}").is_file()]
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


def _fail(where: Path, key: str, value: Any, expected: str) -> BenchError:
    return BenchError(f"{where}: {key} = {value!r} {expected}; fix the card")


def _table(where: Path, raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        if key not in raw:
            raise BenchError(f"{where}: missing table [{key}]; every card needs it")
        raise _fail(where, f"[{key}]", value, "must be a table")
    return value


def _confined_in(where: Path, folder: Path, rel: str, key: str) -> None:
    try:
        confined(folder, rel, key)
    except BenchError as err:
        raise BenchError(f"{where}: {err}") from None


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
    ``low..high`` (each end open or closed); else a one-line error naming ``key``."""
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
        raise _fail(where, key, value, f"must be {kind} {rng}")
    return float(value)


def _names(where: Path, key: str, value: Any, known: dict[str, Any]) -> list[str]:
    """A non-empty list of names, each a key of ``known`` (the card's [sections])."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(where, key, value, "must be a non-empty list of section names")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise _fail(where, key, value, f"names {unknown[0]!r}, which is not in [sections]")
    return list(value)


def check_card(where: Path, name: str, raw: dict[str, Any]) -> None:
    """Check a card whole, before any data file is read; the first problem raises a one-line
    :class:`BenchError` naming the card file and the key.

    - ``name`` (when given) is the card's folder name; ``reader`` names a known reader;
    - ``[files]``: relative paths inside the dataset folder (:func:`confined`) -> sha256 (64 lower
      hex digits); every file a ``[sections]`` entry names is listed there, so no input escapes
      the checksums and the split's fingerprint;
    - ``[sections]``: one table per section with the keys its reader needs;
    - ``[lattice]``, ``[split]``, ``[genes]``: kinds known, numbers typed and in range, sections
      named by the split present in ``[sections]``, every pooling factor dividing the canvas
      and leaving an LR map of at least 2 x 2 spots;
    - ``[read]``: the reader's own check, when it has one (``check_card`` in its module).
    """
    from bench.data.readers import reader

    if raw.get("name", name) != name:
        raise _fail(
            where, "name", raw["name"], f'differs from the card\'s folder; set name = "{name}"'
        )
    for key in ("source", "files", "sections", "split", "genes"):
        _table(where, raw, key)
    module = reader(raw.get("reader"), name)
    folder = Path("<data-dir>") / name

    files = raw["files"]
    for rel, digest in files.items():
        _confined_in(where, folder, rel, f"[files].{rel!r}")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise _fail(
                where,
                f"[files].{rel!r}",
                digest,
                "must be the file's sha256 (64 hex digits; 'sha256sum FILE' prints it)",
            )
    sections = raw["sections"]
    if not sections:
        raise BenchError(f"{where}: [sections] is empty; name at least one section")
    listed = {str(Path(rel)) for rel in files}
    required = tuple(getattr(module, "ENTRY_KEYS", ()))
    for sid, entry in sections.items():
        key = f"[sections.{sid}]"
        if not isinstance(entry, dict):
            raise _fail(where, key, entry, "must be a table of the section's files")
        for need in required:
            if not isinstance(entry.get(need), str):
                raise BenchError(
                    f'{where}: {key} has no {need} = "<path>"; the {raw["reader"]} reader '
                    f"needs {', '.join(required)}"
                )
        if "image_scale" in entry:
            check_number(where, f"{key}.image_scale", entry["image_scale"])
        inputs = module.inputs(entry) if hasattr(module, "inputs") else {}
        for field, alternatives in inputs.items():
            for rel in alternatives:
                _confined_in(where, folder, rel, f"{key}.{field}")
            if not any(str(Path(rel)) in listed for rel in alternatives):
                raise BenchError(
                    f"{where}: {key}.{field} reads {alternatives[0]!r}, which [files] does not "
                    f'list; add "{alternatives[0]}" = "<sha256>" to [files] (\'sha256sum FILE\' '
                    "prints it) so the file is verified and fingerprinted"
                )

    lattice = raw.get("lattice", {})
    if not isinstance(lattice, dict):
        raise _fail(where, "[lattice]", lattice, "must be a table")
    for key in getattr(module, "LATTICE_KEYS", ()):
        if key not in lattice:
            missing = f"[lattice] has no {key}" if "lattice" in raw else "missing table [lattice]"
            raise BenchError(
                f"{where}: {missing}; the {raw['reader']} reader needs [lattice].{key} (see "
                "datasets/examples/)"
            )
    if lattice.get("kind", "square") not in LATTICES:
        raise _fail(where, "[lattice].kind", lattice["kind"], f"is unknown; use one of {LATTICES}")
    if "pitch_um" in lattice:
        value = lattice["pitch_um"]
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            check_number(
                where, "[lattice].pitch_um" + (f"[{i}]" if isinstance(value, list) else ""), v
            )
        if isinstance(value, list) and len(value) != 2:
            raise _fail(where, "[lattice].pitch_um", value, "must be a number or [row, column]")
    for key in ("spot_diameter_um",):
        if key in lattice:
            check_number(where, f"[lattice].{key}", lattice[key])
    if "image_um_per_px" in lattice:
        low, high = UM_PER_PX_RANGE
        check_number(
            where, "[lattice].image_um_per_px", lattice["image_um_per_px"], low=low, high=high
        )

    split = raw["split"]
    rule = split.get("regions", "sections")
    if rule not in REGION_RULES:
        raise _fail(where, "[split].regions", rule, f"is unknown; use one of {REGION_RULES}")
    if rule == "sections":
        train = _names(where, "[split].train", split.get("train"), sections)
        test = _names(where, "[split].test", split.get("test"), sections)
        both = set(train) & set(test)
        if both:
            raise _fail(
                where, "[split].test", test, f"shares {sorted(both)[0]!r} with [split].train"
            )
    else:
        _names(where, "[split].sections", split.get("sections"), sections)
        check_number(where, "[split].min_tissue", split.get("min_tissue"), high=1.0)
        check_number(
            where, "[split].test_fraction", split.get("test_fraction"), high=1.0, high_open=True
        )
    pooling = split.get("pooling")
    if not isinstance(pooling, list) or not pooling:
        raise _fail(where, "[split].pooling", pooling, "must be a non-empty list of integers >= 2")
    for i, k in enumerate(pooling):
        check_number(where, f"[split].pooling[{i}]", k, integer=True, low=2, low_open=False)
    default = split.get("default_pooling")
    check_number(where, "[split].default_pooling", default, integer=True, low=2, low_open=False)
    if default not in pooling:
        raise _fail(
            where, "[split].default_pooling", default, f"must be one of [split].pooling {pooling}"
        )
    canvas = split.get("canvas")
    if not isinstance(canvas, list) or len(canvas) != 2:
        raise _fail(where, "[split].canvas", canvas, "must be [rows, columns] of HR positions")
    for i, c in enumerate(canvas):
        check_number(where, f"[split].canvas[{i}]", c, integer=True)
    for k in pooling:
        if canvas[0] % k or canvas[1] % k:
            raise _fail(where, "[split].canvas", canvas, f"is not divisible by pooling k = {k}")
        if min(canvas) // k < 2:  # a 1-spot LR map has no spatial pattern to super-resolve
            raise _fail(
                where,
                "[split].pooling",
                pooling,
                f"holds k = {k}, which leaves a {canvas[0] // k} x {canvas[1] // k} LR map of the "
                f"{canvas[0]} x {canvas[1]} canvas; use k <= {min(canvas) // 2} (an LR map needs "
                "at least 2 x 2 spots)",
            )
    check_number(where, "[split].image_px", split.get("image_px"), integer=True)
    if "qc_nmads" in split:  # spot QC (bench/data/qc.py); default 3 MADs below the median
        check_number(where, "[split].qc_nmads", split["qc_nmads"], low=0.0, low_open=False)
    if split.get("normalisation") not in NORMALISATIONS:
        raise _fail(
            where,
            "[split].normalisation",
            split.get("normalisation"),
            f"must be one of {NORMALISATIONS}",
        )

    genes = raw["genes"]
    check_number(where, "[genes].n", genes.get("n"), integer=True)
    prefixes = genes.get("exclude_prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        raise _fail(
            where, "[genes].exclude_prefixes", prefixes, "must be a list of non-empty strings"
        )
    if "table" in genes:
        rel = genes["table"]
        if not isinstance(rel, str):
            raise _fail(where, "[genes].table", rel, "must be the path of a gene id/symbol table")
        _confined_in(where, folder, rel, "[genes].table")
        if str(Path(rel)) not in listed:
            raise BenchError(
                f"{where}: [genes].table reads {rel!r}, which [files] does not list; add "
                f'"{rel}" = "<sha256>" to [files]'
            )
    if not isinstance(genes.get("rule", ""), str):
        raise _fail(where, "[genes].rule", genes["rule"], "must be a sentence describing the rule")

    if not isinstance(raw.get("read", {}), dict):
        raise _fail(where, "[read]", raw["read"], "must be a table")
    if hasattr(module, "check_card"):
        module.check_card(where, raw)
