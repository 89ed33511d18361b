"""What the MLflow UI shows of a grid: the experiment is marked a model-development experiment
(the UI opens its runs table, not its GenAI view), and each cell's run names its split as a
dataset input (the Dataset column), digest = the split's fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import synthetic as syn

from bench import cli
from bench.run.tracking import EXPERIMENT, EXPERIMENT_KIND, default_uri


def test_runs_carry_their_split_as_a_dataset_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    monkeypatch.setenv("STSR_CACHE_DIR", str(tmp_path / "cache"))
    syn.legacy_st(tmp_path / "cards", tmp_path / "data")
    data, results = ["--data-dir", str(tmp_path / "data")], tmp_path / "results"
    assert cli.main(["split", "--datasets", "synth_st", *data]) == 0
    argv = ["run", "--datasets", "synth_st", "--methods", "bicubic,mean", *data, "--no-progress"]
    assert (
        cli.main([*argv, "--results-dir", str(results), "--leaderboard", str(tmp_path / "LB.md")])
        == 0
    )

    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp.tags[EXPERIMENT_KIND] == "custom_model_development"
    split = json.loads((tmp_path / "cards" / "synth_st" / "split-k2.json").read_text())
    cells = [r for r in client.search_runs([exp.experiment_id]) if "record_id" in r.data.tags]
    assert sorted(r.data.tags["method"] for r in cells) == ["bicubic", "mean"]
    for run in cells:
        (given,) = run.inputs.dataset_inputs
        assert given.dataset.name == "synth_st"
        assert given.dataset.digest == split["fingerprint"]
        assert json.loads(given.dataset.profile)["test_regions"] == len(split["test"])
        assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "evaluation")]
