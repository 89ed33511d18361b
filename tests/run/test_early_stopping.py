"""Early stopping on validation (bench/run/learning.py): the stop request, the best checkpoint
restored for the test predictions, and the record's ``stopped_at`` / ``best_step``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.run.learning import (
    EVALUATIONS,
    MIN_DELTA,
    MIN_GAIN,
    PATIENCE,
    WARM_UP,
    Watcher,
    checkpoint_steps,
    converged,
)
from methods.contract import Method, Sample

SLOW = pytest.mark.slow  # fits a U-Net (the diffusion trainer's), as test_baselines_diffusion
# the trained methods, their U-Net ones out of the inner loop (``make test-fast``)
KINDS = [pytest.param(k, marks=SLOW) for k in ("unet", "sr3", "diffst")] + ["histogene"]
TOTAL = 400  # steps of the synthetic curves, scored every EVERY steps
EVERY = TOTAL // EVALUATIONS
HALF = int(WARM_UP * TOTAL)  # no stop before: a scored step here


def stop_step(peak: int) -> int:
    """Where a curve peaking at ``peak`` stops: PATIENCE scores past it, not before HALF."""
    return max(peak + PATIENCE * EVERY, HALF)


def region(name: str, seed: int, g: int = 3, h: int = 8) -> Sample:
    """One square region of ``g`` random genes on an ``h x h`` HR grid (x2)."""
    hr = np.random.default_rng(seed).random((g, h, h)).astype(np.float32)
    return Sample(
        region=name,
        genes=tuple(f"g{i}" for i in range(g)),
        scale=2,
        lr=hr.reshape(g, h // 2, 2, h // 2, 2).mean(axis=(2, 4)),
        lr_mask=np.ones((h // 2, h // 2), bool),
        hr_mask=np.ones((h, h), bool),
        image=np.random.default_rng(seed + 99).integers(0, 256, (3, 4 * h, 4 * h), dtype=np.uint8),
        hr=hr,
    )


class Peaked(Method):
    """A "trained" method whose only weight is the last step it trained (``weights``).

    On the regions of ``truth`` (region -> HR map) its prediction mixes the truth and fixed noise
    with weight ``mix(weights)``, so its validation PCC rises and falls exactly as ``mix`` (for a
    fixed noise the PCC is increasing in the weight); on any other region it predicts the map
    ``weights + ramp``, so ``pred[0, 0, 0, 0]`` reveals the state it predicts with.
    """

    name = "peaked"

    def __init__(
        self,
        *,
        truth: dict[str, np.ndarray],
        peak: int,
        total: int = TOTAL,
        width: int = 200,
        slope: float = 0.0,
        obey: bool = True,
        preset: str = "default",
        seed: int = 0,
    ) -> None:
        super().__init__(preset=preset, seed=seed)
        self.truth, self.peak, self.total, self.width = truth, peak, total, width
        self.slope, self.obey = slope, obey
        self.weights = 0

    def params(self):
        return {"preset": self.preset, "peak": self.peak, "total": self.total}

    def mix(self, step: int) -> float:
        """0.4 at ``peak``, falling by 0.4 every ``width`` steps on both sides (past ``peak``,
        with ``slope``, a rise of ``slope`` per step instead)."""
        if self.slope and step > self.peak:
            return 0.4 + self.slope * (step - self.peak)
        return 0.4 * (1 - abs(step - self.peak) / self.width)

    def fit(self, train):
        for step in range(1, self.total + 1):
            self.weights = step
            if self.report("train", step, self.total, 1.0 / step) and self.obey:
                break

    def predict(self, samples):
        out = []
        for s in samples:
            g, (h, w) = len(s.genes), s.hr_shape
            if s.region in self.truth:
                noise = np.random.default_rng(12345).random((g, h, w))
                m = self.mix(self.weights)
                out.append(m * self.truth[s.region] + (1 - m) * noise)
            else:
                ramp = np.arange(g * h * w).reshape(g, h, w) / (g * h * w)
                out.append(self.weights + ramp)
        return np.stack(out).astype(np.float32)

    def snapshot(self):
        return self.weights

    def restore(self, state):
        self.weights = state


class Unrestorable(Peaked):
    """A method written before early stopping: no snapshot/restore, ignores the stop request."""

    snapshot = Method.snapshot
    restore = Method.restore


VAL = [region("v1", 1), region("v2", 2)]
TEST = [region("t1", 3).without_target()]


def watched(method: Method) -> Watcher:
    watcher = Watcher(method, VAL, "cpu", "test", bars=False)
    method.progress = watcher
    method.fit([region("train", 0)])
    return watcher


def truth() -> dict[str, np.ndarray]:
    return {s.region: s.hr for s in VAL}


def test_the_synthetic_curve_gains_more_than_min_delta_every_point_up_to_its_peak():
    peak = 80
    c = watched(Peaked(truth=truth(), peak=peak)).curve
    up = [p for s, p in zip(c.step, c.pcc, strict=True) if s <= peak]
    down = [p for s, p in zip(c.step, c.pcc, strict=True) if s >= peak]
    assert all(b - a >= 2 * MIN_DELTA for a, b in zip(up, up[1:], strict=False))
    assert all(b < a for a, b in zip(down, down[1:], strict=False))


@pytest.mark.parametrize("peak", [40, 80, 140])
def test_early_stopping_restores_the_best_checkpoint(peak):
    method = Peaked(truth=truth(), peak=peak)
    watcher = watched(method)
    c = watcher.curve
    stopped = stop_step(peak)  # PATIENCE scores past the peak without a gain, not before HALF
    assert watcher.stop and c.stopped_at == stopped and method.weights == stopped
    assert c.step == [s for s in checkpoint_steps(TOTAL) if s <= stopped]
    assert c.best_step == peak and c.pcc[c.step.index(peak)] == max(c.pcc)
    assert not c.improving and not c.restored
    assert watcher.restore_best() and c.restored and method.weights == peak
    assert method.predict(TEST)[0, 0, 0, 0] == peak  # the test prediction uses step s*
    assert watcher.best_state is None and not watcher.restore_best()  # dropped once used
    assert converged(c) is True  # stopped early: the last quarter bought less than MIN_GAIN


@pytest.mark.parametrize("total", [150, 401, 1000])
def test_an_early_stop_is_a_converged_verdict_whatever_the_budget(total):
    method = Peaked(truth=truth(), peak=total // 5, total=total)
    watcher = watched(method)
    c = watcher.curve
    assert watcher.stop and c.stopped_at < total and converged(c) is True
    assert c.step == checkpoint_steps(total)[: len(c.step)]


class Dipping(Peaked):
    """A diffusion-like curve: validation PCC starts high, dips for longer than PATIENCE, then
    climbs above its start and peaks at ``peak``."""

    def mix(self, step: int) -> float:
        if step <= 60:
            return 0.3 - 0.2 * step / 60  # 0.3 -> 0.1
        if step <= self.peak:
            return 0.1 + 0.3 * (step - 60) / (self.peak - 60)  # -> 0.4
        return 0.4 - 0.4 * (step - self.peak) / 200


def test_no_stop_before_warm_up_so_a_dip_longer_than_patience_recovers():
    method = Dipping(truth=truth(), peak=300)
    watcher = watched(method)
    c = watcher.curve
    start = c.pcc[0]
    dip = [p for s, p in zip(c.step, c.pcc, strict=True) if s <= EVERY * (PATIENCE + 1)]
    assert all(p < start for p in dip[1:])  # below the first score for more than PATIENCE
    assert c.stopped_at == stop_step(300) and c.best_step == 300 and max(c.pcc) > start
    assert watcher.restore_best() and method.weights == 300
    # without the warm-up it would have stopped in the dip, at the first score's PATIENCE
    assert EVERY + PATIENCE * EVERY < HALF


def test_the_best_state_may_come_from_the_warm_up():
    method = Peaked(truth=truth(), peak=40)  # falls after 40 for good
    watcher = watched(method)
    c = watcher.curve
    assert c.stopped_at == HALF and c.best_step == 40
    assert watcher.restore_best() and method.weights == 40


def test_gains_below_min_delta_do_not_hold_off_the_stop_but_still_pick_the_best():
    method = Peaked(truth=truth(), peak=100, slope=1e-5)  # after 100: +1e-5 a step
    watcher = watched(method)
    c = watcher.curve
    stopped = 100 + PATIENCE * EVERY
    assert c.stopped_at == stopped and c.best_step == stopped  # each point a new best, barely
    assert c.pcc[-1] - c.pcc[c.step.index(100)] < MIN_DELTA
    assert watcher.restore_best() and method.weights == stopped and not c.improving


def test_a_curve_rising_to_its_maximum_trains_to_the_end_and_says_so():
    method = Peaked(truth=truth(), peak=TOTAL, width=TOTAL)
    watcher = watched(method)
    c = watcher.curve
    assert not watcher.stop and c.stopped_at == TOTAL and c.step == checkpoint_steps(TOTAL)
    assert c.best_step == TOTAL and c.improving  # still improving at its maximum
    assert converged(c) is False
    assert watcher.restore_best() and method.weights == TOTAL


def test_a_method_without_snapshot_or_stop_check_trains_to_the_end_unaffected():
    method = Unrestorable(truth=truth(), peak=80, obey=False)
    watcher = watched(method)
    c = watcher.curve
    assert watcher.stop  # asked to stop after the peak, and trained on
    assert method.weights == TOTAL and c.stopped_at == TOTAL
    assert c.step == checkpoint_steps(TOTAL)  # scored to the end, as before
    assert c.best_step == 80 and not c.improving
    assert watcher.best_state is None and not watcher.restore_best() and not c.restored
    assert method.predict(TEST)[0, 0, 0, 0] == TOTAL  # its last state
    assert converged(c) is True  # the last quarter fell


def test_the_cell_restores_the_best_step_and_records_it(her2st, register_method):
    from bench.run.cell import RunOptions, run_cell
    from bench.run.records import Record

    assert her2st.validation, "her2st's split has validation regions"
    peak = 80
    register_method(
        "peaked",
        "test_early_stopping",
        "Peaked",
        truth={s.region: s.hr for s in her2st.validation},
        peak=peak,
    )
    record, extras = run_cell(her2st, "peaked", 0, RunOptions(preset="quick"))
    assert record.ok, record.error
    c = record.curve
    assert c.best_step == peak and c.stopped_at == stop_step(peak)
    assert c.restored and not c.improving and record.converged is True
    assert extras["pred"][0, 0, 0, 0] == peak  # the test predictions are step s*'s
    # the validation scoring's wall time is kept, as part of the fit's
    assert 0 < record.timings["validation_s"] <= record.timings["fit_s"]
    back = Record.from_json(record.to_json()).curve
    assert (back.best_step, back.stopped_at, back.restored) == (peak, c.stopped_at, True)


# --- the trained methods: their loops stop, and restore() gives back a snapshot's predictions


def tiny_samples(n: int, seed: int) -> list[Sample]:
    return [region(f"r{seed}-{i}", seed * 10 + i) for i in range(n)]


def trained(kind: str, **overrides):
    """A tiny instance of each trained method (the sizes of its own tests)."""
    if kind == "histogene":
        from methods.histogene import HisToGeneStyle

        tiny = dict(layers=1, dim=32, heads=2, lr=3e-3, patch_px=2, dropout=0.0)
        return HisToGeneStyle(preset="quick", seed=0, **{**tiny, "steps": 8, **overrides})
    from methods.diffst.method import DiffST
    from methods.sr3 import PlainConditionalDiffusion
    from methods.unet_regressor import UNetRegressor

    cls = {"unet": UNetRegressor, "sr3": PlainConditionalDiffusion, "diffst": DiffST}[kind]
    tiny = dict(channels=16, groups=4, tile_grid=2, tile_px=4, batch_size=2, steps=3)
    return cls(preset="quick", seed=0, **{**tiny, "iterations": 8, **overrides})


def point(method, samples) -> np.ndarray:
    if method.stochastic:
        return method.sample(samples, 2, 0).mean(axis=1)
    return method.predict(samples)


@pytest.mark.parametrize("kind", KINDS)
def test_every_trained_loop_ends_on_a_stop_request(kind):
    method = trained(kind)
    steps: list[int] = []

    def stop_at_five(phase, step, total, loss):
        if phase == "train":
            steps.append(step)
        return phase == "train" and step == 5

    method.progress = stop_at_five
    method.fit(tiny_samples(3, 0))
    assert steps == [1, 2, 3, 4, 5] and len(method.history) == 5


@pytest.mark.parametrize("kind", KINDS)
def test_restore_gives_back_the_predictions_of_a_snapshot(kind):
    method, test = trained(kind), [s.without_target() for s in tiny_samples(2, 7)]
    kept: dict[str, object] = {}

    def keep_step_four(phase, step, total, loss):
        if phase == "train" and step == 4:
            kept["state"], kept["pred"] = method.snapshot(), point(method, test)
        return False

    method.progress = keep_step_four
    method.fit(tiny_samples(3, 0))
    method.progress = None
    final = point(method, test)
    assert not np.array_equal(final, kept["pred"])  # training went on after the snapshot
    method.restore(kept["state"])
    np.testing.assert_array_equal(point(method, test), kept["pred"])


@SLOW
def test_unet_restored_by_the_watcher_predicts_as_right_after_its_best_step():
    val, test = tiny_samples(2, 5), [s.without_target() for s in tiny_samples(2, 7)]
    method = trained("unet", iterations=40)
    watcher = Watcher(method, val, "cpu", "test", bars=False)
    after: dict[int, np.ndarray] = {}

    def progress(phase, step, total, loss):
        stop = watcher(phase, step, total, loss)
        if phase == "train" and watcher.curve.best_step == step:  # a new best just now
            after[step] = method.predict(test)
        return stop

    method.progress = progress
    method.fit(tiny_samples(3, 0))
    method.progress = None
    c = watcher.curve
    assert c.best_step in after and c.stopped_at == len(method.history)
    assert watcher.restore_best() and c.restored
    np.testing.assert_array_equal(method.predict(test), after[c.best_step])


@SLOW
def test_scoring_and_snapshots_leave_training_unchanged():
    """Validation predictions and snapshots draw nothing from the training run: the same seed
    trains to the same weights with or without them (CPU)."""
    plain = trained("sr3")
    plain.fit(tiny_samples(3, 0))
    watched_fit = trained("sr3")
    val = tiny_samples(1, 5)

    def score_everything(phase, step, total, loss):
        if phase == "train":
            watched_fit.sample([s.without_target() for s in val], 2, 0)
            watched_fit.snapshot()
        return False

    watched_fit.progress = score_everything
    watched_fit.fit(tiny_samples(3, 0))
    assert plain.history == watched_fit.history
    ours, theirs = plain.ema.state_dict(), watched_fit.ema.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_page_shows_the_chosen_step_beside_the_verdict():
    from bench.board.page import convergence_table
    from bench.run.records import Curve

    def curve(best: int, stopped: int, restored: bool = True) -> Curve:
        steps = [s for s in checkpoint_steps(1000) if s <= stopped]
        pcc = [0.5 - abs(s - best) / 1e4 for s in steps]
        return Curve(
            total=1000,
            step=steps,
            pcc=pcc,
            loss=[0.1] * len(steps),
            stopped_at=stopped,
            best_step=best,
            restored=restored,
            improving=best == stopped == 1000,
        )

    rows = [
        {
            "variant": "early",
            "method": "early",
            "converged": True,
            "curves": [(0, curve(300, 550)), (1, curve(325, 575))],
        },
        {
            "variant": "rising",
            "method": "rising",
            "converged": False,
            "curves": [(0, curve(1000, 1000))],
        },
        {
            "variant": "plugin",
            "method": "plugin",
            "converged": True,
            "curves": [(0, curve(300, 1000, False))],
        },
        {
            "variant": "old",
            "method": "old",
            "converged": None,
            "curves": [(0, Curve(total=1000, step=[750, 1000], pcc=[0.4, 0.5], loss=[1.0, 1.0]))],
        },
    ]
    table = {
        line.split(" | ")[0][2:]: line.split(" | ")
        for line in convergence_table(rows, "x")
        if line.startswith("| ")
    }
    assert "stopped at" in table["method"] and "best step" in table["method"]
    assert table["early"][5:7] == ["550 / 575", "300 / 325"]
    assert table["rising"][5:7] == ["1000", "1000; still improving at max (seed 0)"]
    assert table["plugin"][6] == "300 (not restored)"  # it predicts with its last state
    assert table["old"][5:7] == ["–", "–"]  # a curve recorded before early stopping


def test_no_stop_while_the_curve_climbs_back_towards_an_untrained_first_score():
    """The first score is the best for longer than PATIENCE and past the warm-up, but the curve
    is rising there (its last quarter gained MIN_DELTA): training goes on to the real peak.
    (Xenium's samplers on the page: best at their first score, stopped at the warm-up's end while
    rising; docs/decisions.md, "Early stopping on validation".)"""
    peak = 380
    method = Dipping(truth=truth(), peak=peak)
    watcher = watched(method)
    c = watcher.curve
    at_half = c.step.index(HALF)
    assert max(c.pcc[: at_half + 1]) == c.pcc[0]  # the first score still the best at HALF
    assert c.pcc[at_half] - c.pcc[at_half - PATIENCE] >= MIN_DELTA  # ... and rising there
    assert c.stopped_at == TOTAL and c.best_step == peak and c.pcc[-1] < max(c.pcc)
    assert watcher.restore_best() and method.weights == peak


class Creeping(Peaked):
    """The Xenium ``diffst`` fold 2 shape: the first score is the best, the curve dips, climbs
    back fast, then creeps up by less than MIN_DELTA a quarter and passes the first score at
    ``peak`` (never, if ``peak`` > TOTAL)."""

    def mix(self, step: int) -> float:
        if step <= 10:
            return 0.3
        if step <= 100:
            return 0.2 + 0.09 * abs(step - 40) / 60  # dips to 0.2 at 40, back to 0.29 at 100
        return 0.29 + 0.01 * (step - 100) / (self.peak - 100)  # 0.3 again at ``peak``


@pytest.mark.parametrize("peak", [300, 10 * TOTAL])
def test_no_stop_while_the_first_score_is_still_the_best(peak):
    """At the warm-up's end the first score is the best, PATIENCE scores have not gained and the
    last quarter gained less than MIN_GAIN, so the other conditions would stop here and restore a
    barely trained state; the stop waits until a later score is the best, and a fit that never
    gets there trains to its budget and restores its first score."""
    method = Creeping(truth=truth(), peak=peak)
    watcher = watched(method)
    c = watcher.curve
    first, at_half = c.pcc[0], c.step.index(HALF)
    assert max(c.pcc[: at_half + 1]) == first  # the first score still the best at HALF ...
    assert all(p < first + MIN_DELTA for p in c.pcc[1 : at_half + 1])  # ... no gain since ...
    assert c.pcc[at_half] - c.pcc[at_half - PATIENCE] < MIN_GAIN  # ... and converged there
    if peak < TOTAL:
        later = next(s for s, p in zip(c.step, c.pcc, strict=True) if s > HALF and p > first)
        assert watcher.stop and c.stopped_at == later == c.best_step  # the first stop allowed
        assert watcher.restore_best() and method.weights == later
    else:
        assert not watcher.stop and c.stopped_at == TOTAL and c.best_step == c.step[0]
        assert watcher.restore_best() and method.weights == c.step[0]
