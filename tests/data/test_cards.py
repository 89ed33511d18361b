"""A card is checked whole before any data file is read: each mistake gives exit 2 and one line
naming the card key, and nothing is read or written.

Every case starts from a valid synthetic user card (:mod:`synthetic`) in ``$STSR_DATASETS_DIR``
and edits the card only; the data files stay valid, and one of them is made unreadable so a test
fails if anything reaches the data before the card is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import synthetic as syn

from bench import cli
from bench.data.cards import confined, load_card
from bench.errors import BenchError

REPO = Path(__file__).resolve().parents[2]


def set_key(table: str, key: str, value) -> Callable[[dict], None]:
    def edit(card: dict) -> None:
        (card[table] if table else card)[key] = value

    return edit


def set_section(section: str, key: str, value) -> Callable[[dict], None]:
    def edit(card: dict) -> None:
        card["sections"][section][key] = value

    return edit


def unlist(rel: str) -> Callable[[dict], None]:
    def edit(card: dict) -> None:
        del card["files"][rel]

    return edit


def add_file(rel: str, digest: str = "0" * 64) -> Callable[[dict], None]:
    def edit(card: dict) -> None:
        card["files"][rel] = digest

    return edit


def old_format(reader: str, fmt: str) -> Callable[[dict], None]:
    """A card as written before each platform had its reader: ``[read].format``."""

    def edit(card: dict) -> None:
        card["reader"] = reader
        card["read"]["format"] = fmt

    return edit


# (generator, edit, substrings the one line must hold)
CASES = {
    "section-file-not-listed": (
        syn.legacy_st,
        unlist("spots/A2_selection.tsv"),
        ("[sections.A2].spots", "A2_selection.tsv", "[files]", "sha256"),
    ),
    "transcripts-image-not-listed": (
        syn.transcripts,
        unlist("dapi.png"),
        ("[sections.section].image", "dapi.png", "[files]"),
    ),
    "h5ad-file-not-listed": (syn.h5ad, unlist("B1.h5ad"), ("[sections.B1].h5ad", "[files]")),
    "negative-genes-n": (syn.legacy_st, set_key("genes", "n", -3), ("[genes].n", "-3")),
    "genes-n-as-text": (syn.legacy_st, set_key("genes", "n", "5"), ("[genes].n", "integer")),
    "absolute-path-in-files": (
        syn.legacy_st,
        add_file("/etc/passwd"),
        ("[files]", "/etc/passwd", "relative"),
    ),
    "dotdot-in-section": (
        syn.legacy_st,
        set_section("A1", "image", "../other/A1.jpg"),
        ("[sections.A1].image", "..", "relative"),
    ),
    "dotdot-in-files": (
        syn.transcripts,
        add_file("images/../../x.png"),
        ("[files]", "x.png", "without '..'"),
    ),
    "bad-sha256": (
        syn.legacy_st,
        add_file("counts/A1.tsv.gz", "abc"),
        ("[files].'counts/A1.tsv.gz'", "sha256"),
    ),
    "pooling-as-text": (
        syn.legacy_st,
        set_key("split", "pooling", ["2"]),
        ("[split].pooling[0]",),
    ),
    "default-pooling-not-offered": (
        syn.legacy_st,
        set_key("split", "default_pooling", 4),
        ("[split].default_pooling", "[2]"),
    ),
    "canvas-not-divisible": (
        syn.legacy_st,
        set_key("split", "canvas", [7, 8]),
        ("[split].canvas", "k = 2"),
    ),
    "test-fraction-above-one": (
        syn.transcripts,
        set_key("split", "test_fraction", 1.5),
        ("[split].test_fraction", "1.5"),
    ),
    "min-tissue-negative": (
        syn.transcripts,
        set_key("split", "min_tissue", -0.1),
        ("[split].min_tissue",),
    ),
    "unknown-split-section": (
        syn.legacy_st,
        set_key("split", "test", ["B2"]),
        ("[split].test", "'B2'", "[sections]"),
    ),
    "train-test-overlap": (
        syn.legacy_st,
        set_key("split", "test", ["A1"]),
        ("[split].test", "'A1'", "train"),
    ),
    "unknown-normalisation": (
        syn.legacy_st,
        set_key("split", "normalisation", "cpm"),
        ("[split].normalisation", "log1p_cp10k"),
    ),
    "image-um-per-px-as-text": (
        syn.legacy_st,
        set_key("lattice", "image_um_per_px", "10"),
        ("[lattice].image_um_per_px",),
    ),
    "pitch-negative": (
        syn.legacy_st,
        set_key("lattice", "pitch_um", -200),
        ("[lattice].pitch_um",),
    ),
    "unknown-lattice": (
        syn.legacy_st,
        set_key("lattice", "kind", "hexagonal"),
        ("[lattice].kind", "checkerboard"),
    ),
    "image-scale-zero": (
        syn.transcripts,
        set_section("section", "image_scale", 0),
        ("[sections.section].image_scale",),
    ),
    "read-um-per-px-missing": (
        syn.transcripts,
        lambda card: card["read"].pop("um_per_px"),
        ("[read].um_per_px",),
    ),
    "read-bin-um-as-text": (
        syn.transcripts,
        set_key("read", "bin_um", "10"),
        ("[read].bin_um",),
    ),
    "missing-section-key": (
        syn.legacy_st,
        lambda card: card["sections"]["A1"].pop("spots"),
        ("[sections.A1]", "spots"),
    ),
    "name-differs-from-folder": (syn.legacy_st, set_key("", "name", "her2st"), ("name", "her2st")),
    "read-format-of-a-platform": (
        syn.merscope,
        old_format("transcripts", "merscope"),
        ("[read].format", 'set reader = "merscope"', "delete [read].format"),
    ),
    "read-format-table": (
        syn.transcripts,
        old_format("transcripts", "table"),
        ("[read].format", 'keep reader = "transcripts"', "delete [read].format"),
    ),
    "misspelt-split-key": (
        syn.legacy_st,
        set_key("split", "qc_nmad", 2),
        ("[split].qc_nmad = 2", "misspelt qc_nmads?"),
    ),
    "number-under-unknown-lattice-key": (
        syn.legacy_st,
        set_key("lattice", "pitch", 100),
        ("[lattice].pitch = 100", "not a key of [lattice]"),
    ),
    "misspelt-table": (
        syn.transcripts,
        lambda card: card.update(lattic=card.pop("lattice")),
        ("lattic = ", "misspelt lattice?"),
    ),
    "misspelt-required-key": (
        syn.legacy_st,
        lambda card: card["split"].update(image_pxx=card["split"].pop("image_px")),
        ("missing key [split].image_px", "image_pxx: misspelt?"),
    ),
    "pitch-pair-element-as-text": (
        syn.legacy_st_2k,
        lambda card: card["lattice"].update(pitch_um=[86.6, "50"]),
        ("[lattice].pitch_um[1] = '50'", "must be a number"),
    ),
    "canvas-of-three": (
        syn.legacy_st,
        set_key("split", "canvas", [8, 8, 8]),
        ("[split].canvas = [8, 8, 8]", "at most 2"),
    ),
    "sha256-not-text": (
        syn.transcripts,
        add_file("dapi.png", 5),
        ("[files].'dapi.png' = 5", "must be a string"),
    ),
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    monkeypatch.setenv("STSR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["split", "run"])
def test_card_mistake_exit_2_one_line_naming_the_key(case, command, env: Path, capsys) -> None:
    make, edit, needles = CASES[case]
    ds = make(env / "cards", env / "data")
    load_card(ds.name)  # valid before the edit
    edit(ds.card)
    ds.write_card()
    for rel in list(ds.card["files"])[:1]:  # reading any data file now would fail elsewhere
        if (ds.folder / rel).is_file():
            (ds.folder / rel).write_bytes(b"not data")
    capsys.readouterr()
    args = [command, "--datasets", ds.name, "--data-dir", str(env / "data")]
    if command == "run":
        args += ["--methods", "mean", "--results-dir", str(env / "results"), "--no-progress"]
        args += ["--leaderboard", str(env / "board" / "LB.md")]
    status = cli.main(args)
    out, err = capsys.readouterr()
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), err
    assert str(ds.card_path) in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    assert out == ""
    assert not (env / "results").exists() and not (env / "board").exists()
    assert not (ds.card_dir / "split-k2.json").exists()


def test_unknown_dataset_names_the_cards_folder_setting(env: Path) -> None:
    with pytest.raises(BenchError, match=r"STSR_DATASETS_DIR") as err:
        load_card("my_lab_data")
    assert str(env / "cards") in str(err.value)


def test_missing_files_without_mirror_say_copy_not_fetch(env: Path) -> None:
    from bench.data.cards import require_files

    ds = syn.transcripts(env / "cards", env / "data")
    (ds.folder / "dapi.png").unlink()
    with pytest.raises(BenchError, match="no mirror") as err:
        require_files(load_card(ds.name), env / "data")
    assert "dapi.png" in str(err.value) and "bench fetch" not in str(err.value)


@pytest.mark.parametrize(
    "rel", ["/abs/x.csv", "../x.csv", "a/../../x.csv", "a/..", "", "~/x.csv", "C:\\x.csv"]
)
def test_confined_refuses_paths_leaving_the_dataset_folder(rel: str, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"\[files\]\.x"):
        confined(tmp_path / "ds", rel, "[files].x")


def test_confined_keeps_plain_relative_paths(tmp_path: Path) -> None:
    assert confined(tmp_path, "a/b/c.csv.gz", "k") == tmp_path / "a" / "b" / "c.csv.gz"
    assert confined(tmp_path, "./a.png", "k") == tmp_path / "a.png"


EXAMPLES = sorted((REPO / "datasets" / "examples").glob("*/card.toml"))


def test_example_cards_cover_every_reader_and_are_not_datasets() -> None:
    import tomllib

    from bench.data.cards import dataset_names
    from bench.data.readers import names

    raws = [tomllib.loads(p.read_text()) for p in EXAMPLES]
    assert {raw["reader"] for raw in raws} == set(names())
    assert {"xenium", "merscope", "cosmx", "transcripts"} <= set(names())
    # the reader names the platform; [read].format is refused
    assert not any("format" in raw.get("read", {}) for raw in raws)
    assert "examples" not in dataset_names() and len(EXAMPLES) >= 7


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_example_cards_pass_the_check_once_checksums_are_filled(path: Path) -> None:
    import tomllib

    from bench.data.cards import check_card

    raw = tomllib.loads(path.read_text())
    with pytest.raises(BenchError, match=r"sha256sum"):  # the placeholders are refused
        check_card(path, path.parent.name, raw)
    raw["files"] = dict.fromkeys(raw["files"], "0" * 64)
    check_card(path, path.parent.name, raw)


def test_no_reader_module_over_300_lines() -> None:
    """Readers are one module per platform over shared cores (issue 27), each short enough to read
    whole: no module of ``bench/data/readers/`` exceeds 300 lines."""
    folder = REPO / "bench" / "data" / "readers"
    sizes = {p.name: len(p.read_text().splitlines()) for p in sorted(folder.glob("*.py"))}
    assert len(sizes) >= 10  # the package was found
    assert {name: n for name, n in sizes.items() if n > 300} == {}


# ---------------------------------------------------------------- the schema (issue: pydantic)

COMMITTED = sorted((REPO / "datasets").glob("*/card.toml"))


def _raw(path: Path) -> dict:
    import tomllib

    raw = tomllib.loads(path.read_text())
    if path.parent.parent.name == "examples":  # templates: the placeholders filled
        raw["files"] = dict.fromkeys(raw["files"], "0" * 64)
    return raw


@pytest.mark.parametrize(
    "path",
    COMMITTED + EXAMPLES,
    ids=[str(p.parent.relative_to(REPO)) for p in COMMITTED + EXAMPLES],
)
def test_every_committed_card_passes_the_schema_silently(path: Path, recwarn, capfd) -> None:
    """Every card of ``datasets/`` and ``datasets/examples/`` passes, with no warning and
    nothing printed; a real dataset's card also loads by name and keeps every key in ``raw``."""
    from bench.data.cards import check_card

    raw = _raw(path)
    check_card(path, path.parent.name, raw)
    if path in COMMITTED:
        assert load_card(path.parent.name).raw == raw
    assert [str(w.message) for w in recwarn.list] == []
    assert capfd.readouterr() == ("", "")


def _wrong(value):
    """A value of another TOML type: text for a number, list or table; a number for text."""
    return 12345 if isinstance(value, str) else "text"


def _drop(*path):
    def edit(card: dict) -> None:
        node = card
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


def _put(*path, value):
    def edit(card: dict) -> None:
        node = card
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


def mutations(raw: dict) -> list[tuple[str, Callable[[dict], None], str]]:
    """``(label, edit, key)``: each table the card must have removed, each required key removed
    (the schema's required fields, the split's rule, the reader's ENTRY_KEYS and LATTICE_KEYS),
    each typed key (top level, [source], [lattice], [split], [genes], a [files] digest, a
    section's reader keys, a list's first item) given a value of a wrong type. ``key`` is the
    TOML path the one line must start with."""
    from bench.data.card_schema import REGION_NEEDS, Genes, Split
    from bench.data.readers import reader

    module = reader(raw["reader"])
    out = []
    tables = ["source", "files", "sections", "split", "genes"]
    tables += ["lattice"] if getattr(module, "LATTICE_KEYS", ()) else []
    for table in tables:
        out.append((f"drop-[{table}]", _drop(table), f"[{table}]"))
    out.append(("drop-reader", _drop("reader"), "reader"))
    for table, model in (("split", Split), ("genes", Genes)):
        for key, info in model.model_fields.items():
            if info.is_required():
                out.append((f"drop-{table}.{key}", _drop(table, key), f"[{table}].{key}"))
    rule = raw["split"].get("regions", "sections")
    for key in ("train", "test") if rule == "sections" else REGION_NEEDS:
        out.append((f"drop-split.{key}", _drop("split", key), f"[split].{key}"))
    for key in getattr(module, "LATTICE_KEYS", ()):
        out.append((f"drop-lattice.{key}", _drop("lattice", key), f"[lattice].{key}"))
    sid = next(iter(raw["sections"]))
    for key in getattr(module, "ENTRY_KEYS", ()):
        where = f"[sections.{sid}].{key}"
        out.append((f"drop-sections.{sid}.{key}", _drop("sections", sid, key), where))
        out.append((f"type-sections.{sid}.{key}", _put("sections", sid, key, value=5), where))
    for key, value in raw.items():
        if not isinstance(value, dict):
            out.append((f"type-{key}", _put(key, value=_wrong(value)), key))
            continue
        out.append((f"type-[{key}]", _put(key, value="text"), f"[{key}]"))
        if key not in ("source", "lattice", "split", "genes"):
            continue
        for sub, item in value.items():
            where = f"[{key}].{sub}"
            out.append((f"type-{key}.{sub}", _put(key, sub, value=_wrong(item)), where))
            if isinstance(item, list) and item:
                edit = _put(key, sub, 0, value=_wrong(item[0]))
                out.append((f"type-{key}.{sub}[0]", edit, f"{where}[0]"))
    rel = next(iter(raw["files"]))
    out.append(("type-files-digest", _put("files", rel, value=5), f"[files].{rel!r}"))
    return out


MUTATIONS = [
    pytest.param(path, edit, key, id=f"{path.parent.name}-{label}")
    for path in COMMITTED
    for label, edit, key in mutations(_raw(path))
]


@pytest.mark.parametrize("path,edit,key", MUTATIONS)
def test_each_card_mistake_is_one_line_naming_the_card_and_key(
    path: Path, edit, key: str, recwarn, capfd
) -> None:
    """A committed card with one table or required key removed, or one typed key of a wrong
    type: a :class:`BenchError` whose one line starts with the card's path and the key's TOML
    path (``<card>: <key> = ...``, ``<card>: missing key <key> ...``, ``<card>: missing table
    <key> ...``) and ends with "fix the card"; no warning, nothing printed."""
    from bench.data.cards import check_card

    raw = _raw(path)
    edit(raw)
    with pytest.raises(BenchError) as err:
        check_card(path, path.parent.name, raw)
    line = str(err.value)
    assert "\n" not in line and "Traceback" not in line, line
    assert err.value.__cause__ is None and err.value.__suppress_context__, "raised from None"
    rest = line.removeprefix(f"{path}: ")
    assert rest != line, f"card path not first: {line}"
    starts = (f"{key} = ", f"{key} is empty", f"missing key {key} ", f"missing table {key} ")
    assert rest.startswith(starts), f"key {key!r} not named first: {line}"
    assert line.endswith("; fix the card"), line
    assert [str(w.message) for w in recwarn.list] == []
    assert capfd.readouterr() == ("", "")


def test_text_notes_pass_and_several_problems_are_counted() -> None:
    """A text note under a new name is kept (documentation keys); the first of several problems
    is reported with how many more follow."""
    from bench.data.cards import check_card

    path = REPO / "datasets" / "her2st" / "card.toml"
    raw = _raw(path)
    raw["split"]["my_note"] = "held out by hand"
    raw["contact"] = "the lab"
    check_card(path, "her2st", raw)
    raw["split"].update(canvas="24x24", image_px="32", normalisation="cpm")
    with pytest.raises(BenchError, match=r"\[split\]\.canvas = '24x24' .*\(and 2 more problems\)"):
        check_card(path, "her2st", raw)


@pytest.mark.subprocess
def test_a_card_mistake_from_a_real_process_is_one_line_on_stderr(env: Path) -> None:
    """``python -m bench split`` as a user runs it, warnings shown: exit 2, stderr one line."""
    import os
    import subprocess
    import sys

    ds = syn.legacy_st(env / "cards", env / "data")
    ds.card["split"]["pooling"] = [2, "3"]
    ds.write_card()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "split", "--datasets", ds.name],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "default", "STSR_DATA_DIR": str(env / "data")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"bench: error: {ds.card_path}: [split].pooling[1] = '3' must be an integer (pooling "
        "factors k offered, integers >= 2); fix the card"
    ]
