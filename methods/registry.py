"""The lazy method registry: names map to ``module:Class`` strings, imported only on demand.

``--methods bicubic`` therefore imports ``methods.interpolation`` and nothing heavier (no
torch-geometric, no diffusion code). Adding a method is one line here plus its module;
:func:`register` adds one at run time (a plugin, a test's stub).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from methods.contract import Method

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
    # negative control: the strongest histology-using baseline on her2st (TESLA-style, PCC 0.35
    # at k = 2) fed histology whose position blocks are shuffled
    "shuffled": ("methods.controls", "ShuffledHistology", {"base": "tesla"}),
    "truth": ("methods.controls", "Truth", {}),
}


class UnknownMethodError(KeyError):
    """A method name that is not registered; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(name: str, module: str, cls: str, **fixed: Any) -> Callable[[], None]:
    """Register ``module:cls`` under ``name`` with fixed keyword arguments (replacing any entry);
    nothing is imported until the method is asked for.

    Returns a function that undoes this registration (restoring the previous entry, if any), so
    a test can register a stub and leave the registry as it found it.
    """
    if not name.isidentifier():
        raise ValueError(f"method name {name!r} is not an identifier; use e.g. 'my_method'")
    previous = _REGISTRY.get(name)
    _REGISTRY[name] = (module, cls, dict(fixed))

    def undo() -> None:
        if previous is None:
            _REGISTRY.pop(name, None)
        else:
            _REGISTRY[name] = previous

    return undo


def entry(name: str) -> tuple[str, str, dict[str, Any]]:
    """``(module, class name, fixed keyword arguments)`` registered under ``name`` (no import)."""
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(names())}")
    module, cls, fixed = _REGISTRY[name]
    return module, cls, dict(fixed)


def names() -> list[str]:
    """Registered method names, in registry order."""
    return list(_REGISTRY)


def resolve(spec: str) -> list[str]:
    """Turn ``"all"`` or ``"a,b"`` into a list of known names, in the order given.

    Raises :class:`UnknownMethodError` naming the unknown entries and the known ones.
    """
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
    """The class registered under ``name`` and its fixed keyword arguments (imports it now)."""
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(names())}")
    module, cls, fixed = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls), dict(fixed)


def create(name: str, **params: Any) -> Method:
    """Instantiate the method registered under ``name`` with ``params`` (e.g. preset, seed)."""
    cls, fixed = method_class(name)
    method = cls(**fixed, **params)
    method.name = name  # type: ignore[misc]  # the registry name, e.g. "bicubic"
    return method
