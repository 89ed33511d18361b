"""A catalogue of bad data files: each gives exit status 2, one ``bench: error:`` line naming the
file and the problem, and writes nothing (no split file, results, leaderboard or cache entry).

Every case starts from a valid synthetic dataset (:mod:`synthetic`; the valid versions are checked
to pass first), corrupts one thing and recomputes the card's sha256 of the corrupted file, so the
reader rather than the checksum check meets the problem. ``run`` cases first commit a split built
from the valid data; when the corruption changes the card's checksums the split's ``inputs`` and
fingerprint are brought in line, as a regenerated split would be, so that ``load_spec`` passes and
the reader is what fails.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic as syn

from bench import cli
from bench.data.cards import load_card
from bench.data.splits import SplitSpec, fingerprint, make_split, write_spec

REPO = Path(__file__).resolve().parents[2]
EMBRYO = "visium_cytassist_mouse_embryo"
GENERATORS = {
    "st": syn.legacy_st,
    "h5ad": syn.h5ad,
    "tx": syn.transcripts,
    "embryo": lambda cards, data: syn.copy_real(real_root(), EMBRYO, cards, data, "embryo_copy"),
}


def real_root() -> Path:
    """The shared real data ($STSR_DATA_DIR, else ../shared/data); skips the test without it."""
    env = os.environ.get("STSR_DATA_DIR")
    path = Path(env) if env else (REPO.parent / "shared" / "data").resolve()
    if not (path / EMBRYO).is_dir():
        pytest.skip(f"real {EMBRYO} data not found under {path}; set STSR_DATA_DIR")
    return path


# ---------------------------------------------------------------- corruptions (edit in place)


def read_counts(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col=0)


def write_counts(path: Path, table: pd.DataFrame) -> None:
    with gzip.open(path, "wt") as fh:
        table.to_csv(fh, sep="\t")


def edit_counts(section: str, edit: Callable[[pd.DataFrame], pd.DataFrame]):
    def corrupt(ds: syn.Dataset) -> None:
        path = ds.file(section, "counts")
        write_counts(path, edit(read_counts(path)))

    return corrupt


def edit_spots(section: str, edit: Callable[[pd.DataFrame], pd.DataFrame]):
    def corrupt(ds: syn.Dataset) -> None:
        path = ds.file(section, "spots")
        edit(pd.read_csv(path, sep="\t")).to_csv(path, sep="\t", index=False)

    return corrupt


def edit_card(table: str, key: str, value):
    def corrupt(ds: syn.Dataset) -> None:
        if table:
            ds.card[table][key] = value
        else:
            ds.card[key] = value

    return corrupt


def truncate(rel: str, keep: float = 0.5):
    def corrupt(ds: syn.Dataset) -> None:
        path = ds.folder / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return corrupt


def random_bytes(rel: str):
    def corrupt(ds: syn.Dataset) -> None:
        path = ds.folder / rel
        path.write_bytes(np.random.default_rng(7).bytes(path.stat().st_size))

    return corrupt


def delete(rel: str):
    def corrupt(ds: syn.Dataset) -> None:
        (ds.folder / rel).unlink()

    return corrupt


def set_value(table: pd.DataFrame, value) -> pd.DataFrame:
    table = table.astype(object if isinstance(value, str) else float)
    table.iloc[3, 2] = value
    return table


def duplicate_row(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, table.iloc[[5]]])


def scale_pixels(factor: float):
    def edit(spots: pd.DataFrame) -> pd.DataFrame:
        spots[["pixel_x", "pixel_y"]] *= factor
        return spots

    return edit


def duplicate_barcode(ds: syn.Dataset) -> None:
    path = ds.folder / "spatial" / "tissue_positions.csv"
    lines = path.read_text().splitlines()
    lines.insert(5, lines[3])  # a data row again, further down
    path.write_text("\n".join(lines) + "\n")


def transcripts_outside(ds: syn.Dataset) -> None:
    path = ds.folder / "transcripts.parquet"
    frame = pd.read_parquet(path)
    frame.loc[10, "x_px"] = 4000.0
    frame.to_parquet(path)


def drop_gene(section: str, gene: str):
    return edit_counts(section, lambda t: t.drop(columns=[gene]))


def split_gene(gene: str):
    """Commit a split whose last gene is ``gene`` (fingerprint recomputed)."""

    def edit(spec: dict) -> None:
        spec["genes"] = [g for g in spec["genes"] if g != gene][:-1] + [gene]

    return edit


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Case:
    kind: str  # a GENERATORS key
    corrupt: Callable[[syn.Dataset], None] | None
    file: str | None  # basename the message must name (None: see needles)
    needles: tuple[str, ...]  # further substrings the message must hold
    commands: tuple[str, ...] = ("split", "run")
    rehash: bool = True  # recompute the card's sha256 after corrupting
    k: int | None = None  # --k
    edit_split: Callable[[dict], None] | None = None
    extra: tuple[str, ...] = ()  # further arguments ("{tmp}": the test's folder); last wins
    setup: Callable[[Path], None] | None = None  # prepares the folder (e.g. a file in the way)
    absent: tuple[str, ...] = ()  # substrings the message must not hold (credentials)


CASES = {
    # legacy ST
    "st-missing-counts": Case("st", delete("counts/A2.tsv.gz"), "A2.tsv.gz", ("missing",)),
    "st-truncated-gzip": Case(
        "st", truncate("counts/B1.tsv.gz"), "B1.tsv.gz", ("unreadable counts table",)
    ),
    "st-duplicate-spot-row": Case(
        "st", edit_spots("A1", duplicate_row), "A1_selection.tsv", ("duplicate spot",)
    ),
    "st-duplicate-counts-spot": Case(
        "st", edit_counts("A1", duplicate_row), "A1.tsv.gz", ("appears twice",)
    ),
    "st-spots-outside-image": Case(
        "st", edit_spots("B1", scale_pixels(10)), "B1_selection.tsv", ("outside", "misregistered")
    ),
    "st-card-pixel-size-2x": Case(
        "st", edit_card("lattice", "image_um_per_px", 20.0), "A1_selection.tsv", ("um/px",)
    ),
    "st-pixel-spacing-halved": Case(
        "st", edit_spots("A2", scale_pixels(0.5)), "A2_selection.tsv", ("um/px",)
    ),
    "st-negative-counts": Case(
        "st", edit_counts("A2", lambda t: set_value(t, -3)), "A2.tsv.gz", ("negative counts",)
    ),
    "st-non-integer-counts": Case(
        "st", edit_counts("A2", lambda t: set_value(t, 2.5)), "A2.tsv.gz", ("non-integer", "2.5")
    ),
    "st-non-numeric-counts": Case(
        "st", edit_counts("A1", lambda t: set_value(t, "abc")), "A1.tsv.gz", ("non-numeric",)
    ),
    "st-missing-count-value": Case(
        "st", edit_counts("A1", lambda t: set_value(t, "n/a")), "A1.tsv.gz", ("NaN",)
    ),
    "st-duplicate-gene": Case(
        "st",
        edit_counts("B1", lambda t: t.rename(columns={"Gene07": "Gene06"})),
        "B1.tsv.gz",
        ("Gene06", "more than once"),
    ),
    "st-empty-section": Case(
        "st",
        edit_spots("B1", lambda s: s.assign(selected=0)),
        "B1_selection.tsv",
        ("no spot under tissue",),
    ),
    "st-missing-spot-column": Case(
        "st",
        edit_spots("A1", lambda s: s.drop(columns=["selected"])),
        "A1_selection.tsv",
        ("missing column", "selected"),
    ),
    "st-corrupt-image": Case(
        "st", random_bytes("images/A2.jpg"), "A2.jpg", ("not a readable image",)
    ),
    "st-split-gene-not-in-section": Case(
        "st",
        drop_gene("B1", "Gene05"),
        None,
        ("section B1", "Gene05", "not measured"),
        commands=("run",),
        edit_split=split_gene("Gene05"),
    ),
    "st-checksum-mismatch": Case(
        "st",
        edit_counts("A1", lambda t: t + 1),
        "A1.tsv.gz",
        ("sha256", "does not match"),
        rehash=False,
    ),
    "st-unknown-reader": Case(
        "st",
        edit_card("", "reader", "no_such_reader"),
        "card.toml",
        ("synth_st", "reader = 'no_such_reader' is unknown", "legacy_st"),
    ),
    "st-pooling-not-offered": Case(
        "st", None, None, ("k = 5", "not offered by synth_st"), commands=("split",), k=5
    ),
    "st-pooling-without-split": Case(
        "st", None, "split-k5.json", ("no committed split",), commands=("run",), k=5
    ),
    # Space Ranger (a copy of the real CytAssist embryo)
    "spaceranger-duplicate-barcode": Case(
        "embryo",
        duplicate_barcode,
        "tissue_positions.csv",
        ("appears more than once",),
        commands=("split",),
    ),
    "spaceranger-truncated-matrix": Case(
        "embryo",
        truncate("filtered_feature_bc_matrix/matrix.mtx.gz"),
        "matrix.mtx.gz",
        ("unreadable matrix",),
        commands=("split",),
    ),
    # transcript tables
    "transcripts-corrupt-parquet": Case(
        "tx",
        random_bytes("transcripts.parquet"),
        "transcripts.parquet",
        ("unreadable transcript table",),
    ),
    "transcripts-outside-image": Case(
        "tx", transcripts_outside, "transcripts.parquet", ("outside", "dapi.png")
    ),
    # AnnData
    "h5ad-truncated": Case("h5ad", truncate("B1.h5ad"), "B1.h5ad", ("not a readable .h5ad",)),
}

# ---------------------------------------------------------------- the wider catalogue (issue 16)
# Options, cards, readers, images, caches, records and outputs: each case is run like the ones
# above (exit 2, one line, no traceback, nothing written or changed under the test's folder).


def opt(*args: str, needles: tuple[str, ...], command: str = "run", **kw) -> Case:
    """A bad command-line option on the valid legacy ST dataset."""
    return Case("st", None, kw.pop("file", None), needles, commands=(command,), extra=args, **kw)


def put_file(rel: str, text: str = "x"):
    def setup(tmp: Path) -> None:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)

    return setup


def put_dir(rel: str):
    return lambda tmp: (tmp / rel).mkdir(parents=True, exist_ok=True)


def put_record(text: str):
    return put_file("results/synth_st/bicubic/seed-0.json", text)


def drop_table(name: str):
    def corrupt(ds: syn.Dataset) -> None:
        del ds.card[name]

    return corrupt


def drop_key(table: str, key: str):
    def corrupt(ds: syn.Dataset) -> None:
        del ds.card[table][key]

    return corrupt


def pool_whole_canvas(ds: syn.Dataset) -> None:
    """Pooling by the canvas's own size: a 1 x 1 LR map."""
    ds.card["split"]["pooling"] = [ds.card["split"]["canvas"][0]]
    ds.card["split"]["default_pooling"] = ds.card["split"]["canvas"][0]


def edit_section(section: str, key: str, value):
    def corrupt(ds: syn.Dataset) -> None:
        ds.card["sections"][section][key] = value

    return corrupt


def rename_file_key(old: str, new: str):
    def corrupt(ds: syn.Dataset) -> None:
        ds.card["files"] = {(new if k == old else k): v for k, v in ds.card["files"].items()}
        section, key = next(
            (s, k) for s, e in ds.card["sections"].items() for k, v in e.items() if v == old
        )
        ds.card["sections"][section][key] = new

    return corrupt


def edit_bytes(rel: str, edit: Callable[[bytes], bytes]):
    def corrupt(ds: syn.Dataset) -> None:
        path = ds.folder / rel
        path.write_bytes(edit(path.read_bytes()))

    return corrupt


def edit_parquet(edit: Callable[[pd.DataFrame], pd.DataFrame]):
    def corrupt(ds: syn.Dataset) -> None:
        path = ds.folder / "transcripts.parquet"
        edit(pd.read_parquet(path)).to_parquet(path)

    return corrupt


def set_column(name: str, value):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame[name] = frame[name].astype(str if isinstance(value, str) else float)
        frame.loc[frame.index[3], name] = value
        return frame

    return edit


def tiny_image(rel: str, size=(4, 4)):
    def corrupt(ds: syn.Dataset) -> None:
        from PIL import Image

        path = ds.folder / rel
        Image.new("RGB", size).save(path, format=Image.open(path).format)

    return corrupt


PASSWORD = "hunter2"
TMP = "{tmp}"
WIDE = {
    # -- run options
    "opt-unknown-method": opt("--methods", "sr9000", needles=("unknown method 'sr9000'",)),
    "opt-empty-methods": opt("--methods", " , ", needles=("no method named",)),
    "opt-one-unknown-of-two": opt("--methods", "bicubic,nope", needles=("'nope'",)),
    "opt-unknown-dataset": opt("--datasets", "nope", needles=("unknown dataset 'nope'",)),
    "opt-dataset-path": opt("--datasets", "../etc", needles=("unknown dataset",)),
    "opt-negative-seed": opt("--seeds", "-1", needles=("negative",)),
    "opt-seed-text": opt("--seeds", "x", needles=("not an integer",)),
    "opt-seed-float": opt("--seeds", "1.5", needles=("not an integer",)),
    "opt-seeds-none": opt("--seeds", needles=("expected at least one argument",)),
    "opt-draws-zero": opt("--draws", "0", needles=("positive integer",)),
    "opt-draws-negative": opt("--samples", "-2", needles=("positive integer",)),
    "opt-draws-text": opt("--draws", "many", needles=("positive integer",)),
    "opt-k-zero": opt("--k", "0", needles=("positive integer",)),
    "opt-k-text": opt("--scale", "x2", needles=("positive integer",)),
    "opt-k-not-offered": opt("--k", "3", needles=("split-k3.json",)),
    "opt-timeout-zero": opt("--timeout", "0", needles=("positive number of seconds",)),
    "opt-timeout-nan": opt("--timeout", "nan", needles=("positive number of seconds",)),
    "opt-timeout-inf": opt("--timeout", "inf", needles=("positive number of seconds",)),
    "opt-timeout-text": opt("--timeout", "1h", needles=("positive number of seconds",)),
    "opt-max-memory-zero": opt("--max-memory", "0", needles=("'0' is not a memory size",)),
    "opt-max-memory-negative": opt("--max-memory", "-1G", needles=("--max-memory",)),
    "opt-max-memory-text": opt("--max-memory", "lots", needles=("'lots' is not a memory size",)),
    "opt-max-memory-two-points": opt(
        "--max-memory", "1.5.5G", needles=("'1.5.5G' is not a memory size",)
    ),
    "opt-max-memory-tiny": opt("--max-memory", "1K", needles=("less than a cell needs",)),
    "opt-preset": opt("--preset", "huge", needles=("invalid choice", "run --help")),
    "opt-executor": opt("--executor", "dask", needles=("invalid choice",)),
    "opt-unknown-option": opt("--bogus", needles=("unrecognized arguments",)),
    "opt-ray-address-garbage": opt(
        "--executor", "ray", "--ray-address", "not an address", needles=("host:port",)
    ),
    "opt-ray-address-closed-port": opt(
        "--executor", "ray", "--ray-address", "ray://127.0.0.1:9", needles=("within 10 s",)
    ),
    "opt-ray-address-password": opt(
        "--executor",
        "ray",
        "--ray-address",
        f"ray://u:{PASSWORD}@127.0.0.1:9",
        needles=("u:***@",),
        absent=(PASSWORD,),
    ),
    "opt-data-dir-missing": opt("--data-dir", "/nonexistent/data", needles=("missing",)),
    "opt-data-dir-file": opt(
        "--data-dir", f"{TMP}/afile", needles=("missing",), setup=put_file("afile")
    ),
    # -- outputs: checked before anything is created
    "out-results-is-file": opt(
        "--results-dir",
        f"{TMP}/afile",
        needles=("results dir", "not writable"),
        setup=put_file("afile"),
    ),  # fmt: skip
    "out-results-under-file": opt(
        "--results-dir",
        f"{TMP}/afile/results",
        needles=("not writable",),
        setup=put_file("afile"),
    ),  # fmt: skip
    "out-leaderboard-is-folder": opt(
        "--leaderboard", f"{TMP}/adir", needles=("is a folder",), setup=put_dir("adir")
    ),
    "out-leaderboard-trailing-slash": opt(
        "--leaderboard", f"{TMP}/board/", needles=("is a folder",)
    ),
    "out-leaderboard-under-file": opt(
        "--leaderboard",
        f"{TMP}/afile/LB.md",
        needles=("leaderboard file", "not writable"),
        setup=put_file("afile"),
    ),  # fmt: skip
    "out-sqlite-store-is-folder": opt(
        "--tracking-uri",
        f"sqlite:///{TMP}/adir",
        needles=("SQLite store", "a folder"),
        setup=put_dir("adir"),
    ),  # fmt: skip
    "out-sqlite-store-under-file": opt(
        "--tracking-uri",
        f"sqlite:///{TMP}/afile/m.db",
        needles=("SQLite store",),
        setup=put_file("afile"),
    ),  # fmt: skip
    "out-sqlite-store-with-bad-leaderboard": opt(
        "--tracking-uri",
        f"sqlite:///{TMP}/store/m.db",
        "--leaderboard",
        f"{TMP}/adir",
        needles=("is a folder",),
        setup=put_dir("adir"),
    ),  # fmt: skip  (the explicit store is not created before the leaderboard is checked)
    "out-sqlite-two-slashes": opt(
        "--tracking-uri", "sqlite://m.db", needles=("names no SQLite file",)
    ),
    "out-tracking-unknown-scheme": opt(
        "--tracking-uri", "ftp://host/store", needles=("unknown scheme 'ftp'",)
    ),
    "out-tracking-no-scheme": opt("--tracking-uri", "mlflow.db", needles=("unknown scheme",)),
    "out-tracking-closed-port": opt(
        "--tracking-uri", "http://127.0.0.1:9", needles=("cannot be used",)
    ),
    "out-tracking-password": opt(
        "--tracking-uri",
        f"http://bob:{PASSWORD}@127.0.0.1:9",
        needles=("bob:***@",),
        absent=(PASSWORD,),
    ),  # fmt: skip
    "out-tracking-token": opt(
        "--tracking-uri",
        f"http://127.0.0.1:9/?token={PASSWORD}",
        needles=("token=***",),
        absent=(PASSWORD,),
    ),  # fmt: skip
    # -- other commands
    "cmd-unknown": opt(needles=("invalid choice",), command="bogus"),
    "cmd-leaderboard-no-results": opt(
        "--results-dir",
        "/nonexistent/results",
        needles=("does not exist",),
        command="leaderboard",
    ),  # fmt: skip
    "cmd-leaderboard-is-folder": opt(
        "--leaderboard",
        f"{TMP}/adir",
        needles=("is a folder",),
        command="leaderboard",
        setup=lambda t: (put_dir("adir")(t), put_dir("results")(t)),
    ),  # fmt: skip
    "cmd-export-no-method": opt(needles=("required", "--method"), command="export"),
    "cmd-export-unknown-method": opt(
        "--method", "nope", "--out", "x.h5ad", needles=("one registered method",), command="export"
    ),
    "cmd-export-two-methods": opt(
        "--method",
        "bicubic,mean",
        "--out",
        "x.h5ad",
        needles=("one registered method",),
        command="export",
    ),
    "cmd-export-out-folder": opt(
        "--method",
        "bicubic",
        "--out",
        f"{TMP}/adir",
        needles=("a folder",),
        command="export",
        setup=put_dir("adir"),
    ),  # fmt: skip
    "cmd-export-no-prediction": opt(
        "--method",
        "bicubic",
        "--out",
        f"{TMP}/x.h5ad",
        needles=("bench run",),
        command="export",
    ),  # fmt: skip
    "cmd-export-negative-seed": opt(
        "--method",
        "bicubic",
        "--seed",
        "-4",
        "--out",
        "x.h5ad",
        needles=("negative",),
        command="export",
    ),
    "cmd-split-k-zero": opt("--k", "0", needles=("positive integer",), command="split"),
    "cmd-split-unknown-dataset": opt(
        "--datasets", "x/../y", needles=("unknown dataset",), command="split"
    ),
    # -- records (the leaderboard reads them)
    "record-not-json": opt(
        needles=("seed-0.json", "not a record"),
        command="leaderboard",
        setup=put_record("{not json"),
    ),  # fmt: skip
    "record-missing-keys": opt(
        needles=("seed-0.json", "not a record"),
        command="leaderboard",
        setup=put_record('{"schema": 1, "status": "ok"}'),
    ),  # fmt: skip
    "record-wrong-types": opt(
        needles=("seed-0.json", "not a record"),
        command="leaderboard",
        setup=put_record(
            '{"schema": 1, "dataset": "d", "method": "m", "seed": 0, "split": "x", '
            '"metrics": [1], "status": "ok"}'
        ),
    ),  # fmt: skip
    "record-ok-without-metrics": opt(
        needles=("seed-0.json", "not a record"),
        command="leaderboard",
        setup=put_record(
            '{"schema": 1, "dataset": "d", "method": "m", "seed": 0, "status": "ok"}'
        ),
    ),  # fmt: skip
    "record-unknown-schema": opt(
        needles=("seed-0.json", "not a record"),
        command="leaderboard",
        setup=put_record('{"schema": 99, "dataset": "d", "method": "m", "seed": 0}'),
    ),  # fmt: skip
    # -- fetch
    "fetch-http-mirror": Case(
        "st",
        lambda ds: (delete("counts/A1.tsv.gz")(ds), _mirror(ds, "http://h/{path}")),
        "card.toml",
        ("only https",),
        commands=("fetch",),
        rehash=False,
    ),  # fmt: skip
    "fetch-file-mirror": Case(
        "st",
        lambda ds: (delete("counts/A1.tsv.gz")(ds), _mirror(ds, "file:///etc/{path}")),
        "card.toml",
        ("only https",),
        commands=("fetch",),
        rehash=False,
    ),  # fmt: skip
    "fetch-traversal": Case(
        "st",
        rename_file_key("counts/A1.tsv.gz", "../../escaped.tsv.gz"),
        None,
        ("paths must be relative",),
        commands=("fetch", "split", "run"),
        rehash=False,
    ),  # fmt: skip
    # -- cards
    "card-not-toml": Case(
        "st",
        None,
        "card.toml",
        ("not valid TOML",),
        setup=put_file("cards/synth_st/card.toml", "name = [oops"),
    ),  # fmt: skip
    "card-no-split-table": Case("st", drop_table("split"), "card.toml", ("[split]",)),
    "card-no-files-table": Case(
        "st", drop_table("files"), "card.toml", ("[files]",), rehash=False
    ),
    "card-no-sections-table": Case("st", drop_table("sections"), "card.toml", ("[sections]",)),
    "card-canvas-text": Case(
        "st", edit_card("split", "canvas", "24x24"), "card.toml", ("canvas",)
    ),
    "card-image-px-zero": Case(
        "st", edit_card("split", "image_px", 0), "card.toml", ("image_px",)
    ),
    "card-genes-n-text": Case("st", edit_card("genes", "n", "fifty"), "card.toml", ("n",)),
    "card-pooling-zero": Case("st", edit_card("split", "pooling", [0]), "card.toml", ("pooling",)),
    # -- round three: whole tables, degenerate pooling, card keys checked before any data
    "card-no-lattice-table": Case(
        "st", drop_table("lattice"), "card.toml", ("missing table [lattice]", "pitch_um")
    ),
    "card-no-lattice-pitch": Case(
        "st", drop_key("lattice", "pitch_um"), "card.toml", ("missing key [lattice].pitch_um",)
    ),
    "h5ad-no-lattice-table": Case(
        "h5ad", drop_table("lattice"), "card.toml", ("missing table [lattice]", "h5ad reader")
    ),
    "card-lattice-not-table": Case(
        "st", edit_card("", "lattice", "square"), "card.toml", ("[lattice]", "must be a table")
    ),
    "card-lattice-kind-unknown": Case(
        "st", edit_card("lattice", "kind", "hexagonal"), "card.toml", ("kind", "unknown")
    ),
    "card-pooling-whole-canvas": Case(
        "st", pool_whole_canvas, "card.toml", ("1 x 1 LR map", "at least 2 x 2")
    ),
    "card-genes-not-table": Case("st", edit_card("", "genes", 5), "card.toml", ("[genes]",)),
    "card-sections-empty": Case(
        "st", edit_card("", "sections", {}), "card.toml", ("[sections] is empty",), rehash=False
    ),
    "card-name-differs": Case(
        "st", edit_card("", "name", "someone_else"), "card.toml", ("folder",)
    ),
    "card-qc-nmads-negative": Case(
        "st", edit_card("split", "qc_nmads", -1), "card.toml", ("qc_nmads",)
    ),
    "card-normalisation-unknown": Case(
        "st", edit_card("split", "normalisation", "zscore"), "card.toml", ("normalisation",)
    ),
    "card-pixel-size-absurd": Case(
        "st", edit_card("lattice", "image_um_per_px", 1e6), "card.toml", ("image_um_per_px",)
    ),
    "tx-old-format-key": Case(
        "tx", edit_card("read", "format", "xenium"), "card.toml", ("format", 'reader = "xenium"')
    ),
    "opt-jobs-zero": opt("--jobs", "0", needles=("positive integer",)),
    "opt-jobs-text": opt("--jobs", "two", needles=("positive integer",)),
    "card-pitch-negative": Case(
        "st", edit_card("lattice", "pitch_um", -200), "card.toml", ("pitch_um",)
    ),
    "card-section-absolute-path": Case(
        "st",
        edit_section("A1", "counts", "/etc/passwd"),
        None,
        ("paths must be relative",),
        rehash=False,
    ),  # fmt: skip
    "card-section-traversal": Case(
        "st",
        edit_section("A1", "image", "../../../etc/hostname"),
        None,
        ("paths must be relative",),
        rehash=False,
    ),  # fmt: skip
    "card-files-traversal": Case(
        "st",
        rename_file_key("images/A1.jpg", "../outside.jpg"),
        None,
        ("paths must be relative",),
        rehash=False,
    ),  # fmt: skip
    "card-unknown-test-section": Case(
        "st", edit_card("split", "test", ["Z9"]), "card.toml", ("Z9",)
    ),
    # -- legacy ST readers and images
    "st-counts-2-to-63": Case(
        "st",
        edit_counts("A2", lambda t: set_value(t, "9223372036854775808")),
        "A2.tsv.gz",
        ("count too large", "spot"),
    ),  # fmt: skip
    "st-counts-1e30": Case(
        "st", edit_counts("A2", lambda t: set_value(t, 1e30)), "A2.tsv.gz", ("too large",)
    ),
    "st-counts-infinite": Case(
        "st", edit_counts("B1", lambda t: set_value(t, "inf")), "B1.tsv.gz", ("infinite", "spot")
    ),
    "st-counts-negative-names-spot": Case(
        "st", edit_counts("A1", lambda t: set_value(t, -1)), "A1.tsv.gz", ("spot", "Gene02")
    ),
    "st-counts-empty-file": Case(
        "st", edit_bytes("counts/A1.tsv.gz", lambda b: b""), "A1.tsv.gz", ()
    ),
    "st-counts-not-gzip": Case(
        "st", edit_bytes("counts/A1.tsv.gz", lambda b: b"spot\\tG\\n1x1\\t3\\n"), "A1.tsv.gz", ()
    ),
    "st-spot-coordinate-text": Case(
        "st",
        edit_spots("A1", lambda s: s.astype({"x": object}).assign(x=["a"] + list(s.x[1:]))),
        "A1_selection.tsv",
        (),
    ),  # fmt: skip
    "st-pixel-coordinate-text": Case(
        "st",
        edit_spots(
            "A2",
            lambda s: s.astype({"pixel_x": object}).assign(pixel_x=["abc"] + list(s.pixel_x[1:])),
        ),
        "A2_selection.tsv",
        (),
    ),  # fmt: skip
    "st-pixel-coordinate-nan": Case(
        "st",
        edit_spots("A2", lambda s: s.assign(pixel_y=[np.nan] + list(s.pixel_y[1:]))),
        "A2_selection.tsv",
        (),
    ),  # fmt: skip
    "st-truncated-jpeg": Case(
        "st", truncate("images/B1.jpg", 0.6), "B1.jpg", ("image",), commands=("split", "run")
    ),
    "st-empty-image": Case("st", edit_bytes("images/A1.jpg", lambda b: b""), "A1.jpg", ()),
    "st-image-too-small": Case("st", tiny_image("images/A1.jpg"), None, ()),
    "st-spots-empty-table": Case(
        "st", edit_bytes("spots/A1_selection.tsv", lambda b: b""), "A1_selection.tsv", ()
    ),
    # -- AnnData
    "h5ad-random-bytes": Case("h5ad", random_bytes("A1.h5ad"), "A1.h5ad", ()),
    "h5ad-empty": Case("h5ad", edit_bytes("A2.h5ad", lambda b: b""), "A2.h5ad", ()),
    "h5ad-corrupt-png": Case("h5ad", random_bytes("B1.png"), "B1.png", ()),
    "h5ad-truncated-png": Case("h5ad", truncate("A1.png", 0.5), "A1.png", ()),
    # -- transcript tables
    "tx-x-text": Case(
        "tx", edit_parquet(set_column("x_px", "far")), "transcripts.parquet", ("non-numeric",)
    ),
    "tx-x-nan": Case("tx", edit_parquet(set_column("y_px", np.nan)), "transcripts.parquet", ()),
    "tx-x-infinite": Case(
        "tx", edit_parquet(set_column("x_px", np.inf)), "transcripts.parquet", ()
    ),
    "tx-no-gene-column": Case(
        "tx", edit_parquet(lambda f: f.drop(columns=["gene"])), "transcripts.parquet", ("gene",)
    ),
    "tx-truncated-parquet": Case(
        "tx", truncate("transcripts.parquet", 0.7), "transcripts.parquet", ()
    ),
    "tx-empty-table": Case("tx", edit_parquet(lambda f: f.iloc[:0]), "transcripts.parquet", ()),
    "tx-corrupt-image": Case("tx", random_bytes("dapi.png"), "dapi.png", ()),
}


def _mirror(ds: syn.Dataset, url: str) -> None:
    ds.card["source"]["mirrors"] = [url]


CASES.update(WIDE)


PARAMS = [
    pytest.param(name, command, id=f"{name}-{command}")
    for name, case in CASES.items()
    for command in case.commands
]


# ---------------------------------------------------------------- harness


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private cards, data and cache folders under ``tmp_path``."""
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    monkeypatch.setenv("STSR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def make(kind: str, tmp: Path) -> syn.Dataset:
    return GENERATORS[kind](tmp / "cards", tmp / "data")


def argv(
    command: str, ds: syn.Dataset, tmp: Path, k: int | None = None, extra: tuple[str, ...] = ()
) -> list[str]:
    data = ["--data-dir", str(tmp / "data")]
    results = ["--results-dir", str(tmp / "results")]
    board = ["--leaderboard", str(tmp / "board" / "LB.md")]
    if command in ("split", "fetch"):
        args = [command, "--datasets", ds.name, *data]
    elif command == "run":
        args = ["run", "--datasets", ds.name, *data, "--methods", "bicubic", *results, *board]
        args.append("--no-progress")
    elif command == "leaderboard":
        args = ["leaderboard", *results, *board]
    elif command == "export":
        args = ["export", "--dataset", ds.name, *data, *results]
    else:
        args = [command]
    args += ["--k", str(k)] if k else []
    return args + [a.replace("{tmp}", str(tmp)) for a in extra]


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its size, mtime and content hash."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns, digest)
    return out


def commit_split(ds: syn.Dataset, edit: Callable[[dict], None] | None = None) -> None:
    """Write ``split-k2.json`` from the (still valid) data, optionally edited, re-fingerprinted."""
    card = load_card(ds.name)
    spec = make_split(card, ds.data, 2)
    if edit:
        raw = spec.to_json()
        edit(raw)
        raw["fingerprint"] = fingerprint(raw)
        spec = SplitSpec.from_json(raw)
    write_spec(card, spec)


def sync_split_inputs(ds: syn.Dataset) -> None:
    """Give the committed split the card's current checksums (as regenerating it would)."""
    path = ds.card_dir / "split-k2.json"
    spec = json.loads(path.read_text())
    if spec["inputs"] != ds.card["files"]:
        spec["inputs"] = dict(ds.card["files"])
        spec["fingerprint"] = fingerprint(spec)
        path.write_text(json.dumps(spec, indent=1) + "\n")


def prepare(name: str, command: str, tmp: Path) -> syn.Dataset:
    case = CASES[name]
    ds = make(case.kind, tmp)
    committed = command in ("run", "export") and case.k is None
    if committed:
        commit_split(ds, case.edit_split)
    if case.corrupt:
        case.corrupt(ds)
    if case.rehash:
        ds.rehash()
    else:
        ds.write_card()
    if committed and (ds.card_dir / "split-k2.json").is_file() and "files" in ds.card:
        sync_split_inputs(ds)
    if case.setup:
        case.setup(tmp)
    return ds


def check_error(err: str, case: Case) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("bench: error: "), line
    if case.file:
        assert case.file in line, f"{case.file!r} not named: {line}"
    for needle in case.needles:
        assert needle in line, f"{needle!r} not in: {line}"
    for secret in case.absent:
        assert secret not in line, f"{secret!r} shown: {line}"
    assert "Traceback" not in line
    return line


# ---------------------------------------------------------------- tests


def test_valid_synthetic_datasets_split_and_run(env: Path, capsys) -> None:
    """The uncorrupted datasets pass, so every failure below is the corruption's doing."""
    names = [make(kind, env).name for kind in ("st", "h5ad", "tx")]
    for name in names:
        assert cli.main(["split", "--datasets", name, "--data-dir", str(env / "data")]) == 0
        assert (env / "cards" / name / "split-k2.json").is_file()
    ds = syn.Dataset(",".join(names), env / "cards", env / "data")
    assert cli.main(argv("run", ds, env)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "3 cell(s), 0 failed" in out
    assert (env / "board" / "LB.md").is_file() and any((env / "cache").iterdir())


def test_valid_spaceranger_copy_splits(env: Path, capsys) -> None:
    ds = make("embryo", env)
    assert cli.main(argv("split", ds, env)) == 0, capsys.readouterr().err
    assert (ds.card_dir / "split-k2.json").is_file()


@pytest.mark.parametrize("name,command", PARAMS)
def test_bad_data_exit_2_one_line_nothing_written(name, command, env: Path, capsys) -> None:
    case = CASES[name]
    ds = prepare(name, command, env)
    before = snapshot(env)
    capsys.readouterr()

    status = cli.main(argv(command, ds, env, case.k, case.extra))

    out, err = capsys.readouterr()
    assert status == 2, f"exit {status}; stderr: {err}"
    check_error(err, case)
    assert out == "", f"printed before failing: {out}"
    assert snapshot(env) == before, "files were written or changed"
    for out in ("results", "board", "store"):
        assert out in before or not (env / out).exists(), f"{out} was created"
    assert not (env / "cache").exists() or not any((env / "cache").iterdir())


def test_real_process_exits_2(env: Path) -> None:
    """The installed entry point, as a user runs it: status 2 and one line, stdout empty."""
    case = CASES["st-truncated-gzip"]
    ds = prepare("st-truncated-gzip", "run", env)
    before = snapshot(env)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *argv("run", ds, env)],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "default"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    check_error(proc.stderr, case)
    assert proc.stdout == ""
    assert snapshot(env) == before


# ---------------------------------------------------------------- the split cache


def test_a_byte_flipped_input_is_not_served_from_the_cache(env: Path, capsys) -> None:
    """Same size, same mtime, other bytes: refused by its checksum, not served from the cache."""
    from bench.data import cache

    ds = make("st", env)
    commit_split(ds)
    cache.load(load_card(ds.name), ds.data, 2)
    assert len(list((env / "cache").iterdir())) == 1
    path = ds.folder / "images" / "A1.jpg"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = snapshot(env)
    capsys.readouterr()
    assert cli.main(argv("run", ds, env)) == 2
    line = check_error(capsys.readouterr().err, Case("st", None, "A1.jpg", ("sha256",)))
    assert "does not match" in line and snapshot(env) == before


def test_a_truncated_cache_file_is_rebuilt(env: Path) -> None:
    from bench.data import cache

    ds = make("st", env)
    commit_split(ds)
    card = load_card(ds.name)
    fresh = cache.load(card, ds.data, 2)
    (cached,) = (env / "cache").iterdir()
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 3])
    again = cache.load(card, ds.data, 2)
    assert again.spec == fresh.spec
    np.testing.assert_array_equal(again.truth.hr, fresh.truth.hr)
    assert cached.stat().st_size > 1000 and cache.load(card, ds.data, 2).spec == fresh.spec
