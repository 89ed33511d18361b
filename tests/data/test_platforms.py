"""Transcript tables from each imaging platform in its real column layout (names, units, control
probe names, coordinate offsets), read through user cards without editing the data; the scale
check; band assignment that honours ``test_fraction``.

The tables come from :mod:`synthetic` (``merscope``, ``cosmx``, ``generic_table``); each test
recomputes the expected bins from the table itself, so a reader that drops, shifts or rescales
transcripts fails.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic as syn

from bench.data.cards import load_card
from bench.data.regions import choose_test_tiles, count_test_tiles
from bench.data.section import Section
from bench.data.splits import card_sections, read_sections
from bench.errors import BenchError


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    monkeypatch.setenv("STSR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def read(ds: syn.Dataset) -> dict[str, Section]:
    card = load_card(ds.name)
    return read_sections(card, ds.data, card_sections(card))


def expected_bins(x_um: np.ndarray, y_um: np.ndarray, genes: np.ndarray, bin_um: float) -> dict:
    """{(row, col, gene): count} binned straight from the table."""
    frame = pd.DataFrame(
        {"r": np.floor(y_um / bin_um), "c": np.floor(x_um / bin_um), "g": genes}
    ).astype({"r": int, "c": int})
    return frame.value_counts().to_dict()


def section_bins(section: Section) -> dict:
    coo = section.counts.tocoo()
    return {
        (int(section.row[i]), int(section.col[i]), str(section.genes[j])): int(v)
        for i, j, v in zip(coo.row, coo.col, coo.data, strict=True)
    }


def edit(ds: syn.Dataset, table: str, **values) -> syn.Dataset:
    ds.card[table].update(values)
    ds.write_card()
    return ds


def message(ds: syn.Dataset) -> str:
    with pytest.raises(BenchError) as err:
        read(ds)
    text = str(err.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------- MERSCOPE


def test_merscope_as_written_blanks_dropped_transform_read(env: Path) -> None:
    ds = syn.merscope(env / "cards", env / "data")
    (section,) = read(ds).values()
    table = pd.read_csv(ds.folder / "detected_transcripts.csv", index_col=0)
    real = ~table["gene"].str.startswith("Blank-")
    assert (~real).sum() > 100  # the table does hold blank probes
    x_um = table["global_x"][real].to_numpy() - syn.MERSCOPE_OFFSET_UM[0]
    y_um = table["global_y"][real].to_numpy() - syn.MERSCOPE_OFFSET_UM[1]
    want = expected_bins(x_um, y_um, table["gene"][real].to_numpy(), 10)
    assert section_bins(section) == want
    assert not any(g.lower().startswith("blank") for g in section.genes)
    assert section.um_per_px == pytest.approx(1 / syn.MERSCOPE_PX_PER_UM, rel=1e-6)
    assert section.image_size == (2960, 1480)  # the 1/8 stored mosaic at image_scale 0.125
    assert f"{int((~real).sum()):,}" in section.notes[0] and "BLANK*" in section.notes[0]


def test_merscope_stated_pixel_size_must_agree_with_the_transform(env: Path) -> None:
    ds = edit(syn.merscope(env / "cards", env / "data"), "read", um_per_px=0.5)
    text = message(ds)
    assert "micron_to_mosaic_pixel_transform.csv" in text and "[read].um_per_px" in text


def test_controls_are_configurable_and_case_insensitive(env: Path) -> None:
    ds = edit(syn.merscope(env / "cards", env / "data"), "read", controls=["blank-*", "Gene19"])
    (section,) = read(ds).values()
    assert "Gene19" not in section.genes and "Gene18" in section.genes
    assert "blank-*" in section.notes[0] and "Gene19" in section.notes[0]


# ---------------------------------------------------------------- CosMx


def test_cosmx_fields_of_view_are_sections(env: Path) -> None:
    ds = syn.cosmx(env / "cards", env / "data")
    sections = read(ds)
    with gzip.open(ds.folder / "Run1000_S1_tx_file.csv.gz", "rt") as fh:
        table = pd.read_csv(fh)
    for fov in (1, 2):
        rows = table[(table["fov"] == fov) & ~table["target"].str.match(r"(NegPrb|FalseCode)")]
        um = syn.COSMX_UM_PER_PX
        want = expected_bins(
            rows["x_local_px"].to_numpy() * um, rows["y_local_px"].to_numpy() * um,
            rows["target"].to_numpy(), 20,
        )  # fmt: skip
        section = sections[f"fov{fov}"]
        assert section_bins(section) == want
        assert section.image.name == f"CellComposite_F{fov:03d}.jpg"
        assert "NegPrb*" in section.notes[0] and "FalseCode*" in section.notes[0]


def test_cosmx_local_coordinates_need_a_fov(env: Path) -> None:
    ds = syn.cosmx(env / "cards", env / "data")
    del ds.card["sections"]["fov1"]["fov"]
    ds.write_card()
    assert "set fov = N in [sections.fov1]" in message(ds)
    ds.card["sections"]["fov1"]["fov"] = 7
    ds.write_card()
    assert "fov = 7" in message(ds) and "[sections.fov1].fov" in message(ds)


def test_cosmx_global_coordinates_with_an_origin(env: Path) -> None:
    """The same FOV from global pixels: the FOV's corner as [sections].origin gives the same
    bins as local pixels."""
    ds = syn.cosmx(env / "cards", env / "data")
    local = read(ds)["fov2"]
    ds.card["read"]["columns"] = {"x": "x_global_px", "y": "y_global_px"}
    ds.card["sections"]["fov2"]["origin"] = [10_000.0 + syn.COSMX_FOV_PX[0], 20_000.0]
    ds.card["sections"]["fov1"]["origin"] = [10_000.0, 20_000.0]
    ds.write_card()
    assert section_bins(read(ds)["fov2"]) == section_bins(local)


# ---------------------------------------------------------------- any lab's table


def test_generic_table_with_offset_origin_and_gz(env: Path) -> None:
    ds = syn.generic_table(env / "cards", env / "data")
    (section,) = read(ds).values()
    table = pd.read_csv(ds.folder / "spots.tsv.gz", sep="\t")
    real = ~table["geneID"].str.startswith("negctrl")
    x0, y0 = syn.TABLE_ORIGIN_UM
    want = expected_bins(
        table["x_um"][real].to_numpy() - x0, table["y_um"][real].to_numpy() - y0,
        table["geneID"][real].to_numpy(), 10,
    )  # fmt: skip
    assert section_bins(section) == want
    assert "NEGCTRL_*" in section.notes[0]


def test_affine_in_the_card_equals_the_origin(env: Path) -> None:
    ds = syn.generic_table(env / "cards", env / "data")
    (by_origin,) = read(ds).values()
    x0, y0 = ds.card["read"].pop("origin")
    s = 1 / ds.card["read"]["um_per_px"]
    edit(ds, "read", affine=[[s, 0.0, -x0 * s], [0.0, s, -y0 * s]])
    (by_affine,) = read(ds).values()
    assert section_bins(by_affine) == section_bins(by_origin)


def test_offset_coordinates_without_origin_name_the_key(env: Path) -> None:
    ds = syn.generic_table(env / "cards", env / "data")
    ds.card["read"]["origin"] = [1300.0, 350.0]  # 100 um too far right: negative pixels
    ds.write_card()
    text = message(ds)
    assert "[read].origin" in text and "negative" in text and "1212" in text


def test_pixel_size_ten_times_too_large_everywhere_is_caught(env: Path) -> None:
    """The table is in micrometres; a pixel size 10x too large in [read] and [lattice] squeezes
    the transcripts into a tenth of the image: the scale check names the keys and the size."""
    ds = syn.generic_table(env / "cards", env / "data")
    ds.card["lattice"]["image_um_per_px"] = 5.0
    text = message(edit(ds, "read", um_per_px=5.0))
    assert "[read].um_per_px" in text and "[lattice].image_um_per_px" in text
    assert "reach only" in text
    suggested = float(re.search(r"\[read\]\.um_per_px ~ ([0-9.]+)", text).group(1))
    assert suggested == pytest.approx(0.5, rel=0.1), text


def test_unit_mistake_is_a_scale_error_not_zero_tiles(env: Path) -> None:
    ds = syn.generic_table(env / "cards", env / "data")
    text = message(edit(ds, "read", unit="px"))
    assert "[read].unit" in text and "reach only" in text


def test_scale_check_can_be_switched_off_for_a_small_region(env: Path) -> None:
    ds = syn.generic_table(env / "cards", env / "data")
    (section,) = read(edit(ds, "read", unit="px", min_tissue_cover=0)).values()
    assert section.in_tissue.any()


# ---------------------------------------------------------------- test share of tiles


def test_test_share_follows_test_fraction_with_two_wide_bands() -> None:
    origins = [(r, c) for r in (0, 8) for c in (0, 8, 16, 24)]  # 2 bands of 4 across rows
    held = choose_test_tiles(origins, long_axis=0, want=2)
    assert held == {(8, 16), (8, 24)}  # a quarter, the end of the last band, not half
    assert choose_test_tiles(origins, long_axis=1, want=2) == {(0, 24), (8, 24)}  # one whole band


def test_test_counts_share_out_one_fraction_over_sections() -> None:
    assert count_test_tiles([2, 2], 0.25) == [1, 0]
    assert count_test_tiles([26], 0.25) == [7] and count_test_tiles([23], 0.25) == [6]
    assert sum(count_test_tiles([4, 4, 4, 4], 0.25)) == 4
    assert count_test_tiles([1, 5], 0.9) == [0, 4]  # every section keeps a training tile


def test_cosmx_split_test_share_is_a_quarter(env: Path) -> None:
    from bench.data.regions import define_regions

    ds = syn.cosmx(env / "cards", env / "data")
    card = load_card(ds.name)
    layout = define_regions(read(ds), card.split)
    n = len(layout["train"]) + len(layout["test"])
    assert len(layout["test"]) == -(-n // 4), layout


# ---------------------------------------------------------------- gene rules beyond human symbols


def gene_section(genes: list[str], symbols: list[str] | None = None) -> Section:
    from scipy import sparse

    n = len(genes)
    counts = sparse.csr_matrix(np.tile(np.arange(n, 0, -1), (4, 1)))  # first gene highest
    return Section(
        id="s", counts=counts, genes=np.array(genes), row=np.array([0, 0, 1, 1]),
        col=np.array([0, 1, 0, 1]), in_tissue=np.ones(4, bool), to_pixel=np.eye(2, 3),
        image=np.zeros((4, 4), np.uint8), image_size=(4, 4), pitch_um=(1.0, 1.0), um_per_px=1.0,
        symbols=None if symbols is None else np.array(symbols),
    )  # fmt: skip


def test_mouse_mitochondrial_and_ribosomal_symbols_are_excluded() -> None:
    from bench.data.splits import select_genes

    section = gene_section(["mt-Co1", "Rpl13", "Rps6", "Actb", "Gapdh", "MT-ND1", "Mtor"])
    kept = select_genes([(section, (0, 0))], [section], (2, 2), 3, "log1p_cp10k")
    assert kept == ["Actb", "Gapdh", "Mtor"]


def test_ensembl_ids_use_the_symbols_of_the_data_or_the_card_table(env: Path) -> None:
    from bench.data.splits import select_genes

    ids = ["ENSMUSG00000064351", "ENSMUSG00000000740", "ENSMUSG00000029580", "ENSMUSG00000057666"]
    symbols = ["mt-Co1", "Rpl13", "Actb", "Gapdh"]
    bare = gene_section(ids)
    assert select_genes([(bare, (0, 0))], [bare], (2, 2), 2, "log1p_cp10k") == ids[:2]
    named = gene_section(ids, symbols)
    assert select_genes([(named, (0, 0))], [named], (2, 2), 2, "log1p_cp10k") == ids[2:]
    table = dict(zip(ids, symbols, strict=True))
    got = select_genes([(bare, (0, 0))], [bare], (2, 2), 2, "log1p_cp10k", symbols=table)
    assert got == ids[2:]


def test_gene_table_from_the_card_reads_features_tsv(env: Path) -> None:
    from bench.data.splits import gene_table

    ds = syn.generic_table(env / "cards", env / "data")
    with gzip.open(ds.folder / "features.tsv.gz", "wt") as fh:
        fh.write("ENSMUSG00000064351\tmt-Co1\tGene Expression\n")
        fh.write("ENSMUSG00000029580\tActb\tGene Expression\n")
    ds.card["genes"]["table"] = "features.tsv.gz"
    ds.card["files"]["features.tsv.gz"] = ""
    ds.rehash()
    table = gene_table(load_card(ds.name), ds.data)
    assert table == {"ENSMUSG00000064351": "mt-Co1", "ENSMUSG00000029580": "Actb"}
    del ds.card["files"]["features.tsv.gz"]
    ds.write_card()
    with pytest.raises(BenchError, match=r"\[genes\]\.table .*\[files\]"):
        load_card(ds.name)


def test_xenium_pixel_size_is_read_from_experiment_xenium(env: Path) -> None:
    ds = syn.generic_table(env / "cards", env / "data")
    (ds.folder / "experiment.xenium").write_text('{"pixel_size": 0.5, "run_name": "x"}')
    ds.card["sections"]["section"]["experiment"] = "experiment.xenium"
    ds.card["files"]["experiment.xenium"] = ""
    del ds.card["read"]["um_per_px"]
    ds.rehash()
    (section,) = read(ds).values()
    assert section.um_per_px == 0.5
    (ds.folder / "experiment.xenium").write_text('{"pixel_size": 0.2125}')
    ds.card["read"]["um_per_px"] = 0.5
    ds.rehash()
    assert "pixel_size 0.2125" in message(ds)


def test_split_prints_the_control_probes_it_dropped(env: Path, capsys) -> None:
    from bench import cli

    ds = syn.merscope(env / "cards", env / "data")
    assert cli.main(["split", "--datasets", ds.name, "--data-dir", str(ds.data)]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(ds.folder / "detected_transcripts.csv", index_col=0)
    dropped = int(table["gene"].str.startswith("Blank-").sum())
    assert f"{dropped:,}" in out and "BLANK*" in out


def test_a_checksum_mismatch_without_a_mirror_never_advises_deleting(env: Path) -> None:
    from bench.data.fetch import verify

    ds = syn.merscope(env / "cards", env / "data")
    assert not ds.card["source"].get("mirrors")
    with open(ds.folder / "detected_transcripts.csv", "a") as fh:
        fh.write("\n")  # the only copy, changed
    with pytest.raises(BenchError) as err:
        verify(load_card(ds.name), ds.data)
    text = str(err.value)
    assert "does not match" in text and "no mirror" in text and "delete" not in text
