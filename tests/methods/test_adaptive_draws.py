"""K chosen by the error it leaves (``--draws auto``, :class:`methods.contract.DrawRule`).

A stub sampler draws ``signal + noise * N(0, 1)`` per position from its seed: the rule must stop
at the minimum when the Monte-Carlo noise is small against the mean map's spread across
positions, go to the maximum when it is large, and choose a K that is a multiple of the batch in
``[min_draws, max_draws]``, the same for the same seed. A fixed ``--draws`` bypasses the rule,
and the cell's record keeps the K it used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bench.run import cell as runner
from bench.run.records import Record
from bench.run.tracking import cell_metrics
from methods.contract import (
    AUTO_DRAWS,
    DEFAULT_DRAW_RULE,
    DrawRule,
    Sample,
    StochasticMethod,
    batch_seed,
    draw_adaptive,
    draw_gain,
)

GENES = ("a", "b", "c")


def inputs(n: int = 2, size: int = 16) -> list[Sample]:
    """``n`` inputs of 3 genes on a ``size`` x ``size`` HR grid (x2), a corner out of tissue."""
    out = []
    for i in range(n):
        hr_mask = np.ones((size, size), dtype=bool)
        hr_mask[:3, :3] = False
        out.append(
            Sample(
                region=f"r{i}",
                genes=GENES,
                scale=2,
                lr=np.zeros((3, size // 2, size // 2), np.float32),
                lr_mask=np.ones((size // 2, size // 2), bool),
                hr_mask=hr_mask,
                image=np.zeros((3, size, size), np.uint8),
            )
        )
    return out


class Stub(StochasticMethod):
    """Draws ``signal + noise * N(0, 1)``: a known mean map (unit spread across positions) and
    known per-position Monte-Carlo noise; counts its ``sample`` calls."""

    def __init__(self, noise: float, **kw) -> None:
        super().__init__(**kw)
        self.noise = noise
        self.calls: list[tuple[int, int]] = []

    def sample(self, samples: Sequence[Sample], k: int, seed: int) -> np.ndarray:
        self.calls.append((k, seed))
        n, (h, w) = len(samples), samples[0].hr_shape
        signal = np.random.default_rng(1234).standard_normal((n, 1, len(GENES), h, w))
        noise = np.random.default_rng(seed).standard_normal((n, k, len(GENES), h, w))
        for step in range(1, 3):
            self.report("sample", step, 2)
        return (signal + self.noise * noise).astype(np.float32)


def used(noise: float, seed: int = 0, rule: DrawRule = DEFAULT_DRAW_RULE) -> int:
    return draw_adaptive(Stub(noise), inputs(), seed, rule).shape[1]


def test_stops_at_the_minimum_when_the_noise_is_small_against_the_signal():
    assert used(0.1) == DEFAULT_DRAW_RULE.min_draws


def test_goes_to_the_maximum_when_the_noise_is_large_against_the_signal():
    assert used(10.0) == DEFAULT_DRAW_RULE.max_draws


def test_k_is_a_multiple_of_the_batch_in_range_and_grows_with_the_noise():
    rule = DEFAULT_DRAW_RULE
    ks = [used(noise) for noise in (0.1, 0.5, 1.0, 1.5, 2.0, 10.0)]
    assert ks == sorted(ks)
    assert min(ks) == rule.min_draws and max(ks) == rule.max_draws
    assert any(rule.min_draws < k < rule.max_draws for k in ks)  # the data decide, not a cap
    for k in ks:
        assert k % rule.batch == 0 and rule.min_draws <= k <= rule.max_draws


def test_the_stop_follows_the_stated_formula():
    """With signal spread 1 and noise s the gain is a(max) - a(K), a(J) = 1/sqrt(1 + s^2/J)."""
    rule = DEFAULT_DRAW_RULE
    s = 1.5
    k = used(s)

    def gain(j: int) -> float:
        a = lambda n: 1.0 / np.sqrt(1.0 + s**2 / n)  # noqa: E731
        return a(rule.max_draws) - a(j)

    expected = next(
        j
        for j in range(rule.min_draws, rule.max_draws + 1, rule.batch)
        if gain(j) <= rule.tol or j == rule.max_draws
    )
    assert abs(k - expected) <= rule.batch  # the estimate's own noise may move it one batch


def test_same_seed_same_k_and_draws_and_the_first_batch_is_the_seeds_own():
    a = draw_adaptive(Stub(1.0), inputs(), 7)
    b = draw_adaptive(Stub(1.0), inputs(), 7)
    np.testing.assert_array_equal(a, b)
    c = draw_adaptive(Stub(1.0), inputs(), 8)
    assert not np.array_equal(a[:, :8], c[:, :8])
    stub = Stub(1.0)
    np.testing.assert_array_equal(a[:, : DEFAULT_DRAW_RULE.batch], stub.sample(inputs(), 8, 7))
    stub = Stub(1.0)
    draw_adaptive(stub, inputs(), 7)
    seeds = [seed for _, seed in stub.calls]
    assert seeds == [batch_seed(7, i) for i in range(len(seeds))] and len(set(seeds)) == len(seeds)
    assert {k for k, _ in stub.calls} == {DEFAULT_DRAW_RULE.batch}


def test_progress_is_one_rising_count_out_of_the_maximum():
    seen: list[tuple[int, int]] = []
    stub = Stub(10.0)
    stub.progress = lambda phase, step, total, loss: seen.append((step, total))
    draw_adaptive(stub, inputs(), 0)
    steps = [s for s, _ in seen]
    assert steps == list(range(1, len(steps) + 1))
    assert {t for _, t in seen} == {2 * DEFAULT_DRAW_RULE.max_draws // DEFAULT_DRAW_RULE.batch}
    assert stub.progress is not None and stub.progress.__name__ == "<lambda>"  # restored


def test_gain_is_zero_for_identical_draws_and_nan_without_positions():
    draws = np.ones((1, 16, 3, 4, 4))
    mask = np.ones((1, 4, 4), bool)
    total, squares = draws.sum(axis=1), (draws**2).sum(axis=1)
    assert draw_gain(total, squares, 16, mask, 128) == 0.0
    assert np.isnan(draw_gain(total, squares, 16, np.zeros_like(mask), 128))


def test_rule_settings_are_checked():
    for bad in (
        {"tol": -1.0},
        {"batch": 0},
        {"min_draws": 1, "batch": 1},
        {"min_draws": 20},
        {"max_draws": 100},
        {"min_draws": 64, "max_draws": 32},
    ):
        with pytest.raises(ValueError, match="DrawRule"):
            DrawRule(**bad)
    assert DEFAULT_DRAW_RULE.label() == "tol=0.0025,batch=8,K=16..128"


def test_a_fixed_number_of_draws_bypasses_the_rule():
    stub = Stub(10.0)
    draws = runner.sample_draws(stub, inputs(), 24, 3)
    assert draws.shape[1] == 24 and stub.calls == [(24, 3)]
    np.testing.assert_array_equal(draws, Stub(10.0).sample(inputs(), 24, 3))
    stub = Stub(0.1)
    assert runner.sample_draws(stub, inputs(), AUTO_DRAWS, 3).shape[1] == 16
    assert len(stub.calls) == 2


def test_the_default_is_auto_and_a_number_still_fixes_k():
    from bench.cli import build_parser
    from bench.grid import RunConfig

    parse = build_parser().parse_args
    assert parse(["run"]).draws == AUTO_DRAWS == runner.RunOptions().draws == RunConfig().draws
    assert parse(["run", "--draws", "128"]).draws == 128
    assert parse(["run", "--draws", "AUTO"]).draws == AUTO_DRAWS


def test_the_record_keeps_the_draws_used_and_mlflow_gets_it():
    record = Record(dataset="d", method="m", seed=0, status="ok", metrics={"pcc": 0.5})
    record.draws_used = 48
    again = Record.from_json(record.to_json())
    assert again.draws_used == 48 and cell_metrics(again)["draws_used"] == 48.0
    assert Record.from_json(Record(dataset="d", method="m", seed=0).to_json()).draws_used is None
    assert "draws_used" not in cell_metrics(Record(dataset="d", method="m", seed=0))


@pytest.fixture
def noisy(register_method):
    register_method("noisy", "stub_methods", "NoisyBicubic")


def test_a_cell_records_the_k_it_used(noisy, her2st):
    opts = runner.RunOptions(preset="quick")
    record, _ = runner.run_cell(her2st, "noisy", 0, opts)
    assert record.status == "ok", record.error
    rule = DEFAULT_DRAW_RULE
    assert rule.min_draws <= record.draws_used <= rule.max_draws
    assert record.draws_used % rule.batch == 0
    assert record.params["draws"] == AUTO_DRAWS and record.params["draw_rule"] == rule.label()
    assert record.params == runner.expected_params("noisy", 0, opts)
    fixed = runner.RunOptions(preset="quick", draws=6)
    record, _ = runner.run_cell(her2st, "noisy", 0, fixed)
    assert record.status == "ok" and record.draws_used == 6 and record.params["draws"] == 6
    record, _ = runner.run_cell(her2st, "bicubic", 0, opts)
    assert record.status == "ok" and record.draws_used is None


def test_batches_are_drawn_lazily_through_sample_batches_and_closed():
    """draw_adaptive asks a sampler's sample_batches for one batch at a time, stops asking when
    the rule stops, and closes it (a sampler frees what it kept for further batches)."""

    class Batched(Stub):
        def sample_batches(self, samples, k, seeds):
            self.asked = 0
            try:
                for seed in seeds:
                    self.asked += 1
                    yield self.sample(samples, k, seed)
            finally:
                self.closed = True

    stub = Batched(0.1)
    draws = draw_adaptive(stub, inputs(), 7)
    assert draws.shape[1] == DEFAULT_DRAW_RULE.min_draws
    assert stub.asked == DEFAULT_DRAW_RULE.min_draws // DEFAULT_DRAW_RULE.batch and stub.closed
    np.testing.assert_array_equal(draws, draw_adaptive(Stub(0.1), inputs(), 7))
