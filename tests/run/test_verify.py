"""``python -m bench verify``: a real tiny grid (``bicubic,mean`` on a synthetic legacy ST
dataset) agrees with its store and its page; a flipped byte in a prediction, a truncated record,
a deleted or altered MLflow run and an edited page row are each listed (exit 2); damaged records
are moved aside with their side files and a rerun of ``bench run`` recomputes their cells, after
which verify passes again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import synthetic as syn

from bench import cli
from bench.board.verify import verify
from bench.run.records import DAMAGED, Record, read_records, record_paths
from bench.run.tracking import default_uri, read_child_runs


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> dict[str, Path]:
    """One grid run once: cards, data, results and page of ``bicubic,mean`` on ``synth_st``."""
    tmp = tmp_path_factory.mktemp("verify")
    mp = pytest.MonkeyPatch()
    mp.setenv("STSR_DATASETS_DIR", str(tmp / "cards"))
    mp.setenv("STSR_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    syn.legacy_st(tmp / "cards", tmp / "data")
    assert cli.main(["split", "--datasets", "synth_st", "--data-dir", str(tmp / "data")]) == 0
    paths = {"tmp": tmp, "results": tmp / "results", "page": tmp / "LB.md"}
    assert cli.main(_run_argv(tmp, paths["results"], paths["page"])) == 0
    yield paths
    mp.undo()


def _run_argv(tmp: Path, results: Path, page: Path) -> list[str]:
    return ["run", "--datasets", "synth_st", "--methods", "bicubic,mean", "--data-dir",
            str(tmp / "data"), "--results-dir", str(results), "--leaderboard", str(page),
            "--no-progress"]  # fmt: skip


def _copy(grid: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the grid's results (store included) and page."""
    results, page = tmp_path / "results", tmp_path / "LB.md"
    shutil.copytree(grid["results"], results)
    shutil.copy(grid["page"], page)
    return results, page


def _verify(results: Path, page: Path, capsys) -> tuple[int, str, str]:
    status = cli.main(["verify", "--results-dir", str(results), "--leaderboard", str(page)])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_a_fresh_grid_agrees_and_records_carry_checksums(grid, tmp_path, capsys):
    results, page = _copy(grid, tmp_path)
    status, out, err = _verify(results, page, capsys)
    assert status == 0, err
    assert err == ""
    # bicubic, mean, and the ceiling control (no run, no side files)
    assert "3 records, 2 runs, 6 files" in out and "checked: all agree" in out, out
    bicubic = Record.from_json((results / "synth_st" / "bicubic" / "seed-0.json").read_text())
    assert set(bicubic.files) == {"seed-0.per_gene.csv", "seed-0.pred.npz", "seed-0.genes.png"}
    assert all(len(v) == 64 for v in bicubic.files.values())


def test_damaged_records_are_moved_aside_and_a_rerun_recomputes_them(grid, tmp_path, capsys):
    results, page = _copy(grid, tmp_path)
    cell = results / "synth_st"
    before = {r.method: r.finished_ms for r in read_records(results)}
    pred = cell / "bicubic" / "seed-0.pred.npz"
    data = bytearray(pred.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pred.write_bytes(bytes(data))
    text = (cell / "mean" / "seed-0.json").read_text()
    (cell / "mean" / "seed-0.json").write_text(text[: len(text) // 2])

    status, out, err = _verify(results, page, capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert any("seed-0.pred.npz: sha256" in x and "moved aside" in x for x in lines), err
    assert any("mean/seed-0.json: not a record: unparseable JSON" in x for x in lines), err
    assert "2 damaged record(s) moved aside" in out, out
    (away,) = (results / DAMAGED).iterdir()
    for method in ("bicubic", "mean"):
        assert (away / "synth_st" / method / "seed-0.json").is_file()
        assert not (cell / method / "seed-0.json").exists()
    assert (away / "synth_st" / "bicubic" / "seed-0.pred.npz").read_bytes() == bytes(data)
    assert not pred.exists()  # no stale prediction left for a later run or export to reuse
    assert [r.method for r in read_records(results)] == ["ceiling"]  # damaged/ is not read
    assert all(DAMAGED not in p.parts for p in record_paths(results))

    assert cli.main(_run_argv(grid["tmp"], results, page)) == 0
    capsys.readouterr()
    again = {r.method: r.finished_ms for r in read_records(results)}
    assert again["ceiling"] == before["ceiling"]
    assert again["bicubic"] > before["bicubic"] and again["mean"] > before["mean"]
    status, out, err = _verify(results, page, capsys)
    assert status == 0, err
    assert "all agree" in out


def test_store_disagreements_are_listed_and_nothing_is_moved(grid, tmp_path, capsys):
    import mlflow
    from mlflow.entities import Metric

    results, page = _copy(grid, tmp_path)
    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    runs = {r.data.tags["method"]: r for r in read_child_runs(default_uri(results))}
    client.delete_run(runs["bicubic"].info.run_id)
    mean = runs["mean"]
    ts = max(m.timestamp for m in client.get_metric_history(mean.info.run_id, "pcc"))
    copy = client.create_run(mean.info.experiment_id, tags=mean.data.tags)  # a duplicate
    client.log_batch(copy.info.run_id, metrics=[Metric(k, v, ts, 0) for k, v in
                                                mean.data.metrics.items()])  # fmt: skip
    client.set_terminated(copy.info.run_id, "FINISHED")
    client.log_batch(mean.info.run_id, metrics=[Metric("pcc", 0.123, ts + 1, 0)])

    status, out, err = _verify(results, page, capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    assert "bicubic/seed-0.json: no finished MLflow run of this record" in lines[0]
    assert "mean/seed-0.json: 2 finished MLflow runs of this record" in lines[1]
    assert f"mean/seed-0.json: MLflow run {mean.info.run_id}: pcc 0.123 in the run" in lines[2]
    assert "3 problems" in out
    assert not (results / DAMAGED).exists()


def test_an_edited_page_row_is_listed(grid, tmp_path, capsys):
    results, page = _copy(grid, tmp_path)
    lines = page.read_text().splitlines()
    i = next(i for i, x in enumerate(lines) if x.startswith("| 1 | ") and "[" in x)
    cells = lines[i].split(" | ")
    label = cells[1]
    cells[2] = "0.999 [0.998, 1.000]"  # the first score column
    lines[i] = " | ".join(cells)
    page.write_text("\n".join(lines) + "\n")
    status, out, err = _verify(results, page, capsys)
    assert status == 2
    assert f"row '{label}'" in err and "page 0.999 [0.998, 1.000]" in err, err

    head = next(i for i, x in enumerate(lines) if x.startswith("| rank | method | PCC"))
    lines[head] = lines[head].replace("PCC ↑", "PCC (new)")
    page.write_text("\n".join(lines) + "\n")
    status, out, err = _verify(results, page, capsys)
    assert status == 2
    assert "another version of bench/board/page.py" in err, err


def test_old_records_without_checksums_are_noted_not_failed(grid, tmp_path, capsys):
    results, page = _copy(grid, tmp_path)
    path = results / "synth_st" / "bicubic" / "seed-0.json"
    raw = json.loads(path.read_text())
    del raw["files"]
    path.write_text(json.dumps(raw))
    assert Record.from_json(raw).files is None
    status, out, err = _verify(results, page, capsys)
    assert status == 0, err
    assert "bicubic/seed-0.json: no checksum recorded" in out and "all agree" in out
    report = verify(results, page=page)
    assert report.ok and report.files == 3 and len(report.notes) == 1


def test_missing_results_or_store_is_one_line(grid, tmp_path, capsys):
    status, _, err = _verify(tmp_path / "nowhere", tmp_path / "LB.md", capsys)
    assert status == 2 and err.count("\n") == 1 and "does not exist" in err
    results, page = _copy(grid, tmp_path)
    (results / "mlflow.db").unlink()
    status, _, err = _verify(results, page, capsys)
    assert status == 2 and err.count("\n") == 1 and "no MLflow store" in err, err
    assert not (results / "mlflow.db").exists()  # nothing created
