"""Super-resolution methods for spatial transcriptomics and their contract.

Import nothing heavy here: the registry imports each method's module only when it is asked for.
"""

from methods.contract import PRESETS, Method, Sample, StochasticMethod
from methods.registry import PluginError, UnknownMethodError, create, names, resolve

__all__ = [
    "PRESETS",
    "Method",
    "PluginError",
    "Sample",
    "StochasticMethod",
    "UnknownMethodError",
    "create",
    "names",
    "resolve",
]
