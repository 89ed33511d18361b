"""The method contract: what a super-resolution method receives and must return.

A method sees :class:`Sample` objects. Training samples carry the HR target (``hr``); samples
given to :meth:`Method.predict` never do (the runner strips it), so no method can read the target
at prediction time.

Arrays (all channel-first, NumPy):

- ``lr``       ``(G, h, w)`` float32, the LR map: k x k blocks of HR counts summed, then
  ``log1p(counts / spot_total * 1e4)`` (the dataset's scale, recorded in its split); 0 outside
  ``lr_mask``.
- ``lr_mask``  ``(h, w)`` bool, LR spots (blocks with at least half their HR positions in tissue).
- ``hr_mask``  ``(H, W)`` bool, in-tissue HR positions (``H = k h``, ``W = k w``). This is
  geometry known from the image and the spot layout, not expression, so methods may use it.
- ``image``    ``(C, H p, W p)`` uint8, the H&E (C = 3) or morphology (C = 1) crop covering the
  HR grid, ``p`` pixels per HR position; HR position ``(i, j)`` covers image rows
  ``[i p, (i + 1) p)`` and columns ``[j p, (j + 1) p)``.
- ``hr``       ``(G, H, W)`` float32 target on the same scale as ``lr``; 0 outside ``hr_mask``;
  ``None`` at prediction time.

Batches are ``(N, G, H, W)``; stochastic draws are ``(N, K, G, H, W)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

Preset = Literal["quick", "default", "paper"]
# quick: minutes on 2 CPU cores; paper: the published sizes (for a GPU); default: each method's
# recommended setting for the hardware it finds
PRESETS: tuple[str, ...] = ("quick", "default", "paper")


@dataclass(frozen=True, eq=False)
class Sample:
    """One region of one tissue section, at both resolutions (see the module docstring)."""

    region: str
    genes: tuple[str, ...]
    scale: int
    lr: np.ndarray
    lr_mask: np.ndarray
    hr_mask: np.ndarray
    image: np.ndarray
    hr: np.ndarray | None = None

    def __post_init__(self) -> None:
        g, h, w = self.lr.shape
        if g != len(self.genes):
            raise ValueError(f"sample {self.region}: lr has {g} genes, expected {len(self.genes)}")
        if self.lr_mask.shape != (h, w):
            raise ValueError(f"sample {self.region}: lr_mask {self.lr_mask.shape} != {(h, w)}")
        if self.hr_mask.shape != (h * self.scale, w * self.scale):
            raise ValueError(
                f"sample {self.region}: hr_mask {self.hr_mask.shape} is not lr {(h, w)} "
                f"x scale {self.scale}"
            )
        if self.hr is not None and self.hr.shape != (g, *self.hr_mask.shape):
            raise ValueError(
                f"sample {self.region}: hr {self.hr.shape} != {(g, *self.hr_mask.shape)}"
            )

    @property
    def hr_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the HR grid."""
        return self.hr_mask.shape  # type: ignore[return-value]

    def without_target(self) -> Sample:
        """The same sample with ``hr`` removed, as given to ``predict``."""
        return dataclasses.replace(self, hr=None)


def stack(samples: Sequence[Sample], field: str) -> np.ndarray:
    """Stack one array field of equally sized samples into a batch, e.g. ``lr`` -> (N, G, h, w)."""
    return np.stack([getattr(s, field) for s in samples])


# progress(phase, step, total, loss) -> stop request: see Method.report
Progress = Callable[[str, int, int, "float | None"], "bool | None"]


def module_states(**modules: Any) -> dict[str, dict[str, Any]]:
    """A deep copy of named torch modules' ``state_dict``s (tensors cloned, on their device):
    :meth:`Method.snapshot` for a method whose trainable state is these modules."""
    return {
        name: {k: v.detach().clone() for k, v in module.state_dict().items()}
        for name, module in modules.items()
    }


def load_module_states(state: dict[str, dict[str, Any]], **modules: Any) -> None:
    """Load a :func:`module_states` copy back into the same named modules
    (:meth:`Method.restore`)."""
    for name, module in modules.items():
        module.load_state_dict(state[name])


class Method:
    """A super-resolution method: ``fit`` on training samples, ``predict`` HR maps.

    Subclasses set ``name`` and may take keyword-only hyperparameters in ``__init__``; every
    hyperparameter is returned by :meth:`params` so runs are named and logged by it.
    """

    name: ClassVar[str] = "method"
    stochastic: ClassVar[bool] = False
    control: ClassVar[str | None] = None  # "negative" / "positive" for control methods
    # only a positive control may see the target at prediction time (the truth passed through)
    needs_target: ClassVar[bool] = False

    def __init__(self, *, preset: Preset = "default", seed: int = 0) -> None:
        self.preset = preset
        self.seed = seed
        # a private folder the runner may give (checkpoints, caches); None: keep nothing on disk
        self.workdir: Path | None = None
        # seconds of fit() spent by earlier, interrupted runs whose checkpoint fit() resumed from
        # (the runner adds them to the recorded fit time, so a resumed cell's cost is its whole)
        self.resumed_fit_s: float = 0.0
        # set by the runner (or a benchmark): called as progress(phase, step, total, loss) by
        # :meth:`report`; it may call predict() or sample() mid-fit (learning curves)
        self.progress: Progress | None = None

    def report(self, phase: str, step: int, total: int, loss: float | None = None) -> bool:
        """Tell the runner that ``step`` of ``total`` is done in ``phase``: "train" for optimiser
        steps of :meth:`fit` (with the training ``loss``; a method that reports them is *trained*
        and gets learning curves), "sample" for network evaluations of a sampler.

        Returns True when the runner asks training to stop now (early stopping on validation,
        :mod:`bench.run.learning`): a trained method's loop ends on it, and the runner then puts
        back the best validation state (:meth:`snapshot`, :meth:`restore`). A loop that ignores
        it trains on, as before."""
        if self.progress is None:
            return False
        return bool(self.progress(phase, step, total, loss))

    def snapshot(self) -> object | None:
        """A copy of the trainable state as it is now (e.g. :func:`module_states` of the networks
        and EMA weights that ``predict`` uses), taken mid-fit when validation improves; it must
        not change the training run (no random draws). None (the default): not supported, and
        the predictions come from the state at the end of ``fit``."""
        return None

    def restore(self, state: object) -> None:
        """Put back a :meth:`snapshot` after ``fit``, before the test predictions."""
        raise NotImplementedError(f"{type(self).__name__} has no restore()")

    def params(self) -> dict[str, Any]:
        """Hyperparameters that define this run (JSON-serialisable)."""
        return {"preset": self.preset}

    def label_params(self) -> dict[str, Any]:
        """The parameters that name a run, ``method[a=1,b=2]`` (default: all of :meth:`params`)."""
        return self.params()

    def fit(self, train: Sequence[Sample]) -> None:
        """Learn from training samples (each with ``hr``). Training-free methods do nothing."""

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        """HR prediction ``(N, G, H, W)`` float32, dataset scale, for samples without ``hr``."""
        raise NotImplementedError


class StochasticMethod(Method):
    """A generative method: draws K HR samples per input; the point prediction is their mean."""

    stochastic: ClassVar[bool] = True

    def sample(self, samples: Sequence[Sample], k: int, seed: int) -> np.ndarray:
        """``k`` draws per input, ``(N, K, G, H, W)`` float32, reproducible for ``seed``."""
        raise NotImplementedError

    def predict(self, samples: Sequence[Sample], k: int = 8) -> np.ndarray:
        return self.sample(samples, k, self.seed).mean(axis=1)
