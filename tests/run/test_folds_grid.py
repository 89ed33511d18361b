"""The grid's fold axis: ``bench run`` runs each committed fold of a dataset as a task of its own
(records under ``<dataset>-f<i>``, one MLflow child run per cell; one page section pools them) by
default, a rerun reuses every finished cell of every fold, a selection runs only the folds it
names, ``--folds none`` the single split, a dataset without fold files its single split, and a bad
selection or fold indices of a dataset without fold files is one line before anything is
written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import synthetic as syn

from bench import cli
from bench.run.records import read_records
from bench.run.tracking import default_uri


@pytest.fixture()
def folded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[syn.Dataset, list[str]]:
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    monkeypatch.setenv("STSR_CACHE_DIR", str(tmp_path / "cache"))
    ds = syn.transcripts(tmp_path / "cards", tmp_path / "data")
    ds.card["split"]["folds"] = 4
    ds.write_card()
    data = ["--data-dir", str(tmp_path / "data")]
    assert cli.main(["split", "--datasets", ds.name, "--folds", *data]) == 0
    out = ["--results-dir", str(tmp_path / "results"), "--leaderboard", str(tmp_path / "LB.md")]
    args = ["run", "--datasets", ds.name, "--methods", "mean,bicubic", *data, "--no-progress"]
    args += out
    return ds, args


def _cells(results: Path) -> dict[tuple[str, str], int]:
    return {
        (r.dataset, r.method): r.finished_ms
        for r in read_records(results)
        if r.method != "ceiling"
    }


def test_folds_run_as_tasks_and_resume(folded, tmp_path: Path, capsys) -> None:
    import mlflow

    ds, args = folded
    results = tmp_path / "results"
    assert cli.main([*args, "--folds", "1,3"]) == 0
    first = _cells(results)
    assert set(first) == {(f"{ds.name}-f{i}", m) for i in (1, 3) for m in ("mean", "bicubic")}
    for (label, method), _ in first.items():
        record = json.loads((results / label / method / "seed-0.json").read_text())
        assert record["status"] == "ok" and record["split"]["fingerprint"]
    fingerprints = {
        json.loads((results / d / m / "seed-0.json").read_text())["split"]["fingerprint"]
        for d, m in first
    }
    assert len(fingerprints) == 2  # each fold is its own split

    assert cli.main(args) == 0  # the default, all: folds 0 and 2 added, 1 and 3 reused
    every = _cells(results)
    assert set(every) == {(f"{ds.name}-f{i}", m) for i in range(4) for m in ("mean", "bicubic")}
    assert all(every[key] == first[key] for key in first)  # not recomputed
    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name("stsr-bench")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    cells = [
        r for r in runs if "mlflow.parentRunId" in r.data.tags and r.info.status == "FINISHED"
    ]
    names = {(r.data.tags.get("dataset"), r.info.run_name) for r in cells}
    assert {d for d, _ in names} >= {f"{ds.name}-f{i}" for i in range(4)}
    page = (tmp_path / "LB.md").read_text()
    assert f"## {ds.name} · k = 2 · 4 folds" in page and f"## {ds.name}-f" not in page


@pytest.mark.parametrize("folds", ["7", "a", "1,x", ""])
def test_a_bad_fold_selection_is_one_line_and_writes_nothing(folded, tmp_path, capsys, folds):
    _, args = folded
    assert cli.main([*args, "--folds", folds]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--folds" in err[0]
    assert not (tmp_path / "results").exists()


@pytest.fixture()
def unfolded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[syn.Dataset, list[str]]:
    """A dataset with its single split and no fold files; and its data arguments."""
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    monkeypatch.setenv("STSR_CACHE_DIR", str(tmp_path / "cache"))
    ds = syn.transcripts(tmp_path / "cards", tmp_path / "data")
    data = ["--data-dir", str(tmp_path / "data")]
    assert cli.main(["split", "--datasets", ds.name, *data]) == 0
    return ds, data


def test_a_dataset_without_fold_files_names_the_command(unfolded, tmp_path, capsys) -> None:
    ds, data = unfolded
    args = ["run", "--datasets", ds.name, "--methods", "mean", *data, "--folds", "0,1"]
    status = cli.main([*args, "--results-dir", str(tmp_path / "results"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert f"python -m bench split --datasets {ds.name} --k 2 --folds" in err[0]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("folds", [None, "all"])
def test_without_fold_files_all_runs_the_single_split(unfolded, tmp_path, folds) -> None:
    ds, data = unfolded
    args = ["run", "--datasets", ds.name, "--methods", "mean", *data, "--no-progress"]
    args += ["--results-dir", str(tmp_path / "results"), "--leaderboard", str(tmp_path / "LB")]
    assert cli.main(args + ([] if folds is None else ["--folds", folds])) == 0
    assert set(_cells(tmp_path / "results")) == {(ds.name, "mean")}


def test_none_runs_the_single_split_beside_committed_folds(folded, tmp_path: Path) -> None:
    ds, args = folded
    data = args[args.index("--data-dir") : args.index("--data-dir") + 2]
    assert cli.main(["split", "--datasets", ds.name, *data]) == 0  # the single split too
    assert cli.main([*args, "--folds", "none"]) == 0
    assert set(_cells(tmp_path / "results")) == {(ds.name, m) for m in ("mean", "bicubic")}


def test_ladder_adds_every_committed_k_at_the_first_seed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    monkeypatch.setenv("STSR_CACHE_DIR", str(tmp_path / "cache"))
    ds = syn.transcripts(tmp_path / "cards", tmp_path / "data")
    ds.card["split"]["folds"] = 4
    ds.card["split"]["pooling"] = [2, 4]
    ds.write_card()
    data = ["--data-dir", str(tmp_path / "data")]
    for k in ("2", "4"):
        assert cli.main(["split", "--datasets", ds.name, "--k", k, *data]) == 0
    for k in ("2", "4"):
        assert cli.main(["split", "--datasets", ds.name, "--k", k, "--folds", *data]) == 0
    results, board = tmp_path / "results", tmp_path / "LB.md"
    args = ["run", "--datasets", ds.name, "--methods", "mean,bicubic", *data, "--no-progress"]
    args += ["--results-dir", str(results), "--leaderboard", str(board), "--seeds", "0", "1"]
    assert cli.main([*args, "--ladder"]) == 0
    cells = {(r.dataset, r.method, r.seed) for r in read_records(results) if r.method != "ceiling"}
    methods = ("mean", "bicubic")
    folds = {(f"{ds.name}-f{i}", m, s) for i in range(4) for m in methods for s in (0, 1)}
    rungs = {(f"{ds.name}-k4-f0", m, 0) for m in methods}  # k = 2's fold 0 is a fold already
    assert cells == folds | rungs  # the ladder: fold 0 at every k, the first seed only
    page = board.read_text()
    assert f"## {ds.name} · k = 2 · 4 folds" in page and "## Pooling ladder" in page
    assert f"## {ds.name} · k = 2 ·" not in page.replace(f"## {ds.name} · k = 2 · 4 folds", "")
    assert f"## {ds.name}-k4" not in page  # a rung, not a section
    assert f"### {ds.name} fold 0 · k = 2, 4 · seeds 0" in page
