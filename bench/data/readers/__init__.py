"""Readers: one module per input format, each turning a section's files into the same
:class:`bench.data.section.Section` through ``read_section(section_id, folder, entry, card)``.

A card's ``reader = "<name>"`` names the module here that reads it; any module of this package
with a ``read_section`` function is a reader, so adding a format is adding a module (no table to
keep). Readers may import :mod:`bench.errors`, :mod:`bench.data.section` and the shared helpers
(:mod:`.lattice`, :mod:`.binning`, the 10x matrix and scale factors of :mod:`.tenx`, and the
transcript readers' core :mod:`.points` with its :mod:`.table_io` and :mod:`.placement`, and a
SpatialData store's elements in :mod:`.store_elements`); no reader imports another reader.

Plugins: an installed distribution adds readers through the entry-point group
``stsr_bench.readers`` (``name = "package.module"``, a module with the same ``read_section``
and optionally ``ENTRY_KEYS``, ``inputs`` and ``check_card``); a built-in name wins. A plugin that
cannot be imported, or has no ``read_section``, is a one-line :class:`bench.errors.BenchError`
naming it and its distribution.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import metadata
from types import ModuleType

from bench.errors import BenchError, first_line

PLUGIN_GROUP = "stsr_bench.readers"


def _builtin() -> list[str]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if hasattr(importlib.import_module(f"{__name__}.{info.name}"), "read_section"):
            found.append(info.name)
    return found


def _plugins() -> dict[str, metadata.EntryPoint]:
    """Installed reader plugins by name (read from metadata; nothing imported)."""
    return {p.name: p for p in metadata.entry_points(group=PLUGIN_GROUP) if p.name.isidentifier()}


def names() -> list[str]:
    """The registered formats: the modules of this package that define ``read_section``, and
    the installed reader plugins."""
    return sorted(set(_builtin()) | set(_plugins()))


def _plugin(point: metadata.EntryPoint, dataset: str) -> ModuleType:
    dist = f"{point.dist.name} {point.dist.version}" if point.dist else "unknown distribution"
    where = f"dataset {dataset}: reader plugin {point.name!r} from {dist} ({point.value})"
    try:
        module = importlib.import_module(point.value.partition(":")[0].strip())
    except Exception as err:  # noqa: BLE001 - any failure of a plugin's import is the plugin's
        raise BenchError(
            f"{where} cannot be imported ({type(err).__name__}: {first_line(err)[:200]}); "
            "fix or uninstall that distribution"
        ) from None
    if not callable(getattr(module, "read_section", None)):
        raise BenchError(
            f"{where} breaks the reader contract: no read_section(section_id, folder, entry, "
            "card); fix or uninstall that distribution"
        )
    return module


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
        point = _plugins().get(name)
        if point is not None:
            return _plugin(point, dataset)
    raise BenchError(f"dataset {dataset}: reader {name!r} unknown; use one of {names()}")
