"""Regions: the fixed windows of the HR grid that become samples, and their train/test roles.

Two rules, chosen by the card's ``[split].regions``:

- ``"sections"`` (many small sections, e.g. her2st): one region per section, the ``canvas``
  centred on the section's in-tissue spots; train/test by section, as the card lists them.
- ``"tiles"`` (one or few large sections, e.g. a Visium embryo or a Xenium section): the bounding
  box of a section's in-tissue positions is cut into disjoint ``canvas``-sized tiles starting at
  its top-left corner (no overlap; edge tiles extend past the tissue and are masked there); a tile
  is kept when at least ``min_tissue`` of its lattice positions are in tissue. Assignment is
  spatially blocked, never by spot: tiles are grouped into bands across the section's longer axis
  and the last bands holding ``test_fraction`` of the kept tiles (rounded up, at least one band)
  are test, the rest train. A test tile therefore never interleaves with training tiles, and
  spatial autocorrelation reaches the test set only across one band edge.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.data.section import Section
from bench.errors import BenchError


def sites(section: Section, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the grid positions of a window at which the lattice has a spot."""
    i, j = np.indices(shape)
    if section.lattice == "checkerboard":
        return (origin[0] + i + origin[1] + j) % 2 == section.parity
    return np.ones(shape, dtype=bool)


def centred_origin(section: Section, canvas: tuple[int, int]) -> tuple[int, int]:
    """Grid (row, col) of window position (0, 0) centring the section's tissue on ``canvas``."""
    rows, cols = section.row[section.in_tissue], section.col[section.in_tissue]
    extent = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    if extent[0] > canvas[0] or extent[1] > canvas[1]:
        raise BenchError(
            f"section {section.id}: tissue spans {extent[0]}x{extent[1]} grid positions, larger "
            f"than the card's canvas {canvas[0]}x{canvas[1]}; enlarge [split].canvas or use "
            'regions = "tiles"'
        )
    return (
        int(rows.min() - (canvas[0] - extent[0]) // 2),
        int(cols.min() - (canvas[1] - extent[1]) // 2),
    )


def in_window(section: Section, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """(S,) bool: the section's in-tissue spots that fall inside the window."""
    i, j = section.row - origin[0], section.col - origin[1]
    return section.in_tissue & (i >= 0) & (i < shape[0]) & (j >= 0) & (j < shape[1])


def tiles(section: Section, canvas: tuple[int, int], min_tissue: float) -> list[tuple[int, int]]:
    """Origins of the kept tiles of one section, row-major (see the module docstring)."""
    rows, cols = section.row[section.in_tissue], section.col[section.in_tissue]
    r0, c0 = int(rows.min()), int(cols.min())
    n_r = math.ceil((rows.max() - r0 + 1) / canvas[0])
    n_c = math.ceil((cols.max() - c0 + 1) / canvas[1])
    kept = []
    for a in range(n_r):
        for b in range(n_c):
            origin = (r0 + a * canvas[0], c0 + b * canvas[1])
            share = in_window(section, origin, canvas).sum() / sites(section, origin, canvas).sum()
            if share >= min_tissue:
                kept.append(origin)
    return kept


def _regions_from_sections(sections: dict[str, Section], cfg: dict[str, Any]) -> dict[str, Any]:
    canvas = tuple(cfg["canvas"])
    regions = {
        sid: {"section": sid, "origin": list(centred_origin(sec, canvas))}
        for sid, sec in sections.items()
    }
    return {"regions": regions, "train": list(cfg["train"]), "test": list(cfg["test"])}


def _regions_from_tiles(sections: dict[str, Section], cfg: dict[str, Any]) -> dict[str, Any]:
    canvas = tuple(cfg["canvas"])
    regions: dict[str, Any] = {}
    train: list[str] = []
    test: list[str] = []
    for sid in cfg["sections"]:
        sec = sections[sid]
        origins = tiles(sec, canvas, float(cfg["min_tissue"]))
        if len(origins) < 2:
            raise BenchError(
                f"section {sid}: {len(origins)} tile(s) of {canvas[0]}x{canvas[1]} pass "
                f"min_tissue = {cfg['min_tissue']}; need at least 2 (smaller canvas or min_tissue)"
            )
        rows, cols = sec.row[sec.in_tissue], sec.col[sec.in_tissue]
        pitch_r, pitch_c = sec.pitch_um
        long_axis = 0 if (np.ptp(rows) + 1) * pitch_r >= (np.ptp(cols) + 1) * pitch_c else 1
        bands = sorted({o[long_axis] for o in origins})
        want = math.ceil(float(cfg["test_fraction"]) * len(origins))
        test_bands: set[int] = set()
        for band in reversed(bands[1:]):  # at least one band always trains
            if sum(o[long_axis] in test_bands for o in origins) >= want:
                break
            test_bands.add(band)
        for o in origins:
            rid = f"{sid}_r{o[0]}c{o[1]}"
            regions[rid] = {"section": sid, "origin": list(o)}
            (test if o[long_axis] in test_bands else train).append(rid)
    return {"regions": regions, "train": train, "test": test}


def define_regions(sections: dict[str, Section], cfg: dict[str, Any]) -> dict[str, Any]:
    """``{"regions": {id: {"section", "origin"}}, "train": [ids], "test": [ids]}`` for a card."""
    rule = cfg.get("regions", "sections")
    if rule == "sections":
        return _regions_from_sections(sections, cfg)
    if rule == "tiles":
        return _regions_from_tiles(sections, cfg)
    raise BenchError(f'[split].regions = {rule!r} is unknown; use "sections" or "tiles"')
