"""The runner: every (dataset, method, seed) cell fitted, predicted, scored, recorded and tracked.

One cell = ``fit`` on the split's training samples, ``predict`` (or ``sample`` K draws for a
stochastic method; the point prediction is their mean) on the test samples with the target
removed, scoring against the HR truth, a JSON record and an MLflow child run. A cell that raises,
returns the wrong shape or non-finite values is recorded as failed with its reason and the grid
goes on. A cell whose record already exists with status ok, the same split fingerprint and the same
parameters is not run again (failed cells always are), so an interrupted grid resumes.
"""

from __future__ import annotations

import contextlib
import math
import signal
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import diversity, metrics, paper_metrics
from bench.records import read_record, record_path, write_record
from bench.resources import PeakMemory, Timer, device
from bench.splits import Split
from bench.tracking import run_name
from methods import create
from methods.contract import stack


@dataclass
class RunOptions:
    """Settings shared by every cell of one invocation."""

    preset: str = "default"
    samples: int = 8  # K draws per input for stochastic methods
    timeout: float | None = None  # seconds per cell (fit + predict + score); None: no limit
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


def score(split: Split, pred: np.ndarray, draws: np.ndarray | None, dev: str) -> tuple[dict, dict]:
    """Scalar metrics and the per-(section, gene) table of one prediction.

    Parameters
    ----------
    pred : (N, G, H, W) point prediction for ``split.test``.
    draws : (N, K, G, H, W) stochastic draws, or None for a deterministic method.
    """
    hr, mask = stack(split.test, "hr"), stack(split.test, "hr_mask")
    tables = metrics.score_maps(pred, hr, mask, split.data_range, device=dev)
    tables["rvd"] = diversity.rvd(pred, hr, mask, device=dev)
    scalars: dict[str, float | None] = {}
    if draws is not None:
        tables.update(diversity.diversity_scores(draws, hr, mask, device=dev))
        scalars["collapse_ratio"] = _mean(diversity.collapse_ratio(pred, hr, mask, device=dev))
        first = metrics.score_maps(draws[:, 0], hr, mask, split.data_range, device=dev)
        scalars.update({f"first_sample_{k}": _mean(v) for k, v in first.items()})
    scalars.update({k: _mean(v) for k, v in tables.items()})
    paper = paper_metrics.paper_scores(pred, hr)  # the release's scoring, kept apart
    scalars.update({k: _finite(paper_metrics.nonzero_mean(v)) for k, v in paper.items()})
    tables.update(paper)
    n, g = pred.shape[:2]
    per_gene: dict[str, list] = {
        "section": [s.region for s in split.test for _ in range(g)],
        "gene": list(split.genes) * n,
    }
    per_gene.update({k: _nan_to_none(v) for k, v in tables.items()})
    return scalars, per_gene


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


def base_record(split: Split, method_name: str, seed: int, opts: RunOptions) -> dict[str, Any]:
    """The fields every record of a cell has before it runs."""
    return {
        "dataset": split.label,
        "method": method_name,
        "seed": seed,
        "split": {k: split.spec[k] for k in ("fingerprint", "k", "genes", "test")},
        "code_version": opts.code_version,
        "device": opts.device,
        "control": None,
        "params": {"preset": opts.preset},
        "error": None,
        "started": time.time(),
    }


def failed_record(
    split: Split, method_name: str, seed: int, opts: RunOptions, error: str
) -> dict[str, Any]:
    """A failed record for a cell that never returned (e.g. its worker process died)."""
    record = base_record(split, method_name, seed, opts)
    now = time.time()
    record.update(status="failed", error=error[:1000], metrics={}, per_gene={})
    record.update(timings={"fit_s": 0.0, "predict_s": 0.0, "score_s": 0.0}, peak_memory_mb=0.0)
    record.update(memory={"cpu_rss_mb": 0.0, "gpu_mb": None}, finished=now)
    record["finished_ms"] = int(now * 1000)
    return record


def run_cell(
    split: Split, method_name: str, seed: int, opts: RunOptions, workdir: Path | None = None
) -> tuple[dict, dict]:
    """Run one cell; returns (record, extras), extras holding arrays for figures or a traceback.

    ``workdir`` is handed to the method for checkpoints (so an interrupted fit can resume).
    """
    import torch

    record = base_record(split, method_name, seed, opts)
    timings = {"fit_s": 0.0, "predict_s": 0.0, "score_s": 0.0}
    extras: dict[str, Any] = {}
    memory = PeakMemory()
    try:
        with memory, deadline(opts.timeout):
            torch.manual_seed(seed)
            method = create(method_name, preset=opts.preset, seed=seed)
            method.workdir = workdir
            record["control"] = method.control
            record["params"] = {**method.params(), "preset": opts.preset}
            record["name"] = run_name(method_name, {**method.label_params(), "seed": seed})
            if method.stochastic:
                record["params"]["samples"] = opts.samples
            if method.needs_target and method.control != "positive":
                raise ValueError("only a positive control may see the target at predict time")
            with Timer() as t:
                method.fit(split.train)
            timings["fit_s"] = t.seconds + method.resumed_fit_s  # the whole fit when resumed
            if method.resumed_fit_s:
                timings["fit_resumed_s"] = method.resumed_fit_s
            inputs = (
                split.test if method.needs_target else [s.without_target() for s in split.test]
            )
            n, g, (h, w) = len(inputs), len(split.genes), inputs[0].hr_shape
            with Timer() as t:
                if method.stochastic:
                    draws = _check_shape(
                        "sample()",
                        method.sample(inputs, opts.samples, seed),
                        (n, opts.samples, g, h, w),
                    )
                    pred = draws.mean(axis=1)
                else:
                    draws, pred = (
                        None,
                        _check_shape("predict()", method.predict(inputs), (n, g, h, w)),
                    )
            timings["predict_s"] = t.seconds
            with Timer() as t:
                record["metrics"], record["per_gene"] = score(split, pred, draws, opts.device)
            timings["score_s"] = t.seconds
        record["status"] = "ok"
        extras["pred"] = pred
        if draws is not None:  # per-position population std over the K draws (metrics.md)
            extras["spread"] = draws.std(axis=1, dtype=np.float64).astype(np.float32)
    except Exception as err:  # noqa: BLE001 - a failing method is recorded, the grid goes on
        msg = " ".join(str(err).split()) or type(err).__name__
        record.update(status="failed", error=f"{type(err).__name__}: {msg}"[:1000], metrics={})
        record["per_gene"] = {}
        extras["traceback"] = traceback.format_exc()
    record["timings"] = timings
    record["peak_memory_mb"] = round(max(memory.cpu_mb, memory.gpu_mb or 0.0), 1)
    record["memory"] = {"cpu_rss_mb": round(memory.cpu_mb, 1), "gpu_mb": memory.gpu_mb}
    record["finished"] = time.time()
    record["finished_ms"] = int(record["finished"] * 1000)
    return record, extras


def reusable(
    results_dir: Path, split: Split, method: str, seed: int, opts: RunOptions
) -> dict | None:
    """An existing ok record for this cell with the same split and parameters, else None."""
    rec = read_record(record_path(results_dir, split.label, method, seed))
    if rec is None or rec.get("status") != "ok":
        return None
    if rec["split"]["fingerprint"] != split.fingerprint:
        return None
    m = create(method, preset=opts.preset, seed=seed)  # cheap: nothing is fitted
    params = {**m.params(), "preset": opts.preset}
    if m.stochastic:
        params["samples"] = opts.samples
    return rec if rec["params"] == params else None


def artifacts(results_dir: Path, split: Split, record: dict, extras: dict) -> list[Path]:
    """Write a cell's side files beside its record: per-gene CSV; the prediction (``.pred.npz``:
    ``pred`` (N, G, H, W) float32 on the split's scale, ``regions`` (N,), and for stochastic
    methods ``spread`` (N, G, H, W), the population std over the K draws); the gene-map figure
    of the first test region, and for stochastic methods its spread beside the error; traceback."""
    import pandas as pd

    from bench import figures

    base = record_path(results_dir, record["dataset"], record["method"], record["seed"])
    stem = base.with_suffix("")
    out: list[Path] = []

    def side(suffix: str, write: Any) -> None:
        path = stem.with_name(stem.name + suffix)
        _atomic_side_file(path, write)
        out.append(path)

    if record["per_gene"]:
        side(".per_gene.csv", lambda p: pd.DataFrame(record["per_gene"]).to_csv(p, index=False))
    if "pred" in extras:
        arrays = {"pred": extras["pred"], "regions": np.array([t.region for t in split.test])}
        if "spread" in extras:
            arrays["spread"] = extras["spread"]
        side(".pred.npz", lambda p: np.savez_compressed(p, **arrays))  # for 'bench export'
        s = split.test[0]
        idx = figures.pick_genes(s.hr, s.hr_mask, split.genes, n=3)
        genes = [split.genes[i] for i in idx]
        where = f"{record['dataset']} {s.region}: {record['method']} (seed {record['seed']})"
        side(
            ".genes.png",
            lambda p: figures.gene_panel(
                s.lr[idx], s.hr[idx], extras["pred"][0][idx], s.hr_mask, s.lr_mask, genes, p,
                title=where,
            ),
        )  # fmt: skip
        if "spread" in extras:
            fig = figures.error_spread_figure(
                s.hr[idx], extras["pred"][0][idx], extras["spread"][0][idx], s.hr_mask, genes,
                title=f"{where}: sample spread beside error",
            )  # fmt: skip
            side(".spread.png", lambda p: figures.save_png(fig, p))
    if "traceback" in extras:
        side(".traceback.txt", lambda p: p.write_text(extras["traceback"]))
    return out


def save_test_maps(results_dir: Path, split: Split) -> Path:
    """Write the first test region's maps for the leaderboard's figures, once per split.

    ``<results-dir>/<split label>/maps-<fingerprint>.npz``: ``lr`` (G, h, w), ``hr`` (G, H, W)
    float32 on the split's scale, ``lr_mask`` (h, w), ``hr_mask`` (H, W), ``region`` and
    ``genes`` (G,). Kept when present (the fingerprint names everything it depends on).
    """
    path = results_dir / split.label / f"maps-{split.fingerprint}.npz"
    if not path.is_file():
        s = split.test[0]
        arrays = {
            "lr": s.lr.astype(np.float32), "hr": s.hr.astype(np.float32),
            "lr_mask": s.lr_mask, "hr_mask": s.hr_mask,
            "region": np.array(s.region), "genes": np.array(list(split.genes)),
        }  # fmt: skip
        _atomic_side_file(path, lambda p: np.savez_compressed(p, **arrays))
    return path


SIDE_SUFFIXES = (".per_gene.csv", ".genes.png", ".spread.png", ".pred.npz", ".traceback.txt")


def side_files(results_dir: Path, record: dict) -> list[Path]:
    """The side files of a record that exist (see :func:`artifacts`)."""
    stem = record_path(results_dir, record["dataset"], record["method"], record["seed"])
    stem = stem.with_suffix("")
    paths = (stem.with_name(stem.name + suffix) for suffix in SIDE_SUFFIXES)
    return [p for p in paths if p.is_file()]


def _atomic_side_file(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-") as tmp:
        staged = Path(tmp) / path.name
        write(staged)
        staged.replace(path)


def save(results_dir: Path, split: Split, record: dict, extras: dict) -> list[Path]:
    """Write the side files, then the record itself (last, so a record implies its files)."""
    files = artifacts(results_dir, split, record, extras)
    write_record(results_dir, record)
    return files
