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
        edit_card("", "reader", "visium_hd"),
        None,
        ("synth_st", "reader 'visium_hd' unknown"),
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


def argv(command: str, ds: syn.Dataset, tmp: Path, k: int | None = None) -> list[str]:
    args = [command, "--datasets", ds.name, "--data-dir", str(tmp / "data")]
    if command == "run":
        args += ["--methods", "bicubic", "--results-dir", str(tmp / "results")]
        args += ["--leaderboard", str(tmp / "board" / "LB.md"), "--no-progress"]
    return args + (["--k", str(k)] if k else [])


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
    if command == "run" and case.k is None:
        commit_split(ds, case.edit_split)
    if case.corrupt:
        case.corrupt(ds)
    if case.rehash:
        ds.rehash()
    else:
        ds.write_card()
    if command == "run" and case.k is None:
        sync_split_inputs(ds)
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

    status = cli.main(argv(command, ds, env, case.k))

    out, err = capsys.readouterr()
    assert status == 2, f"exit {status}; stderr: {err}"
    check_error(err, case)
    assert out == "", f"printed before failing: {out}"
    assert snapshot(env) == before, "files were written or changed"
    assert not (env / "results").exists() and not (env / "board").exists()
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
