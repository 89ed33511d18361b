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
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

Preset = Literal["quick", "default", "paper"]
# quick: minutes on 2 CPU cores; paper: the published sizes (for a GPU); default: each method's
# recommended setting for the hardware it finds
PRESETS: tuple[str, ...] = ("quick", "default", "paper")


def device_preset(preset: Preset, on_gpu: bool) -> Preset:
    """The preset a method with device-dependent sizes runs: ``"default"`` is ``"paper"`` on a
    GPU and ``"quick"`` on the CPU; any other preset as given. Such a method keeps this as its
    ``preset``, so its run is named by what ran (``make run`` on a CPU names its rows as the
    page's ``--preset quick`` does)."""
    if preset == "default":
        return "paper" if on_gpu else "quick"
    return preset


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

    def sample_batches(
        self, samples: Sequence[Sample], k: int, seeds: Iterable[int]
    ) -> Iterator[np.ndarray]:
        """``sample(samples, k, seed)`` for each of ``seeds`` in turn, computed when asked for,
        so a caller may stop after any batch (:func:`draw_adaptive`). A sampler may share work
        across the batches that changes no draw (diffst: the encoded inputs and its conditioning
        streams); the weights must not change while the batches are drawn."""
        for seed in seeds:
            yield self.sample(samples, k, seed)

    def predict(self, samples: Sequence[Sample], k: int = 8) -> np.ndarray:
        return self.sample(samples, k, self.seed).mean(axis=1)


# --- K chosen by the error it leaves (``--draws auto``) -----------------------------------------

AUTO_DRAWS = "auto"  # the runner's --draws value that hands K to DEFAULT_DRAW_RULE


@dataclass(frozen=True)
class DrawRule:
    """When a sampler stops drawing: once more draws could no longer move the mean's PCC.

    The point prediction is the mean of K draws, ``m_K = m + e``: ``m`` the model's conditional
    mean, ``e`` Monte-Carlo error whose variance at position ``i`` is ``s2_i / K`` (``s2_i`` the
    variance of one draw there). For one (input, gene) over its ``P`` in-tissue positions let

    - ``S2 = mean_i s2_i``, the draws' squared RMS spread, so ``se2 = S2 / K`` is the squared
      RMS standard error of the mean;
    - ``V = Var_i(m)``, the spread of the mean map across positions: the signal a PCC sees.

    For a truth ``y`` that the draws do not depend on, ``E PCC(m_K, y) ~ a(K) PCC(m, y)`` with the
    attenuation ``a(K) = 1 / sqrt(1 + S2 / (K V))``. Drawing on to ``max_draws`` could therefore
    change that pair's expected PCC by at most (``|PCC| <= 1``)

        ``gain(K) = a(max_draws) - a(K)``.

    Estimates after K draws (running sums, float64): ``s2_i`` unbiased over the K draws;
    ``V = max(Var_i(m_K) - S2 / K, sqrt(2 / (P - 1)) S2 / K)``: the running mean's variance less
    the Monte-Carlo share it holds, floored at the sampling error of that variance (a signal
    below it cannot be told from noise and counts as that large, the conservative side: it keeps
    drawing); ``S2 = 0`` (identical draws) gives gain 0. Pairs with fewer than 2 in-tissue
    positions are left out. Draws come in batches of ``batch``; drawing stops at the first
    ``K >= min_draws`` where the mean of ``gain(K)`` over every (input, gene) is at most ``tol``,
    else at ``max_draws``, so K is a multiple of ``batch`` in ``[min_draws, max_draws]``. The
    rule aims at the PCC alone (RMSE's Monte-Carlo share, ``S2 / K``, falls with the same K).
    Chosen on validation regions only: docs/decisions.md, "K chosen by the error it leaves".
    """

    tol: float = 0.0025
    batch: int = 8
    min_draws: int = 16
    max_draws: int = 128

    def __post_init__(self) -> None:
        if not (self.tol >= 0 and math.isfinite(self.tol)):
            raise ValueError(f"DrawRule: tol must be finite and >= 0, got {self.tol}")
        if self.batch < 1 or not 2 <= self.min_draws <= self.max_draws:
            raise ValueError(
                f"DrawRule: need batch >= 1 and 2 <= min_draws <= max_draws, got batch "
                f"{self.batch}, min {self.min_draws}, max {self.max_draws}"
            )
        if self.min_draws % self.batch or self.max_draws % self.batch:
            raise ValueError(
                f"DrawRule: min_draws {self.min_draws} and max_draws {self.max_draws} must be "
                f"multiples of batch {self.batch}"
            )

    def label(self) -> str:
        """The rule as a record's ``draw_rule`` parameter: ``tol=...,batch=...,K=min..max``."""
        return f"tol={self.tol:g},batch={self.batch},K={self.min_draws}..{self.max_draws}"


DEFAULT_DRAW_RULE = DrawRule()


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch ``index`` of :func:`draw_adaptive`: ``seed`` itself for the first (its
    draws are ``sample(samples, batch, seed)``'s), then a ``SeedSequence([seed, index])`` child,
    so no two batches of a cell, nor of cells with other seeds, share a stream."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def draw_gain(
    total: np.ndarray, squares: np.ndarray, k: int, mask: np.ndarray, max_draws: int
) -> float:
    """The mean over (input, gene) of :class:`DrawRule`'s ``gain(k)`` after ``k >= 2`` draws.

    ``total``, ``squares``: ``(N, G, H, W)`` sums over the draws of each value and of its square;
    ``mask``: ``(N, H, W)`` in-tissue positions. NaN when no pair has 2 in-tissue positions.
    """
    total = np.asarray(total, dtype=np.float64)
    squares = np.asarray(squares, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)[:, None]  # (N, 1, H, W)
    p = m.sum(axis=(-2, -1)).astype(np.float64)  # (N, 1) in-tissue positions per input
    mean = total / k
    s2 = np.maximum(squares - k * mean**2, 0.0) / (k - 1)  # per-position variance of one draw
    with np.errstate(invalid="ignore", divide="ignore"):
        big_s2 = np.where(m, s2, 0.0).sum(axis=(-2, -1)) / p  # (N, G)
        mu = np.where(m, mean, 0.0).sum(axis=(-2, -1)) / p
        var_m = np.where(m, (mean - mu[..., None, None]) ** 2, 0.0).sum(axis=(-2, -1)) / p
        se2 = big_s2 / k
        v = np.maximum(var_m - se2, np.sqrt(2.0 / (p - 1)) * se2)
        rho = np.where(big_s2 > 0, big_s2 / np.where(v > 0, v, 1.0), 0.0)
        gain = 1.0 / np.sqrt(1.0 + rho / max_draws) - 1.0 / np.sqrt(1.0 + rho / k)
    valid = np.broadcast_to(p >= 2, gain.shape)
    return float(gain[valid].mean()) if valid.any() else math.nan


def draw_adaptive(
    method: StochasticMethod,
    samples: Sequence[Sample],
    seed: int,
    rule: DrawRule = DEFAULT_DRAW_RULE,
) -> np.ndarray:
    """Draws per input until ``rule`` stops (:class:`DrawRule`): ``(N, K, G, H, W)`` float32.

    ``method`` is a :class:`StochasticMethod`; batch ``b`` is
    ``sample(samples, rule.batch, batch_seed(seed, b))``, in order, drawn through
    :meth:`~StochasticMethod.sample_batches` (which may share work across batches), so one
    seed gives the same K and the same draws. The K used is ``result.shape[1]``. The method's
    "sample" progress is reported on one scale, batches after one another, out of the
    ``max_draws`` total.
    """
    mask = stack(samples, "hr_mask")
    report, batches = method.progress, []
    total = squares = None
    done = {"calls": 0}

    def relay(phase: str, step: int, of: int, loss: float | None = None) -> bool:
        done["last"] = step
        if report is None:
            return False
        return bool(report(phase, done["calls"] + step, of * (rule.max_draws // rule.batch), loss))

    seeds = (batch_seed(seed, index) for index in range(rule.max_draws // rule.batch))
    drawn = method.sample_batches(samples, rule.batch, seeds)
    try:
        for _ in range(rule.max_draws // rule.batch):
            done["last"] = 0
            method.progress = relay if report is not None else None
            part = np.asarray(next(drawn))
            method.progress = report
            done["calls"] += done["last"]
            if part.ndim != 5 or part.shape[1] != rule.batch:
                raise ValueError(
                    f"sample() returned {part.shape}, expected (N, {rule.batch}, G, H, W)"
                )
            batches.append(part.astype(np.float32, copy=False))
            wide = part.astype(np.float64)
            total = wide.sum(axis=1) if total is None else total + wide.sum(axis=1)
            sq = (wide**2).sum(axis=1)
            squares = sq if squares is None else squares + sq
            k = rule.batch * len(batches)
            if (
                k >= rule.min_draws
                and draw_gain(total, squares, k, mask, rule.max_draws) <= rule.tol
            ):
                break
    finally:
        method.progress = report
        drawn.close()  # whatever the sampler kept for further batches goes now
    return np.concatenate(batches, axis=1)
