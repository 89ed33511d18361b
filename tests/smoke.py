"""Smoke-size settings for iterative methods in tests: a few steps instead of a preset's budget.

Tests check behaviour (contract, runner, records); how well a method learns is measured on real
data by the benchmark, not here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from methods import registry

TINY_NET = {
    "channels": None,  # sized from the genes: a narrower first layer is refused
    "groups": 4,
    "tile_grid": 2,
    "tile_px": 4,
    "iterations": 3,
    "batch_size": 2,
    "steps": 3,
}
SMOKE: dict[str, dict] = {
    "diffst": TINY_NET,
    "unet": TINY_NET,
    "sr3": TINY_NET,
    "istar": {"epochs": 2},
    "histogene": {"epochs": 2},
}


@contextlib.contextmanager
def smoke_size() -> Iterator[None]:
    """Inside the block every registered method in ``SMOKE`` runs at smoke size (its registry
    entry's fixed keyword arguments overridden); the registry is restored on exit."""
    undo = []
    for name, overrides in SMOKE.items():
        module, cls, fixed = registry.entry(name)
        undo.append(registry.register(name, module, cls, **{**fixed, **overrides}))
    try:
        yield
    finally:
        for step in reversed(undo):
            step()
