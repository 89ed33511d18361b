"""Inside a cell: progress lines, learning curves and the convergence verdict.

A method reports its long loops through :meth:`methods.contract.Method.report`; the cell hands
it a :class:`Watcher`, which

- draws one progress line per phase under the grid's bar (tqdm: steps, steps/s, ETA; training
  with the running loss), so a long fit or sampling pass never looks frozen;
- for a *trained* method (one that reports "train" steps) scores the point prediction on the
  split's validation regions (:attr:`bench.data.splits.Split.validation`: carved from the
  training regions, held out of every fit, never a test region) at ``CHECKPOINTS`` of the step
  budget: PCC and RMSE, and CRPS for samplers (``VAL_DRAWS`` draws, seed 0), with the mean
  training loss since the previous checkpoint. Scoring there costs prediction time, counted in
  the fit time; the method's training draws do not change (its predictions draw from their own
  generators).

**Convergence rule** (:func:`converged`): a trained method *converged within its budget* when
its validation PCC at the end of training is less than ``MIN_GAIN`` = 0.01 above its validation
PCC at 75% of the budget (the last quarter of the budget bought less than 0.01; a fall counts as
converged too: more steps would not help). No verdict (None) without both checkpoints, e.g.
without validation regions or for a fit resumed past 75%.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from bench.run.records import Curve
from bench.scoring import diversity, metrics
from methods.contract import Sample, stack

__all__ = ["CHECKPOINTS", "MIN_GAIN", "VAL_DRAWS", "Watcher", "converged"]

CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)  # fractions of the step budget scored on validation
VAL_DRAWS = 4  # draws per validation region for samplers
MIN_GAIN = 0.01  # validation PCC the last quarter must add for "not converged"


def checkpoint_steps(total: int) -> list[int]:
    """The steps (1-based, distinct, increasing) scored for a budget of ``total`` steps."""
    return sorted({max(1, math.ceil(total * q)) for q in CHECKPOINTS})


def converged(curve: Curve) -> bool | None:
    """The verdict of the module docstring's rule; None without the 75% and final points."""
    if not curve or not curve.total:
        return None
    points = dict(zip(curve.step, curve.pcc, strict=True))
    last, three_quarters = points.get(curve.total), points.get(math.ceil(curve.total * 0.75))
    if last is None or three_quarters is None:  # no such checkpoint, or a non-finite score
        return None
    return bool(last - three_quarters < MIN_GAIN)


class Watcher:
    """``progress(phase, step, total, loss)`` for one cell (see the module docstring)."""

    def __init__(
        self,
        method: Any,
        validation: list[Sample],
        device: str,
        label: str,
        bars: bool | None = None,
        line: int = 1,
    ) -> None:
        self.method = method
        self.validation = validation
        self.device = device
        self.label = label
        self.bars = bars  # tqdm's disable=None: only on a terminal
        self.line = line  # the terminal line under the grid's bar
        self.curve = Curve(validation=[s.region for s in validation])
        self._bar: Any = None
        self._phase = ""
        self._losses: list[float] = []
        self._scoring = False

    def __call__(self, phase: str, step: int, total: int, loss: float | None) -> None:
        if self._scoring:
            return  # the validation pass's own sampling: no bar, no recursion
        self._show(phase, step, total, loss)
        if phase != "train":
            return
        if loss is not None:
            self._losses.append(float(loss))
        self.curve.total = total
        if self.validation and step in checkpoint_steps(total):
            self._score(step)

    def close(self) -> None:
        """Close the progress line (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _show(self, phase: str, step: int, total: int, loss: float | None) -> None:
        from tqdm import tqdm

        if self._bar is None or phase != self._phase or step < self._bar.n:
            self.close()
            self._phase = phase
            self._bar = tqdm(
                total=total,
                initial=step - 1,
                desc=f"  {self.label} {phase}",
                unit="step",
                leave=False,
                position=self.line,
                file=sys.stderr,
                mininterval=1.0,
                disable=None if self.bars is None else not self.bars,
            )
        self._bar.update(step - self._bar.n)
        if loss is not None and step % 20 == 0:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if step >= total:
            self.close()

    def _score(self, step: int) -> None:
        hr, mask = stack(self.validation, "hr"), stack(self.validation, "hr_mask")
        inputs = [s.without_target() for s in self.validation]
        self._scoring = True
        try:
            if self.method.stochastic:
                draws = np.asarray(self.method.sample(inputs, VAL_DRAWS, 0), dtype=np.float64)
                point = draws.mean(axis=1)
                crps = float(np.nanmean(diversity.crps(draws, hr, mask, device=self.device)))
                self.curve.crps.append(crps)
            else:
                point = np.asarray(self.method.predict(inputs), dtype=np.float64)
        finally:
            self._scoring = False
        c = self.curve
        c.step.append(step)
        c.loss.append(float(np.mean(self._losses)) if self._losses else None)
        self._losses = []
        c.pcc.append(_finite(np.nanmean(metrics.pcc(point, hr, mask, device=self.device))))
        c.rmse.append(_finite(np.nanmean(metrics.rmse(point, hr, mask, device=self.device))))


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
