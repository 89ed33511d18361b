"""The schema of a dataset card (``datasets/<name>/card.toml``): one pydantic model per table.

:func:`validate` checks a parsed card whole, before any data file is read, and turns the first
problem into ONE line, ``<card path>: <key> = <value> <what it must be>; fix the card``, the key
written as a TOML path (``[split].pooling[1]``, ``[sections.A1].counts``, ``[files].'a.csv'``);
a missing key or table reads ``<card path>: missing key [split].canvas (...)`` or ``missing
table [split] (...)``. When the check finds more than one problem the line says how many more.

Values are strict: no text for a number, no ``true`` for an integer, no ``inf`` or ``nan``.
Unknown keys: ``[sections.<id>]`` entries and ``[read]`` belong to the reader (its ``ENTRY_KEYS``
and ``check_card`` hook), so any key passes there; in the other tables and at the top level a key
the schema does not know is kept only as a text note (a string) whose name is unlike every known
key, so a misspelt setting (``qc_nmad = 2``, ``knd = "checkerboard"``) is refused, not ignored.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from bench.data.section import LATTICES, UM_PER_PX_RANGE
from bench.errors import BenchError

NORMALISATIONS = ("log1p_cp10k", "log1p_area")
REGION_RULES = ("sections", "tiles")
TABLES = ("source", "files", "sections", "lattice", "split", "genes", "read")
PATHS = "paths must be relative to the dataset folder"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class CardKeyError(ValueError):
    """A card mistake found by a validator: ``str(err)`` says what the value must be; ``key``
    continues the validator's location (e.g. ``("pooling",)`` under ``[split]``); ``value`` is
    shown (the validated input when left out); ``missing``: the key is absent."""

    def __init__(self, expected: str, key: tuple = (), value: Any = ..., missing: bool = False):
        super().__init__(expected)
        self.key, self.value, self.missing = key, value, missing


def outside(relpath: Any) -> bool:
    """Whether ``relpath`` would leave the dataset folder: not a string, empty, absolute, a
    drive, a leading ``~`` or ``\\``, or a ``..`` part (POSIX or Windows reading)."""
    text = relpath if isinstance(relpath, str) else ""
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    return (
        not text.strip()
        or posix.is_absolute()
        or windows.is_absolute()
        or bool(windows.drive)
        or text.startswith(("~", "\\"))
        or ".." in posix.parts
        or ".." in windows.parts
    )


def _confine_rule(info: ValidationInfo) -> str:
    folder = f"<data-dir>/{(info.context or {}).get('name', '<name>')}"
    return f"leaves the dataset folder: {PATHS} {folder} without '..' (e.g. \"counts/A1.tsv.gz\")"


def _relative(value: str, info: ValidationInfo) -> str:
    if outside(value):
        raise CardKeyError(_confine_rule(info))
    return value


def _sha256(value: str) -> str:
    if not _SHA256.match(value):
        raise CardKeyError("must be the file's sha256 (64 hex digits; 'sha256sum FILE' prints it)")
    return value


RelPath = Annotated[str, AfterValidator(_relative)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
Positive = Annotated[float, Field(gt=0)]
Names = Annotated[list[str], Field(min_length=1)]
Pitch = Annotated[
    Annotated[Positive, Tag("number")]
    | Annotated[list[Positive], Field(min_length=2, max_length=2), Tag("pair")],
    Discriminator(lambda v: "pair" if isinstance(v, list) else "number"),
]


class _Table(BaseModel):
    """A card table: strict values; unknown keys only as text notes (module docstring)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    toml: ClassVar[str] = ""  # the table's name in the card ("" for the top level)

    def known(self, info: ValidationInfo) -> list[str]:
        return list(type(self).model_fields)

    @model_validator(mode="after")
    def _notes_only(self, info: ValidationInfo) -> _Table:
        known = self.known(info)
        for key, value in (self.model_extra or {}).items():
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            if close or not isinstance(value, str):
                where = f"[{self.toml}]" if self.toml else "a card"
                hint = f"misspelt {close[0]}?" if close else "a note must be text"
                raise CardKeyError(
                    f"is not a key of {where} ({hint}; known: {', '.join(known)})",
                    key=(key,),
                    value=value,
                )
        return self


class Source(_Table):
    """``[source]``: provenance; ``mirrors`` a list of URL templates (``fetch`` checks their
    scheme), ``max_file_bytes`` an integer > 0."""

    toml: ClassVar[str] = "source"
    repository: str | None = Field(None, description="the upstream repository or lab")
    commit: str | None = Field(None, description="the upstream commit, {commit} in mirrors")
    also: str | None = Field(None, description="other places holding the data")
    mirrors: list[str] = Field(
        default_factory=list, description="URL templates with {path}, tried in order by fetch"
    )
    max_file_bytes: int | None = Field(None, gt=0, description="fetch's size cap per file")


class SectionEntry(BaseModel):
    """One ``[sections.<id>]`` table: the keys its reader names in ``ENTRY_KEYS`` are present
    and strings; any other key is the reader's (its ``check_card`` hook checks them)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    image_scale: float | None = Field(
        None, gt=0, description="the image's size over the full-resolution image's, > 0"
    )

    @model_validator(mode="after")
    def _reader_keys(self, info: ValidationInfo) -> SectionEntry:
        context = info.context or {}
        required = tuple(getattr(context.get("module"), "ENTRY_KEYS", ()))
        needs = f"the {context.get('reader')} reader needs {', '.join(required)}"
        extra = self.model_extra or {}
        for key in required:
            if key not in extra:
                raise CardKeyError(f"{needs}: paths in the dataset folder", (key,), missing=True)
            if not isinstance(extra[key], str):
                raise CardKeyError(f"must be a path ({needs})", (key,), extra[key])
        return self


class Lattice(_Table):
    """``[lattice]``: ``kind`` one of :data:`bench.data.section.LATTICES`; ``pitch_um`` a number
    > 0 or ``[row, column]`` of them; ``image_um_per_px`` within ``UM_PER_PX_RANGE``."""

    toml: ClassVar[str] = "lattice"
    kind: Literal[LATTICES] = Field("square", description="the spot grid")
    pitch_um: Pitch | None = Field(
        None, description="one grid step in um: a number > 0 or [row, column]"
    )
    spot_diameter_um: float | None = Field(None, gt=0, description="the physical spot in um")
    image_um_per_px: float | None = Field(
        None,
        gt=UM_PER_PX_RANGE[0],
        le=UM_PER_PX_RANGE[1],
        description="the image's pixel size in um",
    )
    coordinates: str | None = Field(None, description="how the files' coordinates map")

    def known(self, info: ValidationInfo) -> list[str]:
        module = (info.context or {}).get("module")
        return list(dict.fromkeys([*super().known(info), *getattr(module, "LATTICE_KEYS", ())]))


REGION_NEEDS = ("sections", "min_tissue", "test_fraction")  # [split] keys regions = "tiles" needs


class Split(_Table):
    """``[split]``: ``regions = "sections"`` needs disjoint non-empty ``train`` and ``test``;
    ``"tiles"`` needs ``sections``, ``0 < min_tissue <= 1`` and ``0 < test_fraction < 1``.
    Every pooling factor ``k >= 2`` divides both canvas sides and leaves an LR map of at least
    2 x 2 spots (``min(canvas) // k >= 2``); ``default_pooling`` is one of ``pooling``.
    ``folds`` (optional, an integer >= 2) is how many cross-validation folds
    ``bench split --folds`` writes (:mod:`bench.data.folds`): with ``"sections"`` at most one per
    section of ``train`` + ``test`` (the default when absent: one fold per section), with
    ``"tiles"`` the spatial blocks each section's tiles are grouped into (needed there)."""

    toml: ClassVar[str] = "split"
    regions: Literal[REGION_RULES] = Field("sections", description="one region per section")
    train: Names | None = Field(None, description="training section names")
    test: Names | None = Field(None, description="test section names, none in train")
    sections: Names | None = Field(None, description="section names cut into tiles")
    min_tissue: float | None = Field(None, gt=0, le=1, description="tissue share to keep a tile")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="share of tiles for test")
    pooling: Annotated[list[Annotated[int, Field(ge=2)]], Field(min_length=1)] = Field(
        description="pooling factors k offered, integers >= 2"
    )
    default_pooling: int = Field(ge=2, description="the k used without --k, one of pooling")
    canvas: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=2, max_length=2)] = (
        Field(description="[rows, columns] of HR positions per region")
    )
    image_px: int = Field(gt=0, description="image pixels per HR position, an integer > 0")
    qc_nmads: float | None = Field(None, ge=0, description="spot QC: MADs below the median")
    normalisation: Literal[NORMALISATIONS] = Field(description="how counts are normalised")
    assignment: str | None = Field(None, description="why these sections train or test")
    lr_rule: str | None = Field(None, description="how LR spots are made")
    region_rule: str | None = Field(None, description="how tiles are cut and assigned")
    folds: int | None = Field(None, ge=2, description="cross-validation folds, an integer >= 2")

    @model_validator(mode="after")
    def _rules(self) -> Split:
        needed = ("train", "test") if self.regions == "sections" else REGION_NEEDS
        for key in needed:
            if getattr(self, key) is None:
                why = f'regions = "{self.regions}" needs {", ".join(needed)}'
                raise CardKeyError(why, (key,), missing=True)
        both = set(self.train or ()) & set(self.test or ())
        if self.regions == "sections" and both:
            raise CardKeyError(
                f"shares {sorted(both)[0]!r} with [split].train", ("test",), self.test
            )
        named = len(self.train or ()) + len(self.test or ())
        if self.regions == "sections" and self.folds is not None and self.folds > named:
            raise CardKeyError(
                f"exceeds the {named} sections of [split].train and [split].test (a fold tests "
                "at least one section)",
                ("folds",),
                self.folds,
            )
        if self.default_pooling not in self.pooling:
            raise CardKeyError(
                f"must be one of [split].pooling {self.pooling}",
                ("default_pooling",),
                self.default_pooling,
            )
        rows, cols = self.canvas
        for k in self.pooling:
            if rows % k or cols % k:
                raise CardKeyError(
                    f"is not divisible by pooling k = {k}", ("canvas",), self.canvas
                )
            if min(rows, cols) // k < 2:  # a 1-spot LR map has no spatial pattern to super-resolve
                raise CardKeyError(
                    f"holds k = {k}, which leaves a {rows // k} x {cols // k} LR map of the "
                    f"{rows} x {cols} canvas; use k <= {min(rows, cols) // 2} (an LR map needs "
                    "at least 2 x 2 spots)",
                    ("pooling",),
                    self.pooling,
                )
        return self


class Genes(_Table):
    """``[genes]``: ``n`` an integer > 0; ``exclude_prefixes`` non-empty strings; ``table`` a
    path inside the dataset folder that ``[files]`` lists."""

    toml: ClassVar[str] = "genes"
    n: int = Field(gt=0, description="genes kept, an integer > 0")
    exclude_prefixes: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="non-empty gene-name prefixes dropped"
    )
    table: RelPath | None = Field(None, description="a gene id/symbol table listed in [files]")
    rule: str | None = Field(None, description="a sentence describing the rule")


class CardModel(_Table):
    """A whole card. Cross-table rules: ``name`` (when given) is the card's folder name;
    ``reader`` names a known reader; every file a section's reader ``inputs`` names, and
    ``[genes].table``, is a confined path listed in ``[files]``; the split names sections of
    ``[sections]``; ``[lattice]`` holds the reader's ``LATTICE_KEYS``."""

    name: str | None = Field(None, description="the card's folder name")
    reader: str = Field(description="a module of bench/data/readers/ or an installed plugin")
    title: str | None = None
    platform: str | None = None
    citation: str | None = None
    licence: str | None = None
    notes: str | None = None
    source: Source = Field(description="where the files come from; every card needs it")
    files: dict[RelPath, Sha256] = Field(
        description="each input file, relative to <data-dir>/<name>, with its sha256"
    )
    sections: dict[str, SectionEntry] = Field(
        min_length=1, description="one table per section naming its files"
    )
    lattice: Lattice = Field(default_factory=Lattice, description="the spot grid")
    split: Split = Field(description="regions, train/test, pooling, canvas; every card needs it")
    genes: Genes = Field(description="n, exclude_prefixes, rule; every card needs it")
    read: dict[str, Any] = Field(default_factory=dict, description="the reader's options")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str, info: ValidationInfo) -> str:
        folder = (info.context or {}).get("name", value)
        if value != folder:
            raise CardKeyError(f'differs from the card\'s folder; set name = "{folder}"')
        return value

    @field_validator("reader")
    @classmethod
    def _known_reader(cls, value: str, info: ValidationInfo) -> str:
        from bench.data.readers import names, reader

        context = info.context if info.context is not None else {}
        try:
            context["module"] = reader(value, context.get("name", "?"))
        except BenchError:
            if value in names():
                raise  # a plugin that cannot be imported: its own line names the distribution
            raise CardKeyError(f"is unknown; use one of {names()}") from None
        context["reader"] = value
        return value

    @model_validator(mode="after")
    def _across_tables(self, info: ValidationInfo) -> CardModel:
        context = info.context or {}
        module = context.get("module")
        listed = {str(Path(rel)) for rel in self.files}
        for sid, entry in self.sections.items():
            given = entry.model_dump(exclude_unset=True)
            inputs = module.inputs(given) if hasattr(module, "inputs") else {}
            for field, alternatives in inputs.items():
                key, shown = ("sections", sid, field), given.get(field, alternatives[0])
                if any(outside(rel) for rel in alternatives):
                    raise CardKeyError(_confine_rule(info), key, shown)
                if not any(str(Path(rel)) in listed for rel in alternatives):
                    raise CardKeyError(_unlisted(alternatives[0]), key, shown)
        for key in getattr(module, "LATTICE_KEYS", ()):
            if key not in self.lattice.model_fields_set | set(self.lattice.model_extra or {}):
                raise CardKeyError(
                    f"the {context.get('reader')} reader needs [lattice].{key}; see "
                    "datasets/examples/",
                    ("lattice", key),
                    missing=True,
                )
        keys = ("train", "test") if self.split.regions == "sections" else ("sections",)
        for key in keys:
            unknown = [s for s in getattr(self.split, key) if s not in self.sections]
            if unknown:
                raise CardKeyError(
                    f"names {unknown[0]!r}, which is not in [sections]",
                    ("split", key),
                    getattr(self.split, key),
                )
        table = self.genes.table
        if table is not None and str(Path(table)) not in listed:
            raise CardKeyError(_unlisted(table), ("genes", "table"), table)
        return self


def _unlisted(rel: str) -> str:
    return (
        f'reads {rel!r}, which [files] does not list; add "{rel}" = "<sha256>" to [files] '
        "('sha256sum FILE' prints it) so the file is verified and fingerprinted"
    )


# ---------------------------------------------------------------- one line from the first error

_PHRASES = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "bool_type": "must be true or false",
    "greater_than": "must be > {gt:g}",
    "greater_than_equal": "must be >= {ge:g}",
    "less_than": "must be < {lt:g}",
    "less_than_equal": "must be <= {le:g}",
    "too_short": "must hold at least {min_length} item(s)",
    "too_long": "must hold at most {max_length} item(s)",
    "string_too_short": "must not be empty",
    "literal_error": "is unknown; use {expected}",
}


def _phrase(err: dict[str, Any]) -> str:
    template = _PHRASES.get(err["type"])
    if template is None:
        return err["msg"].replace("Input should be", "must be", 1)
    return template.format(**err.get("ctx", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_at(loc: tuple) -> tuple[FieldInfo | None, type[BaseModel] | None]:
    """The model field at ``loc`` (dict keys and list indices skipped) and the model reached."""
    model: type[BaseModel] | None = CardModel
    found = None
    for part in loc:
        fields = model.model_fields if model is not None else {}
        if isinstance(part, str) and part in fields:
            found = fields[part]
            model = _model_in(found.annotation)
        elif isinstance(part, str) and model is not None and model is not SectionEntry:
            found, model = None, None  # a key the schema does not know
    return found, model


def _key(part: Any) -> str:
    return (
        f"[{part}]"
        if isinstance(part, int)
        else (part if _BARE_KEY.match(str(part)) else repr(part))
    )


def toml_path(loc: tuple, raw: Any, missing: bool = False) -> tuple[str, list]:
    """``loc`` as a TOML path (``[split].pooling[1]``) and the parts kept. Parts absent from
    ``raw`` (a union's tag, a dict key's ``[key]``) are dropped, except, for a ``missing`` key,
    those from the first absent one on."""
    kept: list = []
    node, gone = raw, False
    for part in loc:
        if gone:
            kept.append(part)
        elif isinstance(node, dict) and part in node:
            kept.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            kept.append(part)
            node = node[part]
        elif missing:
            kept.append(part)
            gone = True
    if not kept:
        return "the card", kept
    head = 2 if kept[0] == "sections" and len(kept) > 1 else 1
    if kept[0] not in TABLES:
        head = 0
    text = f"[{'.'.join(_key(p) for p in kept[:head])}]" if head else ""
    for part in kept[head:]:
        text += _key(part) if isinstance(part, int) or not text else "." + _key(part)
    return text, kept


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _misspelt(raw: dict[str, Any], kept: list) -> str:
    """``"; the card has <key>: misspelt?"`` when the missing key's table holds a key the schema
    does not know whose name is close to it; else ``""``."""
    parent: Any = raw
    for part in kept[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    if not kept or not isinstance(parent, dict):
        return ""
    _, model = _field_at(tuple(kept[:-1]))
    unknown = [k for k in parent if k not in (model.model_fields if model else {})]
    close = difflib.get_close_matches(str(kept[-1]), unknown, n=1, cutoff=0.8)
    return f"; the card has {close[0]}: misspelt?" if close else ""


def one_line(where: Path, raw: dict[str, Any], exc: ValidationError) -> str:
    """The first error of ``exc`` as ``<where>: <key> = <value> <expected>; fix the card``."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc, cause = tuple(err["loc"]), err.get("ctx", {}).get("error")
    if isinstance(cause, CardKeyError):
        loc, missing, expected = loc + cause.key, cause.missing, str(cause)
        value = err["input"] if cause.value is ... else cause.value
    else:
        missing, value = err["type"] == "missing", err["input"]
        field, _ = _field_at(loc)
        described = field.description if field is not None else None
        expected = "" if missing else _phrase(err)
        if isinstance(value, dict | list) and not value and described:
            expected = described  # "<key> is empty (<what it holds>)"
        elif described:
            expected = f"{expected} ({described})" if expected else described
    path, kept = toml_path(loc, raw, missing)
    if missing and kept and kept[0] in TABLES and kept[0] not in raw:
        body = f"missing table [{kept[0]}] ({expected}){_misspelt(raw, kept[:1])}"
    elif missing:
        body = f"missing key {path}" + (f" ({expected})" if expected else "")
        body += _misspelt(raw, kept)
    elif isinstance(value, dict | list) and not value:
        body = f"{path} is empty ({expected})"
    else:
        body = f"{path} = {_show(value)} {expected}"
    more = len(errors) - 1
    if more:
        body += f" (and {more} more problem{'s' if more > 1 else ''})"
    return f"{where}: {body}; fix the card"


def validate(where: Path, name: str, raw: dict[str, Any]) -> tuple[CardModel, Any]:
    """The typed card and its reader module once ``raw`` passes the schema; else a one-line
    :class:`BenchError` (:func:`one_line`)."""
    context: dict[str, Any] = {"name": name}
    try:
        model = CardModel.model_validate(raw, context=context)
    except ValidationError as exc:
        raise BenchError(one_line(where, raw, exc)) from None
    return model, context["module"]
