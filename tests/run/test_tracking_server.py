"""--tracking-uri: the same runs reach a real MLflow server (SQLite backend, loopback only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            break
        except OSError:
            assert proc.poll() is None, "mlflow server exited"
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start within 90 s")
    yield url, folder
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


def test_runs_reach_the_server_and_read_back_over_rest(server, root, tmp_path, capsys):
    url, folder = server
    results = tmp_path / "results"
    rc = cli.main(
        [
            "run",
            "--methods",
            "bicubic,mean",
            "--datasets",
            "her2st",
            "--folds",
            "none",
            "--data-dir",
            str(root),
            "--results-dir",
            str(results),
            "--tracking-uri",
            url,
            "--leaderboard",
            str(tmp_path / "LB.md"),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert f"MLflow store: {url}" in capsys.readouterr().out
    assert not (results / "mlflow.db").exists()  # nothing went to the embedded store
    exps = _post(url + "/api/2.0/mlflow/experiments/search", {"max_results": 10})["experiments"]
    exp_id = next(e["experiment_id"] for e in exps if e["name"] == "stsr-bench")
    runs = _post(
        url + "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 50}
    )["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    children = [t for t in tags if "mlflow.parentRunId" in t]
    assert sorted(t["method"] for t in children) == ["bicubic", "mean"]
    assert len(runs) == 3 and {t["status"] for t in children} == {"ok"}
    record = json.loads((results / "her2st" / "bicubic" / "seed-0.json").read_text())
    bicubic = next(r for r, t in zip(runs, tags, strict=True) if t.get("method") == "bicubic")
    metrics = {m["key"]: m["value"] for m in bicubic["data"]["metrics"]}
    assert metrics["pcc"] == pytest.approx(record["metrics"]["pcc"])
    uploaded = {p.name for p in (folder / "artifacts").rglob("*") if p.is_file()}
    assert {"seed-0.per_gene.csv", "seed-0.genes.png"} <= uploaded
