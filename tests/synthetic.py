"""Tiny synthetic datasets for CLI tests: a card folder plus a data folder, built in a tmp dir.

:class:`Dataset` holds a card (a dict written as ``<cards>/<name>/card.toml``) and its files under
``<data>/<name>/``; :meth:`Dataset.rehash` recomputes every ``[files]`` sha256 and rewrites the
card, so a test can corrupt a file and still have the checksum check pass (the reader, not
:func:`bench.data.fetch.verify`, then meets the problem).

Generators (each returns a valid dataset: ``split`` and ``run`` succeed on it):

- :func:`legacy_st`: 2 train + 1 test sections on an 8 x 8 square lattice (200 um pitch, 20 px per
  step at 10 um/px), 20 genes of Poisson counts, spot tables and RGB JPEGs;
- :func:`h5ad`: the same sections as Visium-style ``.h5ad`` files (``array_row``/``array_col``,
  ``obsm["spatial"]`` in pixels) with PNG images;
- :func:`transcripts`: one section of random transcripts (a parquet table in pixels, 1 um/px,
  10 um bins) over a 400 x 200 px greyscale image, cut into tiles;
- :func:`copy_real`: a copy of a real dataset (card and files) under a new name.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
N_GENES = 20
GRID = 8  # spots per row and column (array x, y = 1 .. GRID)
PX_PER_STEP = 20  # 200 um pitch at 10 um/px
IMAGE_PX = PX_PER_STEP * (GRID + 2)  # square image holding every spot centre
SECTIONS = {"A1": "train", "A2": "train", "B1": "test"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
            + " }"
        )
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(data: dict[str, Any]) -> str:
    """Top-level scalars, then one ``[table]`` per dict; deeper dicts become inline tables."""
    lines = [
        f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)
    ]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]"]
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Dataset:
    """A synthetic dataset: ``card`` is written to ``cards/<name>/card.toml``, files live in
    ``data/<name>/``."""

    name: str
    cards: Path
    data: Path
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def card_dir(self) -> Path:
        return self.cards / self.name

    @property
    def card_path(self) -> Path:
        return self.card_dir / "card.toml"

    @property
    def folder(self) -> Path:
        return self.data / self.name

    def file(self, section: str, key: str) -> Path:
        """The file of a section's card entry (``counts``, ``spots``, ``image``, ...)."""
        return self.folder / self.card["sections"][section][key]

    def write_card(self) -> Path:
        self.card_dir.mkdir(parents=True, exist_ok=True)
        self.card_path.write_text(to_toml(self.card))
        return self.card_path

    def rehash(self) -> Path:
        """Recompute the sha256 of every existing ``[files]`` entry and rewrite the card."""
        self.card["files"] = {
            rel: sha256(self.folder / rel) if (self.folder / rel).is_file() else old
            for rel, old in self.card["files"].items()
        }
        return self.write_card()


def _counts(rng: np.random.Generator, n_spots: int) -> np.ndarray:
    """(spots, genes) Poisson counts, gene means from 0.5 to 30, every spot with counts."""
    means = np.geomspace(30.0, 0.5, N_GENES)
    counts = rng.poisson(means, size=(n_spots, N_GENES))
    counts[:, 0] = np.maximum(counts[:, 0], 1)
    return counts


def gene_names() -> list[str]:
    return [f"Gene{i:02d}" for i in range(N_GENES)]


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """(x, y) array coordinates of every lattice position, 1-based as in legacy ST."""
    y, x = np.mgrid[1 : GRID + 1, 1 : GRID + 1]
    return x.ravel(), y.ravel()


def _image(rng: np.random.Generator, mode: str = "RGB", size=(IMAGE_PX, IMAGE_PX)) -> Image.Image:
    """A smooth random H&E-ish (RGB) or DAPI-ish (L) picture."""
    w, h = size
    base = rng.integers(60, 230, size=(h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
    return im.convert(mode)


def _lattice_card(name: str, reader: str, sections: dict, files: dict) -> dict[str, Any]:
    return {
        "name": name,
        "title": f"synthetic {reader} dataset for tests",
        "platform": reader,
        "reader": reader,
        "citation": "synthetic",
        "licence": "synthetic",
        "source": {"repository": "none", "commit": "none", "mirrors": []},
        "lattice": {
            "kind": "square",
            "spot_diameter_um": 100,
            "pitch_um": 200,
            "image_um_per_px": 10.0,
        },
        "split": {
            "regions": "sections",
            "train": [s for s, role in SECTIONS.items() if role == "train"],
            "test": [s for s, role in SECTIONS.items() if role == "test"],
            "pooling": [2],
            "default_pooling": 2,
            "canvas": [GRID, GRID],
            "image_px": 4,
            "normalisation": "log1p_cp10k",
        },
        "genes": {"n": 5, "exclude_prefixes": ["MT-"], "rule": "top 5 by mean log1p-CP10k"},
        "sections": sections,
        "files": files,
    }


def legacy_st(cards: Path, data: Path, name: str = "synth_st", seed: int = 0) -> Dataset:
    """A valid legacy-ST dataset (module docstring); every spot but one corner is in tissue."""
    rng = np.random.default_rng(seed)
    ds = Dataset(name, cards, data)
    sections, files = {}, {}
    x, y = _grid()
    for sid in SECTIONS:
        entry = {
            "counts": f"counts/{sid}.tsv.gz",
            "spots": f"spots/{sid}_selection.tsv",
            "image": f"images/{sid}.jpg",
        }
        for rel in entry.values():
            (ds.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        index = [f"{a}x{b}" for a, b in zip(x, y, strict=True)]
        table = pd.DataFrame(_counts(rng, len(x)), index=index, columns=gene_names())
        with gzip.open(ds.folder / entry["counts"], "wt") as fh:
            table.to_csv(fh, sep="\t")
        selected = np.ones(len(x), dtype=int)
        selected[0] = 0
        spots = pd.DataFrame(
            {
                "x": x,
                "y": y,
                "new_x": x + 0.01,
                "new_y": y - 0.01,
                "pixel_x": x * PX_PER_STEP + 0.5,
                "pixel_y": y * PX_PER_STEP + 0.5,
                "selected": selected,
            }
        )
        spots.to_csv(ds.folder / entry["spots"], sep="\t", index=False)
        _image(rng).save(ds.folder / entry["image"], quality=90)
        sections[sid] = entry
        files.update(dict.fromkeys(entry.values(), ""))
    ds.card = _lattice_card(name, "legacy_st", sections, files)
    ds.rehash()
    return ds


def h5ad(cards: Path, data: Path, name: str = "synth_h5ad", seed: int = 1) -> Dataset:
    """A valid h5ad dataset: the legacy-ST layout as Visium-style AnnData files."""
    import anndata as ad
    from scipy import sparse

    rng = np.random.default_rng(seed)
    ds = Dataset(name, cards, data)
    ds.folder.mkdir(parents=True, exist_ok=True)
    sections, files = {}, {}
    x, y = _grid()
    for sid in SECTIONS:
        entry = {"h5ad": f"{sid}.h5ad", "image": f"{sid}.png"}
        obs = pd.DataFrame(
            {"array_row": y, "array_col": x, "in_tissue": np.ones(len(x), dtype=int)},
            index=[f"spot{i:03d}-{sid}" for i in range(len(x))],
        )
        adata = ad.AnnData(
            X=sparse.csr_matrix(_counts(rng, len(x)).astype(np.float32)),
            obs=obs,
            var=pd.DataFrame(index=gene_names()),
        )
        adata.obsm["spatial"] = np.c_[x, y].astype(np.float64) * PX_PER_STEP + 0.5
        adata.write_h5ad(ds.folder / entry["h5ad"])
        _image(rng).save(ds.folder / entry["image"])
        sections[sid] = entry
        files.update(dict.fromkeys(entry.values(), ""))
    ds.card = _lattice_card(name, "h5ad", sections, files)
    ds.card["read"] = {"spatial_unit": "px", "um_per_px": 10.0}
    ds.rehash()
    return ds


def transcripts(cards: Path, data: Path, name: str = "synth_tx", seed: int = 2) -> Dataset:
    """A valid transcript-table dataset: one 400 x 200 um section, 10 um bins, 8 x 8-bin tiles."""
    rng = np.random.default_rng(seed)
    ds = Dataset(name, cards, data)
    ds.folder.mkdir(parents=True, exist_ok=True)
    n = 40_000
    weights = np.geomspace(30.0, 0.5, N_GENES)
    frame = pd.DataFrame(
        {
            "gene": rng.choice(gene_names() + ["NegControl_1"], size=n, p=_p(weights)),
            "x_px": rng.uniform(0, 400, n),
            "y_px": rng.uniform(0, 200, n),
        }
    )
    frame.to_parquet(ds.folder / "transcripts.parquet")
    _image(rng, "L", (400, 200)).save(ds.folder / "dapi.png")
    ds.card = {
        "name": name,
        "title": "synthetic transcript table for tests",
        "platform": "xenium",
        "reader": "transcripts",
        "citation": "synthetic",
        "licence": "synthetic",
        "source": {"repository": "none", "commit": "none", "mirrors": []},
        "read": {
            "columns": {"gene": "gene", "x": "x_px", "y": "y_px"},
            "unit": "px",
            "um_per_px": 1.0,
            "bin_um": 10,
            "tissue_min_counts": 1,
        },
        "lattice": {"kind": "square", "pitch_um": 10, "image_um_per_px": 1.0},
        "split": {
            "regions": "tiles",
            "sections": ["section"],
            "canvas": [8, 8],
            "min_tissue": 0.25,
            "test_fraction": 0.25,
            "pooling": [2],
            "default_pooling": 2,
            "image_px": 4,
            "normalisation": "log1p_area",
        },
        "genes": {"n": 5, "exclude_prefixes": [], "rule": "top 5 by mean log1p(counts per bin)"},
        "sections": {"section": {"transcripts": "transcripts.parquet", "image": "dapi.png"}},
        "files": {"transcripts.parquet": "", "dapi.png": ""},
    }
    ds.rehash()
    return ds


def _p(weights: np.ndarray) -> np.ndarray:
    """Gene probabilities with a small share for one control probe."""
    p = np.r_[weights, weights.sum() * 0.01]
    return p / p.sum()


def copy_real(real_root: Path, real_name: str, cards: Path, data: Path, name: str) -> Dataset:
    """A copy of the real dataset ``real_name`` (its card and input files) named ``name``."""
    raw = tomllib.loads((REPO / "datasets" / real_name / "card.toml").read_text())
    raw["name"] = name
    ds = Dataset(name, cards, data, raw)
    for rel in raw["files"]:
        target = ds.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real_root / real_name / rel, target)  # copy bytes, not read-only modes
    ds.write_card()
    return ds


# ---------------------------------------------------------------- imaging platforms, real layouts


def _tissue_image(
    rng: np.random.Generator, size: tuple[int, int], tissue: tuple[float, float, float, float]
) -> np.ndarray:
    """(h, w) float in [0, 1]: a bright textured rectangle of tissue (x0, y0, x1, y1 as shares of
    the width and height) on a dark, slightly noisy background (a DAPI-like picture)."""
    w, h = size
    small = rng.uniform(0.5, 1.0, size=(h // 16 + 2, w // 16 + 2))
    texture = np.asarray(
        Image.fromarray(small.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR)
    )
    yy, xx = np.mgrid[0:h, 0:w]
    x0, y0, x1, y1 = tissue
    inside = (xx >= x0 * w) & (xx < x1 * w) & (yy >= y0 * h) & (yy < y1 * h)
    return np.where(inside, texture, 0.05 + 0.02 * rng.random((h, w)))


def _points_in(
    rng: np.random.Generator, n: int, width: float, height: float, tissue: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points inside the tissue rectangle of a ``width`` x ``height`` frame."""
    x0, y0, x1, y1 = tissue
    return rng.uniform(x0 * width, x1 * width, n), rng.uniform(y0 * height, y1 * height, n)


def _genes_with(rng: np.random.Generator, n: int, controls: list[str]) -> np.ndarray:
    """``n`` gene names: the synthetic genes (geometric weights) and ~2% of ``controls``."""
    weights = np.geomspace(30.0, 0.5, N_GENES)
    p = np.r_[weights, np.full(len(controls), weights.sum() * 0.02 / len(controls))]
    return rng.choice(gene_names() + controls, size=n, p=p / p.sum())


def _tiles_card(
    name: str, platform: str, reader: str, read: dict, sections: dict, files: dict
) -> dict:
    return {
        "name": name,
        "title": f"synthetic {platform} transcript table for tests",
        "platform": platform,
        "reader": reader,
        "citation": "synthetic",
        "licence": "synthetic",
        "source": {"repository": "none", "commit": "none", "mirrors": []},
        "read": read,
        "lattice": {"kind": "square", "pitch_um": read["bin_um"]},
        "split": {
            "regions": "tiles",
            "sections": list(sections),
            "canvas": [8, 8],
            "min_tissue": 0.25,
            "test_fraction": 0.25,
            "pooling": [2],
            "default_pooling": 2,
            "image_px": 4,
            "normalisation": "log1p_area",
        },
        "genes": {"n": 5, "exclude_prefixes": [], "rule": "top 5 by mean log1p(counts per bin)"},
        "sections": sections,
        "files": files,
    }


MERSCOPE_UM = (320.0, 160.0)  # region size in micrometres
MERSCOPE_PX_PER_UM = 9.259259  # micron_to_mosaic_pixel scale of a real MERSCOPE run (0.108 um/px)
MERSCOPE_OFFSET_UM = (-1534.25, 2087.5)  # stage coordinates of the mosaic's top-left corner
MERSCOPE_TISSUE = (0.05, 0.1, 0.95, 0.9)


def merscope(cards: Path, data: Path, name: str = "synth_merscope", seed: int = 3) -> Dataset:
    """A MERSCOPE region as Vizgen writes it: ``detected_transcripts.csv`` (an unnamed index
    column, barcode_id, global_x / global_y in micrometres of the stage, global_z, fov-local x / y
    in pixels, fov, gene, transcript_id, cell_id; ``Blank-*`` probes) and
    ``images/micron_to_mosaic_pixel_transform.csv`` (3 x 3, space separated) mapping micrometres
    to mosaic pixels with an offset. The DAPI mosaic is stored at 1/8 size (``image_scale``) as a
    16-bit TIFF to keep the test small; the card sets only the reader, bin size and the files."""
    rng = np.random.default_rng(seed)
    ds = Dataset(name, cards, data)
    (ds.folder / "images").mkdir(parents=True, exist_ok=True)
    n = 40_000
    ux, uy = _points_in(rng, n, *MERSCOPE_UM, MERSCOPE_TISSUE)
    gx, gy = ux + MERSCOPE_OFFSET_UM[0], uy + MERSCOPE_OFFSET_UM[1]
    fov = (ux // 100).astype(int) + 10 * (uy // 100).astype(int)
    genes = _genes_with(rng, n, [f"Blank-{i}" for i in range(1, 6)])
    frame = pd.DataFrame(
        {
            "barcode_id": rng.integers(0, 500, n),
            "global_x": gx,
            "global_y": gy,
            "global_z": rng.integers(0, 7, n).astype(float),
            "x": (ux % 100) * MERSCOPE_PX_PER_UM,
            "y": (uy % 100) * MERSCOPE_PX_PER_UM,
            "fov": fov,
            "gene": genes,
            "transcript_id": [f"ENST{i:011d}" for i in rng.integers(0, 10**9, n)],
            "cell_id": rng.integers(10**17, 10**18, n),
        }
    )
    frame.to_csv(ds.folder / "detected_transcripts.csv")  # the unnamed index column, as Vizgen's
    s = MERSCOPE_PX_PER_UM
    transform = np.array(
        [[s, 0.0, -MERSCOPE_OFFSET_UM[0] * s], [0.0, s, -MERSCOPE_OFFSET_UM[1] * s], [0, 0, 1]]
    )
    np.savetxt(ds.folder / "images" / "micron_to_mosaic_pixel_transform.csv", transform, "%.6f")
    size = (round(MERSCOPE_UM[0] * s / 8), round(MERSCOPE_UM[1] * s / 8))
    dapi = (_tissue_image(rng, size, MERSCOPE_TISSUE) * 40000).astype(np.uint16)
    Image.fromarray(dapi).save(ds.folder / "images" / "mosaic_DAPI_z3.tif")
    entry = {
        "transcripts": "detected_transcripts.csv",
        "image": "images/mosaic_DAPI_z3.tif",
        "image_scale": 0.125,
        "transform": "images/micron_to_mosaic_pixel_transform.csv",
    }
    files = dict.fromkeys([entry["transcripts"], entry["image"], entry["transform"]], "")
    read = {"bin_um": 10}
    ds.card = _tiles_card(name, "merscope", "merscope", read, {"region0": entry}, files)
    ds.rehash()
    return ds


COSMX_UM_PER_PX = 0.12028
COSMX_FOV_PX = (2048, 1536)  # a small field of view (real ones are 5472 x 3648 px)
COSMX_TISSUE = (0.0, 0.0, 1.0, 1.0)


def cosmx(cards: Path, data: Path, name: str = "synth_cosmx", seed: int = 4) -> Dataset:
    """Two CosMx fields of view as AtoMx exports them: one ``*_tx_file.csv.gz`` (fov, cell_ID,
    x_global_px, y_global_px, x_local_px, y_local_px, z, target, CellComp; ``NegPrb*`` and
    ``FalseCode*`` probes) and one ``CellComposite/CellComposite_F00<n>.jpg`` per FOV; the card
    makes each FOV a section (``fov = n``) and states the pixel size."""
    rng = np.random.default_rng(seed)
    ds = Dataset(name, cards, data)
    (ds.folder / "CellComposite").mkdir(parents=True, exist_ok=True)
    w, h = COSMX_FOV_PX
    frames, sections, files = [], {}, {}
    for fov, corner in ((1, (10_000.0, 20_000.0)), (2, (10_000.0 + w, 20_000.0))):
        n = 25_000
        lx, ly = _points_in(rng, n, w, h, COSMX_TISSUE)
        controls = [f"NegPrb{i}" for i in range(1, 11)] + [f"FalseCode{i:04d}" for i in range(5)]
        frames.append(
            pd.DataFrame(
                {
                    "fov": fov,
                    "cell_ID": rng.integers(0, 3000, n),
                    "x_global_px": lx + corner[0],
                    "y_global_px": ly + corner[1],
                    "x_local_px": lx,
                    "y_local_px": ly,
                    "z": rng.integers(0, 9, n),
                    "target": _genes_with(rng, n, controls),
                    "CellComp": rng.choice(["Nuclear", "Cytoplasm", "Membrane", "None"], n),
                }
            )
        )
        image = f"CellComposite/CellComposite_F{fov:03d}.jpg"
        grey = _tissue_image(rng, COSMX_FOV_PX, COSMX_TISSUE)
        rgb = np.stack([grey * 200, grey * 120, 255 - grey * 150], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(ds.folder / image, quality=85)
        sections[f"fov{fov}"] = {
            "transcripts": "Run1000_S1_tx_file.csv.gz",
            "fov": fov,
            "image": image,
        }
        files[image] = ""
    with gzip.open(ds.folder / "Run1000_S1_tx_file.csv.gz", "wt") as fh:
        pd.concat(frames).to_csv(fh, index=False)
    files["Run1000_S1_tx_file.csv.gz"] = ""
    read = {"um_per_px": COSMX_UM_PER_PX, "bin_um": 20}
    ds.card = _tiles_card(name, "cosmx", "cosmx", read, sections, files)
    ds.rehash()
    return ds


TABLE_ORIGIN_UM = (1200.0, 350.0)


def generic_table(cards: Path, data: Path, name: str = "synth_table", seed: int = 5) -> Dataset:
    """Any lab's own table: a tab-separated ``.tsv.gz`` with columns ``geneID``, ``x_um``,
    ``y_um`` in micrometres that start at ``TABLE_ORIGIN_UM`` (not at the image's corner), lower
    case ``negctrl_*`` probes, and an H&E-like RGB PNG at 0.5 um/px; the card maps the columns,
    the unit, the origin and the control pattern."""
    rng = np.random.default_rng(seed)
    ds = Dataset(name, cards, data)
    ds.folder.mkdir(parents=True, exist_ok=True)
    width, height, um_per_px = 240.0, 160.0, 0.5
    tissue = (0.05, 0.05, 0.95, 0.95)
    n = 30_000
    ux, uy = _points_in(rng, n, width, height, tissue)
    frame = pd.DataFrame(
        {
            "geneID": _genes_with(rng, n, ["negctrl_1", "negctrl_2"]),
            "x_um": ux + TABLE_ORIGIN_UM[0],
            "y_um": uy + TABLE_ORIGIN_UM[1],
        }
    )
    with gzip.open(ds.folder / "spots.tsv.gz", "wt") as fh:
        frame.to_csv(fh, sep="\t", index=False)
    size = (round(width / um_per_px), round(height / um_per_px))
    grey = _tissue_image(rng, size, tissue)
    rgb = (255 - np.stack([grey * 80, grey * 160, grey * 60], axis=-1)).astype(np.uint8)
    Image.fromarray(rgb).save(ds.folder / "he.png")
    read = {
        "columns": {"gene": "geneID", "x": "x_um", "y": "y_um"},
        "unit": "um",
        "um_per_px": um_per_px,
        "origin": list(TABLE_ORIGIN_UM),
        "controls": ["NEGCTRL_*"],
        "bin_um": 10,
    }
    entry = {"transcripts": "spots.tsv.gz", "image": "he.png"}
    files = dict.fromkeys(entry.values(), "")
    ds.card = _tiles_card(name, "table", "transcripts", read, {"section": entry}, files)
    ds.rehash()
    return ds


ST2K_ROWS, ST2K_COLS = 8, 16  # rows x doubled columns; spots where (x + y) is even
ST2K_PX = (5.0, 8.66)  # pixels per column step (50 um) and per row step (86.6 um) at 10 um/px


def legacy_st_2k(cards: Path, data: Path, name: str = "synth_st2k", seed: int = 6) -> Dataset:
    """A legacy ST 2k-array dataset: 3 sections on a checkerboard lattice (spots only where the
    array's ``x + y`` is even; x = doubled column, 100 um centre to centre), otherwise the
    legacy-ST layout of :func:`legacy_st` (counts table indexed ``<x>x<y>``, spot table with
    ``pixel_x``/``pixel_y``, an RGB JPEG)."""
    rng = np.random.default_rng(seed)
    ds = Dataset(name, cards, data)
    y, x = np.mgrid[1 : ST2K_ROWS + 1, 1 : ST2K_COLS + 1]
    keep = (x + y) % 2 == 0
    x, y = x[keep], y[keep]
    size = (round((ST2K_COLS + 2) * ST2K_PX[0]), round((ST2K_ROWS + 2) * ST2K_PX[1]))
    sections, files = {}, {}
    for sid in SECTIONS:
        entry = {
            "counts": f"counts/{sid}.tsv.gz",
            "spots": f"spots/{sid}_selection.tsv",
            "image": f"images/{sid}.jpg",
        }
        for rel in entry.values():
            (ds.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        index = [f"{a}x{b}" for a, b in zip(x, y, strict=True)]
        table = pd.DataFrame(_counts(rng, len(x)), index=index, columns=gene_names())
        with gzip.open(ds.folder / entry["counts"], "wt") as fh:
            table.to_csv(fh, sep="\t")
        spots = pd.DataFrame(
            {
                "x": x,
                "y": y,
                "pixel_x": x * ST2K_PX[0] + 0.5,
                "pixel_y": y * ST2K_PX[1] + 0.5,
                "selected": np.ones(len(x), dtype=int),
            }
        )
        spots.to_csv(ds.folder / entry["spots"], sep="\t", index=False)
        _image(rng, size=size).save(ds.folder / entry["image"], quality=90)
        sections[sid] = entry
        files.update(dict.fromkeys(entry.values(), ""))
    ds.card = _lattice_card(name, "legacy_st", sections, files)
    ds.card["lattice"] = {
        "kind": "checkerboard",
        "spot_diameter_um": 100,
        "pitch_um": [86.6, 50.0],
        "image_um_per_px": 10.0,
    }
    ds.card["split"]["canvas"] = [ST2K_ROWS, ST2K_COLS]
    ds.rehash()
    return ds


def spot_table(cards: Path, data: Path, name: str = "synth_spot", seed: int = 7) -> Dataset:
    """The legacy-ST layout as one CSV per section for the example plugin's ``spot_table``
    reader (``examples/plugin``): columns row, col, x_px, y_px, in_tissue, then the genes."""
    rng = np.random.default_rng(seed)
    ds = Dataset(name, cards, data)
    sections, files = {}, {}
    x, y = _grid()
    for sid in SECTIONS:
        entry = {"spots": f"spots/{sid}.csv", "image": f"images/{sid}.png"}
        for rel in entry.values():
            (ds.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame(
            {
                "row": y,
                "col": x,
                "x_px": x * PX_PER_STEP + 0.5,
                "y_px": y * PX_PER_STEP + 0.5,
                "in_tissue": np.r_[0, np.ones(len(x) - 1, dtype=int)],
            }
        )
        table[gene_names()] = _counts(rng, len(x))
        table.to_csv(ds.folder / entry["spots"], index=False)
        _image(rng).save(ds.folder / entry["image"])
        sections[sid] = entry
        files.update(dict.fromkeys(entry.values(), ""))
    ds.card = _lattice_card(name, "spot_table", sections, files)
    ds.rehash()
    return ds
