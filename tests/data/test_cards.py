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
