"""Deprecated alias of :mod:`bench.run.resources` for the methods-side benchmarks
(``benchmarks/diffusion_learning.py``, ``benchmarks/diffusion_speed.py``) until they import the
wing directly; delete it then. New code imports :mod:`bench.run.resources`."""

from bench.run.resources import code_version, device, device_name

__all__ = ["code_version", "device", "device_name"]
