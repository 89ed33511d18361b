"""The lazy method registry: names map to ``module:Class`` strings, imported only on demand.

``--methods bicubic`` therefore imports ``methods.interpolation`` and nothing heavier (no
torch-geometric, no diffusion code). Adding a method is one line here plus its module;
:func:`register` adds one at run time (a test's stub).

Plugins: an installed distribution adds methods through the entry-point group
``stsr_bench.methods`` (``name = "package.module:Class"``, the class a subclass of
:class:`methods.contract.Method`), seen by ``list``, ``run`` and the contract tests like the
built-in ones; they are read from the installed metadata without importing anything. A built-in
name wins over a plugin's. A plugin that cannot be imported, or whose class breaks the
contract, raises :class:`PluginError`, one line naming the plugin and its distribution.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from typing import Any

from methods.contract import Method

PLUGIN_GROUP = "stsr_bench.methods"

# name -> (module path, class name, fixed keyword arguments)
_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "nearest": ("methods.interpolation", "Interpolation", {"mode": "nearest"}),
    "bilinear": ("methods.interpolation", "Interpolation", {"mode": "bilinear"}),
    "bicubic": ("methods.interpolation", "Interpolation", {"mode": "bicubic"}),
    "mean": ("methods.mean", "TrainingMean", {}),
    "diffst": ("methods.diffst.method", "DiffST", {}),
    "unet": ("methods.unet_regressor", "UNetRegressor", {}),
    "sr3": ("methods.sr3", "PlainConditionalDiffusion", {}),
    "tesla": ("methods.tesla", "TeslaStyle", {}),
    "istar": ("methods.istar", "IStarStyle", {}),
    "linear_probe": ("methods.linear_probe", "LinearProbe", {}),
    "histogene": ("methods.histogene", "HisToGeneStyle", {}),
    # negative control: the TESLA-style baseline fed histology whose position blocks are shuffled
    # (why tesla: docs/decisions.md, "Shuffled histology on tesla")
    "shuffled": ("methods.controls", "ShuffledHistology", {"base": "tesla"}),
    "truth": ("methods.controls", "Truth", {}),
}


# plugin name -> "distribution version (module:Class)", for messages; filled with _REGISTRY
_PLUGINS: dict[str, str] = {}
_SCANNED = False


class UnknownMethodError(KeyError):
    """A method name that is not registered; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0])


class PluginError(ImportError):
    """A plugin method that cannot be imported or breaks the contract (one line)."""


def _scan_plugins() -> None:
    """Add the installed ``stsr_bench.methods`` entry points to the registry (once)."""
    global _SCANNED
    if _SCANNED:
        return
    _SCANNED = True
    for point in metadata.entry_points(group=PLUGIN_GROUP):
        dist = f"{point.dist.name} {point.dist.version}" if point.dist else "unknown distribution"
        module, _, cls = point.value.partition(":")
        if point.name in _REGISTRY or not point.name.isidentifier() or not cls:
            continue  # a built-in name wins; a malformed entry is not a method name
        _REGISTRY[point.name] = (module.strip(), cls.strip(), {})
        _PLUGINS[point.name] = f"{dist} ({point.value})"


def plugin_source(name: str) -> str | None:
    """``"distribution version (module:Class)"`` of a plugin method; None for a built-in."""
    _scan_plugins()
    return _PLUGINS.get(name)


def register(name: str, module: str, cls: str, **fixed: Any) -> Callable[[], None]:
    """Register ``module:cls`` under ``name`` with fixed keyword arguments (replacing any entry);
    nothing is imported until the method is asked for.

    Returns a function that undoes this registration (restoring the previous entry, if any), so
    a test can register a stub and leave the registry as it found it.
    """
    _scan_plugins()
    if not name.isidentifier():
        raise ValueError(f"method name {name!r} is not an identifier; use e.g. 'my_method'")
    previous, source = _REGISTRY.get(name), _PLUGINS.pop(name, None)
    _REGISTRY[name] = (module, cls, dict(fixed))

    def undo() -> None:
        if previous is None:
            _REGISTRY.pop(name, None)
        else:
            _REGISTRY[name] = previous
        if source is not None:
            _PLUGINS[name] = source

    return undo


def entry(name: str) -> tuple[str, str, dict[str, Any]]:
    """``(module, class name, fixed keyword arguments)`` registered under ``name`` (no import)."""
    _scan_plugins()
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(names())}")
    module, cls, fixed = _REGISTRY[name]
    return module, cls, dict(fixed)


def names() -> list[str]:
    """Registered method names, in registry order (built-ins, then plugins)."""
    _scan_plugins()
    return list(_REGISTRY)


def resolve(spec: str) -> list[str]:
    """Turn ``"all"`` or ``"a,b"`` into a list of known names, in the order given.

    Raises :class:`UnknownMethodError` naming the unknown entries and the known ones.
    """
    _scan_plugins()
    wanted = (
        names() if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    )
    if not wanted:
        raise UnknownMethodError(f"no method named; choose from: all, {', '.join(names())}")
    unknown = [w for w in wanted if w not in _REGISTRY]
    if unknown:
        raise UnknownMethodError(
            f"unknown method {', '.join(map(repr, unknown))}; known methods: {', '.join(names())}"
        )
    return list(dict.fromkeys(wanted))


def method_class(name: str) -> tuple[type[Method], dict[str, Any]]:
    """The class registered under ``name`` and its fixed keyword arguments (imports it now).

    Raises :class:`PluginError` for a plugin that cannot be imported or whose class is not a
    :class:`methods.contract.Method`.
    """
    module, cls, fixed = entry(name)
    source = _PLUGINS.get(name)
    if source is None:
        return getattr(importlib.import_module(module), cls), fixed
    try:
        found = getattr(importlib.import_module(module), cls)
    except Exception as err:  # noqa: BLE001 - any failure of a plugin's import is the plugin's
        why = (str(err).strip().splitlines() or [""])[0][:200]
        raise PluginError(
            f"method plugin {name!r} from {source} cannot be imported "
            f"({type(err).__name__}: {why}); fix or uninstall that distribution"
        ) from None
    if not (isinstance(found, type) and issubclass(found, Method)):
        raise PluginError(
            f"method plugin {name!r} from {source} breaks the contract: {cls} is not a "
            "subclass of methods.contract.Method; fix or uninstall that distribution"
        )
    return found, fixed


def create(name: str, **params: Any) -> Method:
    """Instantiate the method registered under ``name`` with ``params`` (e.g. preset, seed)."""
    cls, fixed = method_class(name)
    method = cls(**fixed, **params)
    method.name = name  # type: ignore[misc]  # the registry name, e.g. "bicubic"
    return method
