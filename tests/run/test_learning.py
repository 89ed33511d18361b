"""Learning curves and the convergence verdict (bench/run/learning.py), the validation carve
(bench/data/splits.py) and the curve on the record, the page and the MLflow store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.data.cards import dataset_names, load_card
from bench.data.splits import Split, load_spec
from bench.run.learning import MIN_GAIN, Watcher, checkpoint_steps, converged
from bench.run.records import Curve, Record
from methods.contract import Method, Sample, StochasticMethod


def curve(pcc: list[float | None], total: int = 1000) -> Curve:
    """A curve scored at 25/50/75/100% of ``total`` (as recorded before early stopping)."""
    steps = [math.ceil(total * q) for q in (0.25, 0.5, 0.75, 1.0)]
    return Curve(total=total, step=steps, pcc=pcc, loss=[1.0] * len(steps))


def test_the_convergence_rule_on_synthetic_curves():
    assert checkpoint_steps(1000) == [25, *range(50, 1001, 50)]  # every 5%, and at 2.5%
    assert checkpoint_steps(3) == [1, 2, 3]  # distinct, 1-based, the last is the budget
    assert converged(curve([0.1, 0.3, 0.40, 0.405])) is True  # the last quarter added 0.005
    assert converged(curve([0.1, 0.3, 0.40, 0.40 + MIN_GAIN + 1e-3])) is False
    assert converged(curve([0.1, 0.5, 0.60, 0.50])) is True  # overfitting: more would not help
    assert converged(curve([0.1, 0.2, None, 0.3])) is None  # a non-finite score: no verdict
    assert converged(Curve()) is None  # not trained
    resumed = Curve(total=1000, step=[1000], pcc=[0.5], loss=[0.1])
    assert converged(resumed) is None  # resumed past 75%: no 75% point


def fake(region: str) -> Sample:
    g, h = 2, 4
    z = np.zeros((g, h // 2, h // 2), np.float32)
    return Sample(
        region=region,
        genes=("A", "B"),
        scale=2,
        lr=z,
        lr_mask=np.ones((h // 2, h // 2), bool),
        hr_mask=np.ones((h, h), bool),
        image=np.zeros((3, h, h), np.uint8),
        hr=np.random.default_rng(len(region)).random((g, h, h)).astype(np.float32),
    )


@pytest.mark.parametrize("name", dataset_names())
def test_the_validation_carve_never_holds_a_test_region(name):
    card = load_card(name)
    for k in card.split["pooling"]:
        spec = load_spec(card, k)
        split = Split(spec, [fake(r) for r in spec.train], [fake(r) for r in spec.test], None)
        val = [s.region for s in split.validation]
        fit = [s.region for s in split.fit]
        assert val and fit, "every committed split has regions to fit and to validate on"
        assert not set(val) & set(spec.test)
        assert not set(val) & set(fit) and fit + val == list(spec.train)
        assert len(val) == math.ceil(len(spec.train) / 4)


def test_one_training_region_has_no_validation():
    split = Split(None, [fake("a")], [fake("t")], None)
    assert split.validation == [] and [s.region for s in split.fit] == ["a"]


class Learner(Method):
    """Reports ``total`` training steps; its prediction approaches the truth, then stops."""

    name = "learner"

    def __init__(self, truth: np.ndarray, total: int, plateau: float) -> None:
        super().__init__()
        self.truth, self.total, self.plateau, self.weight = truth, total, plateau, 0.0

    def fit(self, train):
        for step in range(1, self.total + 1):
            self.weight = min(step / self.total, self.plateau) / self.plateau
            self.report("train", step, self.total, 1.0 - self.weight)

    def predict(self, samples):
        noise = np.random.default_rng(0).random(self.truth.shape)
        return (self.weight * self.truth + (1 - self.weight) * noise).astype(np.float32)


@pytest.mark.parametrize("plateau, verdict", [(0.5, True), (1.0, False)])
def test_the_watcher_scores_checkpoints_on_validation_only(plateau, verdict):
    val = [fake("v1"), fake("v2")]
    truth = np.stack([s.hr for s in val])
    method = Learner(truth, total=40, plateau=plateau)
    watcher = Watcher(method, val, "cpu", "test", bars=False)
    method.progress = watcher
    method.fit([fake("train")])
    c = watcher.curve
    assert c.step == checkpoint_steps(40) and {10, 20, 30, 40} <= set(c.step)
    assert c.validation == ["v1", "v2"] and not c.crps
    assert c.pcc[-1] == pytest.approx(1.0)  # the last checkpoint predicts the truth itself
    assert converged(c) is verdict
    assert c.loss[0] > c.loss[-1]  # mean training loss per window, falling


class Sampler(StochasticMethod):
    name = "sampler"

    def __init__(self, truth: np.ndarray) -> None:
        super().__init__()
        self.truth = truth

    def fit(self, train):
        for step in (1, 2):
            self.report("train", step, 2, 0.5)

    def sample(self, samples, k, seed):
        for i in (1, 2, 3):
            self.report("sample", i, 3)  # the watcher must not recurse into its own pass
        assert all(s.hr is None for s in samples)  # the watcher hides the target
        return np.repeat(self.truth[:, None], k, axis=1)


def test_samplers_get_crps_and_nested_sampling_is_not_scored():
    val = [fake("v")]
    method = Sampler(np.stack([s.hr for s in val]))
    watcher = Watcher(method, val, "cpu", "test", bars=False)
    method.progress = watcher
    method.fit([])
    assert watcher.curve.step == [1, 2] and watcher.curve.crps == pytest.approx([0.0, 0.0])


def test_the_curve_round_trips_through_the_record():
    rec = Record(dataset="d", method="m", seed=0, curve=curve([0.1, 0.2, 0.3, 0.3]))
    rec.converged = converged(rec.curve)
    back = Record.from_json(rec.to_json())
    assert back.curve == rec.curve and back.converged is True
    assert Record.from_json(Record(dataset="d", method="m", seed=0).to_json()).curve == Curve()
