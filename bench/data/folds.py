"""Cross-validation folds: committed fold files in which every region is tested exactly once.

A fold file ``datasets/<name>/folds/split-k<k>-f<i>.json`` is a split file
(:mod:`bench.data.splits`) with ``fold`` (i), ``folds`` (n) and ``excluded`` added. The regions are
the card's (:func:`bench.data.regions.define_regions`: the same ids and windows as the split file);
only their roles change. Each fold's genes, spot-QC threshold and fingerprint come from its own
training regions (:func:`bench.data.splits.make_split` with the fold's layout), and its validation
carve is :attr:`bench.data.splits.Split.validation` on its own training list: the last quarter in
the order given below.

``regions = "sections"`` (her2st): the sections of ``train`` + ``test``, in card order, are cut
into ``[split].folds`` contiguous groups (default: one section per fold); fold i tests group i
and trains on every other section, in card order. No region is excluded: sections are separate
tissue, so nothing of a test section touches a training one. On her2st (six folds) patient B has
one section, B4: B4's own fold trains on patient C alone, and in every other fold B4 trains
beside the remaining C sections; as B4 comes first in card order it always fits, never
validates. Neighbouring sections of patient C train beside a test C section, as in the split.

``regions = "tiles"`` (one or a few large sections): each section's kept tiles are grouped into
``[split].folds`` spatial blocks (:func:`tile_blocks`): a grid of ``nr x nc = folds`` blocks, the
factorisation whose blocks are closest to square in um among those the tiles allow; the tile rows
are cut into ``nr`` contiguous bands of balanced tile counts, and each band's tile columns into
``nc`` contiguous blocks of balanced counts. Fold i tests block i of every section; the tiles that
touch a test tile (sharing an edge or a corner: the 8-neighbourhood on the tile grid) and are not
test are ``excluded`` in that fold (the buffer), so no test tile touches a fitting or validation
tile; the remaining tiles train, in the split's order (section, then row-major). Every fold needs
at least two training tiles (so its validation carve is not empty), else a :class:`BenchError`
says to lower ``[split].folds``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data.cards import Card
from bench.data.regions import define_regions
from bench.data.section import Section
from bench.data.splits import SplitSpec, make_split, verified_sections
from bench.errors import BenchError

Cell = tuple[int, int]  # a tile's (row, column) index on its section's tile grid


def balanced_groups(counts: Sequence[int], m: int) -> list[int]:
    """The group (0 .. m-1) of each item when ``counts`` (in order) is cut into ``m`` contiguous,
    non-empty groups whose sums are as even as possible (least sum of squared deviations from
    ``sum / m``; among equals, the earliest cuts). ``m <= len(counts)``."""
    n = len(counts)
    if not 1 <= m <= n:
        raise ValueError(f"cannot cut {n} items into {m} non-empty groups")
    target = sum(counts) / m
    prefix = [0]
    for c in counts:
        prefix.append(prefix[-1] + c)
    # best[j][i]: (cost, cut) of the first i items in j groups
    best: list[list[tuple[float, int]]] = [[(math.inf, -1)] * (n + 1) for _ in range(m + 1)]
    best[0][0] = (0.0, -1)
    for j in range(1, m + 1):
        for i in range(j, n - (m - j) + 1):
            for cut in range(j - 1, i):
                cost = best[j - 1][cut][0] + (prefix[i] - prefix[cut] - target) ** 2
                if cost < best[j][i][0] - 1e-9:
                    best[j][i] = (cost, cut)
    group = [0] * n
    i = n
    for j in range(m, 0, -1):
        cut = best[j][i][1]
        group[cut:i] = [j - 1] * (i - cut)
        i = cut
    return group


def _grid_blocks(cells: Sequence[Cell], nr: int, nc: int) -> list[int] | None:
    """Block index (row band * nc + column block) per cell, or None when the cells have fewer
    than ``nr`` tile rows or a band fewer than ``nc`` tile columns."""
    rows = sorted({a for a, _ in cells})
    if len(rows) < nr:
        return None
    per_row = [sum(a == r for a, _ in cells) for r in rows]
    row_band = dict(zip(rows, balanced_groups(per_row, nr), strict=True))
    block = [0] * len(cells)
    for band in range(nr):
        members = [i for i, (a, _) in enumerate(cells) if row_band[a] == band]
        cols = sorted({cells[i][1] for i in members})
        if len(cols) < nc:
            return None
        counts = [sum(cells[i][1] == c for i in members) for c in cols]
        col_block = dict(zip(cols, balanced_groups(counts, nc), strict=True))
        for i in members:
            block[i] = band * nc + col_block[cells[i][1]]
    return block


def tile_blocks(
    cells: Sequence[Cell], n: int, cell_um: tuple[float, float] = (1.0, 1.0)
) -> tuple[list[int], tuple[int, int]]:
    """Spatial block (0 .. n-1) of each tile and the block grid (nr, nc) (module docstring).

    ``cells`` are the tiles' (row, column) indices on the tile grid, ``cell_um`` a tile's height
    and width in um. Among the factorisations ``nr * nc = n`` the tiles allow, the one whose
    blocks (the tiles' extent cut ``nr`` by ``nc``) are closest to square wins (ties to fewer row
    bands)."""
    if n < 1 or len(cells) < n:
        raise BenchError(f"{len(cells)} tiles cannot make {n} spatial blocks; lower [split].folds")
    rows = [a for a, _ in cells]
    cols = [b for _, b in cells]
    height = (max(rows) - min(rows) + 1) * cell_um[0]
    width = (max(cols) - min(cols) + 1) * cell_um[1]
    shapes = sorted(
        ((nr, n // nr) for nr in range(1, n + 1) if n % nr == 0),
        key=lambda s: (abs(math.log((height / s[0]) / (width / s[1]))), s[0]),
    )
    for nr, nc in shapes:
        block = _grid_blocks(cells, nr, nc)
        if block is not None:
            return block, (nr, nc)
    raise BenchError(
        f"{len(cells)} tiles spanning {len(set(rows))} rows and {len(set(cols))} columns cannot "
        f"be cut into {n} blocks of contiguous rows and columns; lower [split].folds"
    )


def touching(cells: Sequence[Cell], chosen: set[Cell]) -> set[Cell]:
    """The cells not in ``chosen`` that share an edge or a corner with one in it."""
    return {
        c
        for c in cells
        if c not in chosen and any(abs(c[0] - t[0]) <= 1 and abs(c[1] - t[1]) <= 1 for t in chosen)
    }


def tile_folds(cells: Sequence[Cell], block: Sequence[int], n: int) -> list[tuple[set, set]]:
    """(test cells, excluded cells) of each fold: block i tests, the tiles touching it are the
    buffer."""
    out = []
    for i in range(n):
        test = {c for c, b in zip(cells, block, strict=True) if b == i}
        out.append((test, touching(cells, test)))
    return out


def _check_train(layouts: list[dict[str, Any]]) -> None:
    for layout in layouts:
        if len(layout["train"]) < 2:
            raise BenchError(
                f"fold {layout['fold']} of {layout['folds']} keeps {len(layout['train'])} "
                "training region(s) once its test block and buffer are out; it needs at least 2 "
                "(a fit and a validation region): lower [split].folds or the canvas"
            )


def fold_layouts(sections: dict[str, Section], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every fold's layout for :func:`bench.data.splits.make_split`: the card's regions,
    ``train``, ``test``, ``excluded``, ``fold``, ``folds`` and a ``region_rule`` sentence
    (module docstring). ``cfg`` is the card's ``[split]`` table."""
    base = define_regions(sections, cfg)
    regions: dict[str, Any] = base["regions"]
    order = list(regions)
    if cfg.get("regions", "sections") == "sections":
        ids = list(cfg["train"]) + list(cfg["test"])
        n = int(cfg.get("folds") or len(ids))
        group = balanced_groups([1] * len(ids), n)
        layouts = []
        for i in range(n):
            test = [s for s, g in zip(ids, group, strict=True) if g == i]
            layouts.append(
                {
                    "regions": regions,
                    "train": [s for s in ids if s not in test],
                    "test": test,
                    "fold": i,
                    "folds": n,
                    "excluded": [],
                    "region_rule": (
                        f"cross-validation fold {i} of {n}: section(s) {', '.join(test)} test, "
                        "every other section trains in card order (validation = the last "
                        "quarter); no section in two folds' test"
                    ),
                }
            )
        _check_train(layouts)
        return layouts
    if cfg.get("folds") is None:
        raise BenchError('[split].folds is needed for cross-validation folds of regions = "tiles"')
    n = int(cfg["folds"])
    h, w = cfg["canvas"]
    tests: list[set[str]] = [set() for _ in range(n)]
    buffers: list[set[str]] = [set() for _ in range(n)]
    grids = []
    for sid in cfg["sections"]:
        rids = [r for r in order if regions[r]["section"] == sid]
        origins = [tuple(regions[r]["origin"]) for r in rids]
        r0, c0 = min(o[0] for o in origins), min(o[1] for o in origins)
        cells = [((o[0] - r0) // h, (o[1] - c0) // w) for o in origins]
        rid_of = dict(zip(cells, rids, strict=True))
        pitch_r, pitch_c = sections[sid].pitch_um
        block, shape = tile_blocks(cells, n, (h * pitch_r, w * pitch_c))
        grids.append(f"{sid} {shape[0]} x {shape[1]}")
        for i, (test, buffer) in enumerate(tile_folds(cells, block, n)):
            tests[i] |= {rid_of[c] for c in test}
            buffers[i] |= {rid_of[c] for c in buffer}

    def rule(i: int) -> str:
        return (
            f"cross-validation fold {i} of {n} over the split's {h} x {w} tiles: each section's "
            f"tiles in a grid of {n} spatial blocks ({', '.join(grids)}; contiguous bands of "
            f"tile rows, then of columns, balanced by tile count); block {i} of every section "
            "is test, the tiles touching it (edge or corner) are excluded, the rest train in "
            "split order"
        )

    layouts = [
        {
            "regions": regions,
            "train": [r for r in order if r not in tests[i] and r not in buffers[i]],
            "test": [r for r in order if r in tests[i]],
            "fold": i,
            "folds": n,
            "excluded": [r for r in order if r in buffers[i]],
            "region_rule": rule(i),
        }
        for i in range(n)
    ]
    _check_train(layouts)
    return layouts


def make_folds(
    card: Card, root: Path, k: int, sections: dict[str, Section] | None = None
) -> list[SplitSpec]:
    """Every fold's spec for pooling ``k`` (genes, spot QC and fingerprint from each fold's own
    training regions); ``sections`` as :func:`bench.data.splits.verified_sections` returns them
    (read here when None)."""
    sections = sections if sections is not None else verified_sections(card, root)
    return [
        make_split(card, root, k, sections, layout)
        for layout in fold_layouts(sections, card.split)
    ]
