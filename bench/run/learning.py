"""Inside a cell: progress lines, learning curves and the convergence verdict.

A method reports its long loops through :meth:`methods.contract.Method.report`; the cell hands
it a :class:`Watcher`, which

- draws one progress line per phase under the grid's bar (tqdm: steps, steps/s, ETA; training
  with the running loss), so a long fit or sampling pass never looks frozen;
- for a *trained* method (one that reports "train" steps) scores the point prediction on the
  split's validation regions (:attr:`bench.data.splits.Split.validation`: carved from the
  training regions, held out of every fit, never a test region) every ``EVAL_EVERY`` = 1/20 of
  the step budget, and once half an interval in (``FIRST`` = 1/40: a diffusion model's score
  before it has learned its residual can stay its best; :func:`checkpoint_steps`, which hold
  25/50/75/100%): PCC and RMSE, and CRPS for
  samplers (``VAL_DRAWS`` draws, seed 0), with the mean training loss since the previous
  checkpoint. Scoring there costs prediction time, counted in the fit time (and in
  :attr:`Watcher.seconds`, which the record keeps as ``timings["validation_s"]``); the method's
  training draws do not change (its predictions draw from their own generators);
- stops training early and keeps the best state (below).

**Early stopping**: the watcher keeps the best validation PCC so far and, where the method has
one (:meth:`methods.contract.Method.snapshot`), a copy of its state at that step. After
``PATIENCE`` = 5 regular evaluations in a row (a quarter of the budget) that have not raised the
validation PCC by at least ``MIN_DELTA`` = ``MIN_GAIN`` = 0.01 above its value at the last
evaluation that did, not before ``WARM_UP`` = half of the budget has been trained, not while
the curve is rising (the convergence rule below does not hold at this step: the last quarter
gained ``MIN_GAIN``), and not while the best is still the first score (a diffusion model's
score before it has learned anything, about bicubic for a residual one, can stay its best for
longer than ``PATIENCE`` while it climbs back more slowly than ``MIN_GAIN`` a quarter; a fit
that never beats it trains to its budget and restores it), the watcher answers the method's
next "train" report with True, a stop request (its loop ends; one that ignores it trains on, and
is scored on, to its budget). The best state is chosen among all
evaluations, warm-up included. The runner then restores the best snapshot
(:meth:`~methods.contract.Method.restore`) before the test predictions. The curve records
``stopped_at`` (the last step trained), ``best_step`` (the step of the best validation PCC; the
state predicted with when ``restored``) and ``improving``: the best was the last evaluation at
the full budget, i.e. the method was still improving at its maximum.

**Convergence rule** (:func:`converged`): a trained method *converged within its budget* when
its validation PCC at the end of training is less than ``MIN_GAIN`` = 0.01 above its validation
PCC a quarter of the budget earlier (at 75% of the budget when it trained to the end: the last
quarter bought less than 0.01; a fall counts as converged too: more steps would not help). A fit
that early stopping ended has converged by this rule (the stop waits for the rule to hold). No
verdict (None) without both points, e.g. without validation regions or for a fit resumed less
than a quarter of the budget before its end.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any

import numpy as np

from bench.run.records import Curve
from bench.scoring import diversity, metrics
from methods.contract import Sample, stack

__all__ = [
    "EVALUATIONS",
    "EVAL_EVERY",
    "FIRST",
    "MIN_DELTA",
    "MIN_GAIN",
    "PATIENCE",
    "VAL_DRAWS",
    "WARM_UP",
    "Watcher",
    "converged",
    "verdict_points",
]

EVALUATIONS = 20  # regular validation points per budget
EVAL_EVERY = 1 / EVALUATIONS  # fraction of the step budget between validation points
# one more point half an interval in (docs/decisions.md, "Early stopping on validation")
FIRST = EVAL_EVERY / 2
VAL_DRAWS = 4  # draws per validation region for samplers
MIN_GAIN = 0.01  # validation PCC the last quarter must add for "not converged"
PATIENCE = EVALUATIONS // 4  # evaluations without a MIN_DELTA gain before a stop: a quarter
MIN_DELTA = MIN_GAIN  # validation PCC gain that counts as an improvement for PATIENCE
# share of the step budget trained before early stopping may stop (the best state is still
# chosen among every evaluation): a diffusion model's validation PCC first dips below its
# start and recovers later than PATIENCE (docs/decisions.md, "Early stopping on validation")
WARM_UP = 0.5


def checkpoint_steps(total: int) -> list[int]:
    """The steps (1-based, distinct, increasing) scored for a budget of ``total`` steps:
    ``ceil(total / (2 EVALUATIONS))`` (``FIRST``) and ``ceil(total i / EVALUATIONS)`` for
    i = 1 .. EVALUATIONS."""
    regular = {max(1, -(-total * (i + 1) // EVALUATIONS)) for i in range(EVALUATIONS)}
    return sorted(regular | {max(1, -(-total // (2 * EVALUATIONS)))})


def verdict_points(curve: Curve) -> tuple[float | None, float | None]:
    """The two validation PCCs the convergence rule compares: ``(before, last)``, the PCC at the
    last step trained (``stopped_at``; the budget for curves recorded before early stopping),
    checkpoint ``i`` of :func:`checkpoint_steps`, and at checkpoint ``i - EVALUATIONS / 4``, a
    quarter of the budget before it (75% of a full budget; for an early stop, the last point
    that gained ``MIN_DELTA``). None for a point that is missing, not finite, or not a
    checkpoint."""
    if not curve or not curve.total:
        return None, None
    points = dict(zip(curve.step, curve.pcc, strict=True))
    end, total = curve.stopped_at or curve.total, curve.total
    at = [i for i in range(1, EVALUATIONS + 1) if -(-total * i // EVALUATIONS) == end]
    if not at or at[-1] <= EVALUATIONS // 4:
        return None, points.get(end)
    return points.get(-(-total * (at[-1] - EVALUATIONS // 4) // EVALUATIONS)), points.get(end)


def converged(curve: Curve) -> bool | None:
    """The verdict of the module docstring's rule on :func:`verdict_points`; None without
    both points."""
    before, last = verdict_points(curve)
    if last is None or before is None:
        return None
    return bool(last - before < MIN_GAIN)


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
        # the method's snapshot() at curve.best_step (None: none taken, or the method has none)
        self.best_state: object | None = None
        self.stop = False  # early stopping has asked the method to stop (module docstring)
        self._best: float | None = None  # the best validation PCC so far
        self._reference: float | None = None  # the PCC at the last evaluation that gained
        self._waited = 0  # evaluations since then
        self._bar: Any = None
        self._phase = ""
        self._losses: list[float] = []
        self._scoring = False
        self._steps: tuple[int, set[int]] = (-1, set())  # (total, its checkpoint steps)
        self.seconds = 0.0  # wall time spent scoring validation

    def __call__(self, phase: str, step: int, total: int, loss: float | None) -> bool:
        """Show the step; for "train", score validation at a checkpoint and return the stop
        request (True once early stopping has fired; False before, and for other phases)."""
        if self._scoring:
            return False  # the validation pass's own sampling: no bar, no recursion
        self._show(phase, step, total, loss)
        if phase != "train":
            return False
        if loss is not None:
            self._losses.append(float(loss))
        self.curve.total = total
        self.curve.stopped_at = step
        if self._steps[0] != total:
            self._steps = (total, set(checkpoint_steps(total)))
        if self.validation and step in self._steps[1]:
            self._score(step)
            self._early_stopping(step)
        return self.stop

    def restore_best(self) -> bool:
        """After ``fit``: put the best validation state back into the method (its
        ``restore``) when a snapshot was taken; records ``curve.restored``. Returns whether it
        did; the snapshot is dropped either way."""
        state, self.best_state = self.best_state, None
        if state is None:
            return False
        try:
            self.method.restore(state)
        except NotImplementedError:  # a snapshot() without a restore(): the last state stays
            return False
        self.curve.restored = True
        return True

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

    def _early_stopping(self, step: int) -> None:
        """Keep the best point (and a snapshot of it), count evaluations without a ``MIN_DELTA``
        gain and ask for a stop after ``PATIENCE`` of them (module docstring)."""
        c, pcc = self.curve, self.curve.pcc[-1]
        if pcc is not None and (self._best is None or pcc > self._best):
            self._best, c.best_step = pcc, step
            snapshot = getattr(self.method, "snapshot", None)
            self.best_state = snapshot() if snapshot is not None else None
        c.improving = c.best_step == step == c.total
        if pcc is not None and (self._reference is None or pcc >= self._reference + MIN_DELTA):
            self._reference, self._waited = pcc, 0
        else:
            self._waited += 1
        if (
            self._waited >= PATIENCE
            and WARM_UP * c.total <= step < c.total
            and c.best_step != c.step[0]
            and converged(dataclasses.replace(c, stopped_at=step)) is not False
        ):
            self.stop = True

    def _score(self, step: int) -> None:
        hr, mask = stack(self.validation, "hr"), stack(self.validation, "hr_mask")
        inputs = [s.without_target() for s in self.validation]
        self._scoring = True
        start = time.perf_counter()
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
            self.seconds += time.perf_counter() - start
        c = self.curve
        c.step.append(step)
        c.loss.append(float(np.mean(self._losses)) if self._losses else None)
        self._losses = []
        c.pcc.append(_finite(np.nanmean(metrics.pcc(point, hr, mask, device=self.device))))
        c.rmse.append(_finite(np.nanmean(metrics.rmse(point, hr, mask, device=self.device))))


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
