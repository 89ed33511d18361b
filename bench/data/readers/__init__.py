"""Readers: one module per input format, each turning a section's files into the same
:class:`bench.data.section.Section` through ``read_section(section_id, folder, entry, card)``.

A card's ``reader = "<name>"`` names the module here that reads it; any module of this package
with a ``read_section`` function is a reader, so adding a format is adding a module (no table to
keep). Readers may import :mod:`bench.errors`, :mod:`bench.data.section` and the shared helpers
(:mod:`.lattice`, :mod:`.binning`, and the transcript readers' core :mod:`.points` with its
:mod:`.table_io` and :mod:`.placement`); no reader imports another reader.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from bench.errors import BenchError


def names() -> list[str]:
    """The registered formats: the modules of this package that define ``read_section``."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if hasattr(importlib.import_module(f"{__name__}.{info.name}"), "read_section"):
            found.append(info.name)
    return sorted(found)


def reader(name: str, dataset: str = "?") -> ModuleType:
    """The reader module for format ``name`` (a card's ``reader``); else a one-line error."""
    if isinstance(name, str) and name.isidentifier():
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
        else:
            if hasattr(module, "read_section"):
                return module
    raise BenchError(f"dataset {dataset}: reader {name!r} unknown; use one of {names()}")
