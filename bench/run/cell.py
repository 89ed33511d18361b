"""The runner: every (dataset, method, seed) cell fitted, predicted, scored, recorded and tracked.

One cell = ``fit`` on the split's training samples, ``predict`` (or ``sample`` K draws for a
stochastic method, K fixed by ``--draws`` or chosen by :class:`methods.contract.DrawRule` and kept
as the record's ``draws_used``; the point prediction is their mean) on the test samples with the
target removed, scoring against the HR truth, a JSON record and an MLflow child run. A cell that
raises, returns the wrong shape or non-finite values is recorded as failed with its reason and the
grid goes on. A cell whose record already exists with status ok, the same split fingerprint and
the same parameters is not run again (failed cells always are), so an interrupted grid resumes.
Its files are written by :mod:`bench.run.outputs`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.splits import Split
from bench.errors import one_line
from bench.run.learning import Watcher, converged
from bench.run.records import PerGene, Record, SplitRef, read_record, record_path
from bench.run.resources import PeakMemory, Timer, device
from bench.run.tracking import run_name
from bench.scoring import diversity, influence, metrics, paper_metrics, protocols
from methods import create
from methods.contract import AUTO_DRAWS, DEFAULT_DRAW_RULE, draw_adaptive, stack


@dataclass
class RunOptions:
    """Settings shared by every cell of one invocation."""

    preset: str = "default"
    # K draws per input for stochastic methods: a number fixes K; "auto" (AUTO_DRAWS) draws in
    # batches until DEFAULT_DRAW_RULE stops (methods.contract.DrawRule)
    draws: int | str = AUTO_DRAWS
    timeout: float | None = None  # seconds per cell (fit + predict + score); None: no limit
    max_memory: int | None = None  # bytes a cell's processes may hold; None: no cap
    threads: int | None = None  # torch intra-op threads of a cell; None: torch's default
    bar: int = 1  # the terminal line of the cell's progress bar, under the grid's (line 0)
    code_version: str = "unknown"
    device: str = field(default_factory=device)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [
        None if not math.isfinite(v) else float(v) for v in np.asarray(values, dtype=float).ravel()
    ]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _mean(values: np.ndarray | float) -> float | None:
    arr = np.asarray(values, dtype=float)
    return None if not np.isfinite(arr).any() else float(np.nanmean(arr))


def score(
    split: Split, pred: np.ndarray, draws: np.ndarray | None, dev: str
) -> tuple[dict[str, float | None], PerGene, list[float | None]]:
    """Scalar metrics, the per-(region, gene) table and the influence column of one prediction.

    The test truth (:attr:`Split.truth`) reaches this function and the ceiling alone. Every
    score is over the scored positions (``truth.scored``: in tissue, past spot QC).

    Parameters
    ----------
    pred : (N, G, H, W) point prediction for ``split.test``.
    draws : (N, K, G, H, W) stochastic draws, or None for a deterministic method.

    Returns
    -------
    ``(scalars, per_gene, influence)``; ``influence`` holds, for each scored position in C
    order of ``truth.scored``, the change of the mean PCC when that position alone is dropped
    (:func:`bench.scoring.influence.pcc_influence`).
    """
    truth = split.truth
    hr, mask = truth.hr, truth.scored
    tables = metrics.score_maps(pred, hr, mask, split.data_range, device=dev)
    tables["rvd"] = diversity.rvd(pred, hr, mask, device=dev)
    scalars: dict[str, float | None] = {}
    lr, lr_mask = stack(split.test, "lr"), stack(split.test, "lr_mask")
    scalars["input_response"] = _finite(
        diversity.input_response(pred, lr, lr_mask, truth.tissue, device=dev)
    )
    if draws is not None:
        tables.update(diversity.diversity_scores(draws, hr, mask, device=dev))
        first = metrics.score_maps(draws[:, 0], hr, mask, split.data_range, device=dev)
        scalars.update({f"first_sample_{k}": _mean(v) for k, v in first.items()})
    scalars.update({k: _mean(v) for k, v in tables.items()})
    scalars.update(protocols.alternatives(pred, hr, truth.tissue, mask, split.data_range, dev))
    paper = paper_metrics.paper_scores(pred, hr)  # the release's scoring, kept apart
    scalars.update({k: _finite(paper_metrics.nonzero_mean(v)) for k, v in paper.items()})
    tables.update(paper)
    n, g = pred.shape[:2]
    per_gene = PerGene(
        region=[s.region for s in split.test for _ in range(g)],
        gene=list(split.genes) * n,
        scores={k: _nan_to_none(v) for k, v in tables.items()},
    )
    delta = influence.pcc_influence(pred, hr, mask)
    return scalars, per_gene, _nan_to_none(delta[mask])


class CellTimeout(Exception):
    """A cell ran past ``--timeout``."""


@contextlib.contextmanager
def deadline(seconds: float | None):
    """Raise :class:`CellTimeout` inside the block after ``seconds`` (main thread, via SIGALRM).

    The alarm interrupts Python code between operations, so a single long native call (one huge
    BLAS product) ends first; iterative methods, which are where cells run long, stop promptly.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CellTimeout(f"the cell ran past --timeout {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_shape(name: str, array: Any, expected: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(array, dtype=np.float32)
    if arr.shape != expected:
        raise ValueError(f"{name} has shape {arr.shape}, expected {expected}")
    return arr


def new_record(split: Split, method_name: str, seed: int, opts: RunOptions) -> Record:
    """A cell's record before it runs (status failed until it succeeds)."""
    return Record(
        dataset=split.label,
        method=method_name,
        seed=seed,
        split=SplitRef(
            fingerprint=split.fingerprint,
            k=split.spec.k,
            genes=split.genes,
            test=tuple(split.spec.test),
            qc_min_totals=dict(split.spec.qc_min_totals),
            qc_depth_fraction=split.spec.qc_depth_fraction,
            scored=int(split.truth.scored.sum()),
            dropped=split.truth.dropped,
            fold=split.spec.fold,
            folds=split.spec.folds,
        ),
        code_version=opts.code_version,
        device=opts.device,
        params={"preset": opts.preset},
        started=time.time(),
    )


def _finish(record: Record) -> Record:
    record.finished = time.time()
    record.finished_ms = int(record.finished * 1000)
    return record


def failed_record(
    split: Split, method_name: str, seed: int, opts: RunOptions, error: str
) -> Record:
    """A failed record for a cell that never returned (e.g. its worker process died)."""
    record = new_record(split, method_name, seed, opts)
    record.error = error[:1000]
    record.timings = {"fit_s": 0.0, "predict_s": 0.0, "score_s": 0.0}
    record.memory = {"cpu_rss_mb": 0.0, "gpu_mb": None}
    return _finish(record)


def expected_params(method_name: str, seed: int, opts: RunOptions) -> dict[str, Any]:
    """The parameters a cell's record carries: the method's, the preset, and for a stochastic
    method the number of draws (cheap: the method is created, nothing is fitted)."""
    return method_params(create(method_name, preset=opts.preset, seed=seed), opts)


def method_params(method: Any, opts: RunOptions) -> dict[str, Any]:
    """``method``'s parameters as its record carries them (see :func:`expected_params`)."""
    params = {**method.params(), "preset": opts.preset}
    if method.stochastic:
        params["draws"] = opts.draws
        if opts.draws == AUTO_DRAWS:
            params["draw_rule"] = DEFAULT_DRAW_RULE.label()
    return params


def sample_draws(method: Any, inputs: list, draws: int | str, seed: int) -> np.ndarray:
    """A sampler's ``(N, K, G, H, W)`` draws for one cell: ``sample(inputs, draws, seed)`` for a
    fixed K, else batches until :data:`~methods.contract.DEFAULT_DRAW_RULE` stops (its K in
    ``[min_draws, max_draws]``, a multiple of its batch). The K used is the result's axis 1."""
    n, g, (h, w) = len(inputs), len(inputs[0].genes), inputs[0].hr_shape
    if draws == AUTO_DRAWS:
        rule = DEFAULT_DRAW_RULE
        out = np.asarray(draw_adaptive(method, inputs, seed, rule), dtype=np.float32)
        k = out.shape[1] if out.ndim == 5 else -1
        if not (rule.min_draws <= k <= rule.max_draws and k % rule.batch == 0):
            raise ValueError(f"adaptive draws have shape {out.shape}: K outside the rule")
        return _check_shape("sample()", out, (n, k, g, h, w))
    k = int(draws)
    return _check_shape("sample()", method.sample(inputs, k, seed), (n, k, g, h, w))


def run_cell(
    split: Split, method_name: str, seed: int, opts: RunOptions, workdir: Path | None = None
) -> tuple[Record, dict]:
    """Run one cell; returns (record, extras), extras holding arrays for figures or a traceback.

    ``workdir`` is handed to the method for checkpoints (so an interrupted fit can resume).
    """
    import torch

    record = new_record(split, method_name, seed, opts)
    timings = {"fit_s": 0.0, "predict_s": 0.0, "score_s": 0.0}
    extras: dict[str, Any] = {}
    memory = PeakMemory()
    watcher: Watcher | None = None
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        with memory, deadline(opts.timeout):
            torch.manual_seed(seed)
            method = create(method_name, preset=opts.preset, seed=seed)
            method.workdir = workdir
            record.control = method.control
            record.params = method_params(method, opts)
            record.name = run_name(method_name, {**method.label_params(), "seed": seed})
            if method.needs_target and method.control != "positive":
                raise ValueError("only a positive control may see the target at predict time")
            watcher = Watcher(
                method, split.validation, opts.device, f"{split.label}/{method_name}"
            )
            method.progress = watcher
            with Timer() as t:
                method.fit(split.fit)
                watcher.restore_best()  # early stopping: predict with the best validation state
            timings["fit_s"] = t.seconds + method.resumed_fit_s  # the whole fit when resumed
            if method.resumed_fit_s:
                timings["fit_resumed_s"] = method.resumed_fit_s
            if watcher.seconds:  # validation scoring, part of fit_s
                timings["validation_s"] = watcher.seconds
            inputs = split.truth.targets(split.test) if method.needs_target else split.test
            n, g, (h, w) = len(inputs), len(split.genes), inputs[0].hr_shape
            with Timer() as t:
                if method.stochastic:
                    draws = sample_draws(method, inputs, opts.draws, seed)
                    record.draws_used = int(draws.shape[1])
                    pred = draws.mean(axis=1)
                else:
                    draws, pred = (
                        None,
                        _check_shape("predict()", method.predict(inputs), (n, g, h, w)),
                    )
            timings["predict_s"] = t.seconds
            watcher.close()
            if watcher.curve:  # a trained method: its learning curve and the verdict
                record.curve, record.converged = watcher.curve, converged(watcher.curve)
            with Timer() as t:
                record.metrics, record.per_gene, record.influence = score(
                    split, pred, draws, opts.device
                )
            timings["score_s"] = t.seconds
        record.status = "ok"
        extras["pred"] = pred
        if draws is not None:  # the per-position spread that the `spread` metric averages
            extras["spread"] = diversity.spread_map(draws, opts.device).astype(np.float32)
    except Exception as err:  # noqa: BLE001 - a failing method is recorded, the grid goes on
        if watcher is not None:
            watcher.close()
        record.status, record.error = "failed", one_line(err)[:1000]
        record.metrics, record.per_gene, record.influence = {}, PerGene(), []
        record.draws_used = None
        extras["traceback"] = traceback.format_exc()
    record.timings = timings
    record.peak_memory_mb = round(max(memory.cpu_mb, memory.gpu_mb or 0.0), 1)
    record.memory = {"cpu_rss_mb": round(memory.cpu_mb, 1), "gpu_mb": memory.gpu_mb}
    return _finish(record), extras


def reusable(
    results_dir: Path, split: Split, method: str, seed: int, opts: RunOptions
) -> Record | None:
    """The resume decision, made here only: the cell's existing record when it is ok, for the
    same split fingerprint and the same parameters; else None (the cell runs again)."""
    rec = read_record(record_path(results_dir, split.label, method, seed))
    if rec is None or not rec.ok or rec.split.fingerprint != split.fingerprint:
        return None
    return rec if rec.params == expected_params(method, seed, opts) else None
