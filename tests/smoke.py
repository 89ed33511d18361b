"""Smoke-size settings for iterative methods in tests: a few steps instead of a preset's budget.

Tests check behaviour (contract, runner, records); how well a method learns is measured on real
data by the benchmark, not here.
"""

from __future__ import annotations

import pytest

from methods import registry

TINY_NET = {
    "channels": 16,
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


def shrink_registry(mp: pytest.MonkeyPatch) -> None:
    """Make every registered method in ``SMOKE`` run at smoke size (registry fixed kwargs)."""
    for name, overrides in SMOKE.items():
        module, cls, fixed = registry._REGISTRY[name]
        mp.setitem(registry._REGISTRY, name, (module, cls, {**fixed, **overrides}))
