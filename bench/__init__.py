"""stsr-bench, the harness. ``bench.run_grid(RunConfig(...)) -> GridResult`` runs a grid of
(dataset, method, seed) cells and writes the leaderboard, as ``python -m bench run`` does.

The house in wings (imports run one way, checked by import-linter in ``pyproject.toml``):
:mod:`bench.cli` and :mod:`bench.grid` -> :mod:`bench.board` -> :mod:`bench.run` ->
:mod:`bench.scoring`, :mod:`bench.data`; :mod:`bench.errors` and :mod:`bench.files` serve all.
Importing ``bench`` loads nothing else: the names below are resolved on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.grid import GridResult, RunConfig, run_grid

__all__ = ["GridResult", "RunConfig", "run_grid"]


def __getattr__(name: str) -> Any:
    import importlib

    if name in __all__:
        return getattr(importlib.import_module("bench.grid"), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
