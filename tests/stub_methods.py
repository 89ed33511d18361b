"""Methods that exist only for tests: a stochastic one and ones that misbehave."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from methods.contract import Method, Sample, StochasticMethod
from methods.interpolation import Interpolation


class NoisyBicubic(StochasticMethod):
    """Bicubic plus seeded Gaussian noise: a stand-in generative model."""

    def sample(self, samples: Sequence[Sample], k: int, seed: int) -> np.ndarray:
        base = Interpolation(mode="bicubic").predict(samples)
        rng = np.random.default_rng(seed)
        return base[:, None] + 0.3 * rng.standard_normal((base.shape[0], k, *base.shape[1:]))


class Broken(Method):
    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        raise RuntimeError("deliberately broken")


class NotFinite(Method):
    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        h, w = samples[0].hr_shape
        return np.full((len(samples), len(samples[0].genes), h, w), np.nan, np.float32)


class Peeking(Method):
    """Tries to read the target at prediction time."""

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return np.stack([s.hr for s in samples])
