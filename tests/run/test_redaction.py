"""Credentials are redacted wherever they are shown or stored: stderr, the invocation's MLflow
parameters and the leaderboard's header."""

from __future__ import annotations

import pytest

from bench import RunConfig, cli, run_grid
from bench.errors import redact

SECRET = "hunter2"


@pytest.mark.parametrize(
    "text,shown",
    [
        ("http://bob:hunter2@host:5000/x", "http://bob:***@host:5000/x"),
        ("postgresql+psycopg://u:hunter2@db/mlflow", "postgresql+psycopg://u:***@db/mlflow"),
        ("https://u:p@ss:hunter2@h/", "https://u:***@h/"),
        ("http://h/api?token=hunter2&x=1", "http://h/api?token=***&x=1"),
        ("run --db-password hunter2 --k 2", "run --db-password *** --k 2"),
        ("sqlite:////abs/results/mlflow.db", "sqlite:////abs/results/mlflow.db"),
        ("http://user@host:5000", "http://user@host:5000"),
    ],
)
def test_redact(text, shown):
    assert redact(text) == shown


def test_credentials_stay_out_of_stderr(tmp_path, capsys):
    uri = f"http://bob:{SECRET}@127.0.0.1:9"
    argv = [
        "run",
        "--methods",
        "bicubic",
        "--datasets",
        "her2st",
        "--folds",
        "none",
        "--tracking-uri",
        uri,
        "--results-dir",
        str(tmp_path),
    ]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert SECRET not in out + err and "bob:***@127.0.0.1:9" in err


def test_credentials_stay_out_of_parameters_and_leaderboard(root, tmp_path, capsys):
    import mlflow

    command = f"python -m bench run --tracking-uri https://alice:{SECRET}@mlflow.example.org"
    result = run_grid(
        RunConfig(
            datasets="her2st",
            folds="none",
            methods="bicubic",
            data_dir=root,
            results_dir=tmp_path / "r",
            leaderboard=tmp_path / "LB.md",
            progress=False,
            command=command,
        )
    )
    assert result.exit_status == 0
    board = (tmp_path / "LB.md").read_text()
    assert SECRET not in board and "alice:***@mlflow.example.org" in board
    client = mlflow.MlflowClient(tracking_uri=result.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("stsr-bench").experiment_id])
    values = [v for r in runs for v in (*r.data.params.values(), *r.data.tags.values())]
    assert values and not [v for v in values if SECRET in v]
    assert any("alice:***@" in v for v in values)
    assert SECRET not in "".join(capsys.readouterr())
