"""Regions: the fixed windows of the HR grid that become samples, and their train/test roles.

Two rules, chosen by the card's ``[split].regions``:

- ``"sections"`` (many small sections, e.g. her2st): one region per section, the ``canvas``
  centred on the section's in-tissue spots; train/test by section, as the card lists them.
- ``"tiles"`` (one or few large sections, e.g. a Visium embryo or a Xenium section): the bounding
  box of a section's in-tissue positions is cut into disjoint ``canvas``-sized tiles starting at
  its top-left corner (no overlap; edge tiles extend past the tissue and are masked there); a tile
  is kept when at least ``min_tissue`` of its lattice positions are in tissue. Assignment is
  spatially blocked, never by spot: ``ceil(test_fraction * tiles)`` tiles are test, shared
  between the sections in proportion to their tiles (:func:`count_test_tiles`). In a section, tiles
  are grouped into bands across its longer axis; the last whole bands whose tile count is
  closest to the section's share are test when they miss it by at most ``BAND_TOLERANCE`` of the
  section's tiles, else the last tiles in band order (the first test band cut across the short
  axis), so the test share follows ``test_fraction`` even with two wide bands
  (:func:`choose_test_tiles`). A test tile therefore never interleaves with training tiles, and
  spatial autocorrelation reaches the test set only across one band edge (and the cut).

Cross-validation folds (:mod:`bench.data.folds`) keep these regions and give them other roles.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.data.section import Section
from bench.errors import BenchError

BAND_TOLERANCE = 0.1  # whole test bands when they miss the wanted tiles by <= 10% of the tiles


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


def window_totals(section: Section, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float64: the all-gene total of each in-tissue spot of the window at its grid
    position, 0 elsewhere (the window's in-tissue positions with counts are those above 0)."""
    spot = in_window(section, origin, shape)
    totals = np.zeros(shape)
    totals[section.row[spot] - origin[0], section.col[spot] - origin[1]] = section.totals[spot]
    return totals


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


def count_test_tiles(sizes: list[int], fraction: float) -> list[int]:
    """How many tiles of each section are test: ``ceil(fraction * total)`` in all, shared out in
    proportion to the sections' tile counts (largest remainder, ties to the earlier section),
    at least one training tile left in every section."""
    want = math.ceil(fraction * sum(sizes))
    quota = [fraction * n for n in sizes]
    out = [min(math.floor(q), n - 1) for q, n in zip(quota, sizes, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: (-(quota[i] - math.floor(quota[i])), i))
    for i in order * 2:  # a second pass when a section was full
        if sum(out) >= want:
            break
        if out[i] < sizes[i] - 1:
            out[i] += 1
    return out


def choose_test_tiles(
    origins: list[tuple[int, int]], long_axis: int, want: int
) -> set[tuple[int, int]]:
    """The ``want`` test tiles of one section, spatially blocked (module docstring): the last
    whole bands across the long axis whose tile count is closest to ``want`` (ties to more),
    when that count is within ``BAND_TOLERANCE`` of the section's tiles of ``want``; else the
    last ``want`` tiles in band order, cutting the first test band across the short axis."""
    if want <= 0:
        return set()
    short_axis = 1 - long_axis
    ordered = sorted(origins, key=lambda o: (o[long_axis], o[short_axis]))
    bands = sorted({o[long_axis] for o in origins})
    best: list[tuple[int, int]] | None = None
    for m in range(1, len(bands)):  # at least one band always trains
        chosen = [o for o in ordered if o[long_axis] >= bands[-m]]
        if best is None or abs(len(chosen) - want) <= abs(len(best) - want):
            best = chosen
        if len(chosen) >= want:
            break
    if best is not None and abs(len(best) - want) <= BAND_TOLERANCE * len(origins):
        return set(best)
    return set(ordered[-want:])


def long_axis(section: Section) -> int:
    """0 when the section's in-tissue extent is at least as long (in um) down the rows as across
    the columns, else 1."""
    rows, cols = section.row[section.in_tissue], section.col[section.in_tissue]
    pitch_r, pitch_c = section.pitch_um
    return 0 if (np.ptp(rows) + 1) * pitch_r >= (np.ptp(cols) + 1) * pitch_c else 1


def kept_tiles(
    sections: dict[str, Section], cfg: dict[str, Any]
) -> dict[str, list[tuple[int, int]]]:
    """The kept tiles' origins of each of ``cfg["sections"]`` (:func:`tiles`), at least two per
    section (else a :class:`BenchError` that says what to change)."""
    canvas = tuple(cfg["canvas"])
    kept: dict[str, list[tuple[int, int]]] = {}
    for sid in cfg["sections"]:
        sec = sections[sid]
        origins = tiles(sec, canvas, float(cfg["min_tissue"]))
        if len(origins) < 2:
            raise BenchError(
                f"section {sid}: {len(origins)} tile(s) of {canvas[0]}x{canvas[1]} HR positions "
                f"pass [split].min_tissue = {cfg['min_tissue']} (the section spans "
                f"{np.ptp(sec.row[sec.in_tissue]) + 1}x{np.ptp(sec.col[sec.in_tissue]) + 1} "
                "positions in tissue); need at least 2: lower [split].canvas or min_tissue, or, "
                "if the section should be larger, check the scale ([read].unit, [read].um_per_px,"
                " [read].bin_um, [lattice].pitch_um)"
            )
        kept[sid] = origins
    return kept


def _regions_from_tiles(sections: dict[str, Section], cfg: dict[str, Any]) -> dict[str, Any]:
    kept = kept_tiles(sections, cfg)
    wants = count_test_tiles([len(o) for o in kept.values()], float(cfg["test_fraction"]))
    regions: dict[str, Any] = {}
    train: list[str] = []
    test: list[str] = []
    for (sid, origins), want in zip(kept.items(), wants, strict=True):
        held = choose_test_tiles(origins, long_axis(sections[sid]), want)
        for o in origins:
            rid = tile_id(sid, o)
            regions[rid] = {"section": sid, "origin": list(o)}
            (test if o in held else train).append(rid)
    return {"regions": regions, "train": train, "test": test}


def tile_id(section: str, origin: tuple[int, int]) -> str:
    """A tile region's id: its section and its origin on the section's HR grid."""
    return f"{section}_r{origin[0]}c{origin[1]}"


def define_regions(sections: dict[str, Section], cfg: dict[str, Any]) -> dict[str, Any]:
    """``{"regions": {id: {"section", "origin"}}, "train": [ids], "test": [ids]}`` for a card."""
    rule = cfg.get("regions", "sections")
    if rule == "sections":
        return _regions_from_sections(sections, cfg)
    if rule == "tiles":
        return _regions_from_tiles(sections, cfg)
    raise BenchError(f'[split].regions = {rule!r} is unknown; use "sections" or "tiles"')
