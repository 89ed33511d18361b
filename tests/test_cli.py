"""End to end: the CLI on real her2st data, MLflow read-back, leaderboard, failures, bad input."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from smoke import smoke_size

from bench import cli
from bench.run.records import read_records
from methods import names

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def main_job(tmp_path_factory, root):
    """The README's main job (``run --methods all``) on her2st's single split (``--folds none``;
    the folds are tests/run/test_folds_grid.py's) into a temporary results dir."""
    out = tmp_path_factory.mktemp("main")
    argv = [
        "run",
        "--methods",
        "all",
        "--datasets",
        "her2st",
        "--folds",
        "none",
        "--data-dir",
        str(root),
        "--results-dir",
        str(out / "results"),
        "--leaderboard",
        str(out / "LEADERBOARD.md"),
        "--no-progress",
        "--draws",
        "3",
    ]
    with smoke_size():  # iterative methods at smoke size; every registered method runs
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = cli.main(argv)
    return out, argv, rc, buf.getvalue()


def test_main_job_records_every_registered_method(main_job):
    out, _, rc, _ = main_job
    assert rc == 0
    records = [r for r in read_records(out / "results") if r.method != "ceiling"]
    assert sorted(r.method for r in records) == sorted(names())
    for r in records:
        assert r.status == "ok" and r.dataset == "her2st" and r.seed == 0
        assert set(r.metrics) >= {"pcc", "ssim", "rmse"}
        assert len(r.per_gene.scores["pcc"]) == 2 * 50 and r.split.fingerprint
        assert r.timings["predict_s"] >= 0 and r.peak_memory_mb > 0 and r.device == "cpu"


def test_mlflow_runs_are_readable_from_the_printed_store(main_job):
    import mlflow

    out, _, _, stdout = main_job
    uri = next(
        line.split("MLflow store: ")[1].split()[0]
        for line in stdout.splitlines()
        if line.startswith("MLflow store: ")
    )
    assert uri == f"sqlite:///{out / 'results' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["stsr-bench"])
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert sorted(children["tags.method"]) == sorted(names())
    assert (
        set(children["tags.status"]) == {"ok"}
        and children["tags.mlflow.parentRunId"].nunique() == 1
    )
    assert children["tags.split_fingerprint"].nunique() == 1
    bicubic = children[children["tags.method"] == "bicubic"].iloc[0]
    record = json.loads((out / "results" / "her2st" / "bicubic" / "seed-0.json").read_text())
    assert bicubic["metrics.pcc"] == pytest.approx(record["metrics"]["pcc"])
    assert bicubic["tags.mlflow.runName"] == "bicubic[seed=0]"  # the name says the mode
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(bicubic["run_id"])}
    assert artifacts == {"seed-0.per_gene.csv", "seed-0.genes.png", "seed-0.pred.npz"}
    diffst = children[children["tags.method"] == "diffst"].iloc[0]
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(diffst["run_id"])}
    assert {"seed-0.spread.png", "seed-0.pred.npz"} <= artifacts  # a sampler's spread figure
    parent = children["tags.mlflow.parentRunId"].iloc[0]
    figures = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(parent, "figures")}
    stem = f"figures/her2st-{record['split']['fingerprint'][:8]}"
    assert {f"{stem}-{kind}.png" for kind in ("gallery", "spread-diffst", "spread-sr3")} <= figures


def test_bicubic_beats_mean_on_pcc_and_the_leaderboard_shows_it(main_job):
    out, _, _, _ = main_job
    by = {r.method: r for r in read_records(out / "results")}
    assert by["bicubic"].metrics["pcc"] > by["mean"].metrics["pcc"] + 0.2
    board = (out / "LEADERBOARD.md").read_text()

    def method(line: str) -> str:  # a row's label is its variant, e.g. diffst[preset=quick,...]
        return line.split("|")[2].strip().split("[")[0]

    rows = {
        method(line): line
        for line in board.splitlines()
        if line.startswith("|") and line.count("|") > 5 and method(line) in names()
    }
    assert set(rows) == set(names())
    assert f"{by['bicubic'].metrics['pcc']:.3f}" in rows["bicubic"]
    assert f"{by['mean'].metrics['pcc']:.3f}" in rows["mean"]
    links = re.findall(r"\]\((figures/[^)]+)\)", board)
    assert any(link.endswith("-gallery.png") for link in links)
    assert sorted(link.split("-spread-")[1] for link in links if "-spread-" in link) == [
        "diffst.png",
        "sr3.png",
    ]
    assert all((out / link).is_file() for link in links)


def test_trained_methods_carry_learning_curves_to_record_store_and_page(main_job):
    import mlflow

    out, _, _, stdout = main_job
    by = {r.method: r for r in read_records(out / "results")}
    for name in ("unet", "sr3", "diffst", "histogene"):
        curve = by[name].curve
        assert curve.step and curve.step[-1] == curve.total and by[name].converged is not None
        assert curve.validation and not set(curve.validation) & set(by[name].split.test)
    assert not by["bicubic"].curve and by["bicubic"].converged is None
    assert by["diffst"].curve.crps and not by["unet"].curve.crps
    uri = f"sqlite:///{out / 'results' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["stsr-bench"])
    unet = runs[runs["tags.method"] == "unet"].iloc[0]
    history = client.get_metric_history(unet["run_id"], "val_pcc")
    assert [m.step for m in history] == by["unet"].curve.step
    assert [m.value for m in history] == pytest.approx(by["unet"].curve.pcc)
    board = (out / "LEADERBOARD.md").read_text()
    assert "### Convergence" in board
    for name in ("unet", "sr3", "diffst", "histogene"):
        link = re.search(rf"\]\((figures/[^)]*-curve-{name}\.png)\)", board)
        assert link and (out / link.group(1)).is_file()


def test_the_ceiling_row_frames_the_scores(main_job):
    out, _, _, _ = main_job
    by = {r.method: r for r in read_records(out / "results")}
    ceiling = by["ceiling"]
    assert ceiling.control == "ceiling" and ceiling.ok
    assert len(ceiling.per_gene.scores["pcc"]) == 2 * 50
    # her2st's truth is noisy: the ceiling is well below 1 yet above what bicubic reaches
    assert by["bicubic"].metrics["pcc"] < ceiling.metrics["pcc"] < 0.95
    assert 0 < ceiling.metrics["r_half"] < ceiling.metrics["pcc"]
    board = (out / "LEADERBOARD.md").read_text()
    assert "### Share of the ceiling" in board
    share = (by["bicubic"].metrics["pcc"] - by["mean"].metrics["pcc"]) / (
        ceiling.metrics["pcc"] - by["mean"].metrics["pcc"]
    )
    line = next(
        x
        for x in board.split("### Share of the ceiling")[1].splitlines()
        if x.startswith("| bicubic |")
    )
    assert abs(float(line.split("|")[3]) - share) < 0.01  # means of tables vs of metrics
    # the LR-aware bound is above the noise ceiling and above every ranked method
    bound = ceiling.metrics["pcc_lr"]
    assert bound >= ceiling.metrics["pcc"] and "No ranked method exceeds" in board
    assert all(r.metrics["pcc"] < bound for r in by.values() if r.ok and not r.control)


@pytest.fixture
def smoke():
    with smoke_size():
        yield


def test_rerun_resumes_and_numbers_are_deterministic(main_job, tmp_path, capsys, smoke):
    out, argv, _, _ = main_job
    before = {p: p.stat().st_mtime_ns for p in (out / "results").glob("her2st/*/seed-0.json")}
    assert cli.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing recomputed
    fresh = argv.copy()
    fresh[fresh.index("--results-dir") + 1] = str(tmp_path / "again")
    fresh[fresh.index("--leaderboard") + 1] = str(tmp_path / "LB.md")
    assert cli.main(fresh) == 0
    a = {r.method: (r.metrics, r.per_gene) for r in read_records(out / "results")}
    b = {r.method: (r.metrics, r.per_gene) for r in read_records(tmp_path / "again")}
    assert a == b


@pytest.fixture
def stubs(register_method):
    for name, cls in [
        ("noisy", "NoisyBicubic"),
        ("broken", "Broken"),
        ("nan", "NotFinite"),
        ("peek", "Peeking"),
        ("slow", "Slow"),
        ("greedy", "Greedy"),
        ("shape", "WrongShape"),
    ]:
        register_method(name, "stub_methods", cls)


def test_failing_cells_are_recorded_and_the_grid_goes_on(stubs, root, tmp_path, capsys):
    results = tmp_path / "r"
    rc = cli.main(
        [
            "run",
            "--methods",
            "broken,nan,peek,noisy,mean",
            "--datasets",
            "her2st",
            "--folds",
            "none",
            "--data-dir",
            str(root),
            "--results-dir",
            str(results),
            "--leaderboard",
            str(tmp_path / "LB.md"),
            "--draws",
            "10",
            "--seeds",
            "0",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 1
    by = {(r.method, r.seed): r for r in read_records(results) if r.method != "ceiling"}
    assert len(by) == 10
    assert "deliberately broken" in by[("broken", 0)].error
    assert "NaN" in by[("nan", 0)].error
    assert by[("peek", 0)].status == "failed"  # the target is not there at predict time
    assert (
        (results / "her2st" / "broken" / "seed-0.traceback.txt").read_text().count("RuntimeError")
    )
    noisy = by[("noisy", 0)]
    assert noisy.status == "ok" and noisy.params["draws"] == 10
    assert {"spread", "crps", "spread_skill", "coverage", "draw_diversity", "rvd"} <= set(
        noisy.metrics
    )
    assert noisy.metrics["spread"] > 0.2 and noisy.metrics != by[("noisy", 1)].metrics
    board = (tmp_path / "LB.md").read_text()
    assert "deliberately broken" in board and "noisy" in board


def test_each_fault_kind_is_isolated(stubs, root, tmp_path):
    """Exception, NaN, wrong shape, timeout and out-of-memory: each a failed cell with its reason
    and traceback; the good cell after them still runs; exit status 1."""
    results = tmp_path / "r"
    argv = ["run", "--methods", "broken,nan,shape,slow,greedy,bicubic", "--datasets", "her2st"]
    argv += ["--folds", "none"]
    argv += ["--timeout", "5"]  # bicubic's cell (scoring included) fits on a loaded 2-core machine
    argv += ["--data-dir", str(root), "--results-dir", str(results), "--no-progress"]
    assert cli.main(argv + ["--leaderboard", str(tmp_path / "LB.md")]) == 1
    by = {r.method: r for r in read_records(results)}
    assert by["bicubic"].status == "ok"
    reasons = {
        "broken": "RuntimeError: deliberately broken",
        "nan": "NaN",
        "shape": "has shape (2, 1, 3, 3)",
        "slow": "CellTimeout: the cell ran past --timeout 5 s",
        "greedy": "MemoryError",
    }
    for method, needle in reasons.items():
        assert by[method].status == "failed" and needle in by[method].error, method
        tb = results / "her2st" / method / "seed-0.traceback.txt"
        assert tb.read_text().strip(), method
    assert by["slow"].timings["fit_s"] == 0.0 and by["slow"].finished - by["slow"].started < 15


BAD = [
    (["run", "--methods", "sr9000"], "unknown method 'sr9000'"),
    (["run", "--datasets", "nope"], "unknown dataset 'nope'"),
    (["run", "--seeds", "-1"], "negative"),
    (["run", "--seeds", "x"], "not an integer"),
    (["run", "--preset", "huge"], "invalid choice"),
    (["run", "--samples", "0"], "positive integer"),
    (["run", "--timeout", "-3"], "positive number of seconds"),
    (["run", "--executor", "ray", "--ray-address", "ray://127.0.0.1:9"], "cannot start or reach"),
    (["run", "--data-dir", "/nonexistent/data"], "bench fetch"),
    (["run", "--results-dir", "{file}/results"], "not writable"),
    (["run", "--tracking-uri", "http://127.0.0.1:9"], "cannot be used"),
    (["leaderboard", "--results-dir", "/nonexistent/results"], "does not exist"),
    (["bogus"], "invalid choice"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_gives_one_line_and_exit_2_and_writes_nothing(
    argv, needle, root, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    (tmp_path / "file").write_text("")
    argv = [a.replace("{file}", str(tmp_path / "file")) for a in argv]
    if argv[0] == "run":
        if "--data-dir" not in argv:
            argv += ["--data-dir", str(root)]
        if "--results-dir" not in argv:
            argv += ["--results-dir", str(tmp_path / "results")]
        argv += ["--leaderboard", str(tmp_path / "board" / "LB.md")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error:") and "\n" not in err and needle in err, err
    assert not (tmp_path / "results").exists() and not (tmp_path / "board").exists()


def test_list_shows_every_card(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("her2st", "visium_cytassist_mouse_embryo", "xenium_bone_marrow"):
        assert name in out


def test_all_datasets_score_and_export(root, tmp_path, capsys):
    """``run --methods bicubic,mean --datasets all``, then a second resolution and an export."""
    import anndata as ad

    results = tmp_path / "results"
    common = ["--data-dir", str(root), "--results-dir", str(results), "--no-progress"]
    board = ["--leaderboard", str(tmp_path / "LB.md")]
    argv = ["run", "--methods", "bicubic,mean", "--datasets", "all", "--preset", "quick"]
    argv += ["--folds", "none"]
    assert cli.main(argv + common + board) == 0
    records = [r for r in read_records(results) if r.method != "ceiling"]
    assert {r.dataset for r in records} == {
        "her2st",
        "visium_cytassist_mouse_embryo",
        "xenium_bone_marrow",
    }
    assert all(r.status == "ok" for r in records)
    for dataset in {r.dataset for r in records}:
        by = {r.method: r.metrics["pcc"] for r in records if r.dataset == dataset}
        assert by["bicubic"] > by["mean"] + 0.2, dataset  # interpolation carries real signal
    argv = ["run", "--methods", "bicubic", "--datasets", "her2st", "--k", "3"]
    assert cli.main(argv + common + board) == 0
    k3 = [r for r in read_records(results) if r.split.k == 3 and r.method != "ceiling"]
    # k = 3 has committed fold files too (the ladder's), so --k 3 runs its folds by default
    assert sorted(r.dataset for r in k3) == [f"her2st-k3-f{i}" for i in range(6)]
    out = tmp_path / "x.h5ad"
    argv = ["export", "--dataset", "xenium_bone_marrow", "--method", "bicubic", "--out", str(out)]
    assert cli.main(argv + ["--data-dir", str(root), "--results-dir", str(results)]) == 0
    adata = ad.read_h5ad(out)
    assert adata.n_vars == 25 and adata.obsm["spatial"].shape == (adata.n_obs, 2)
    assert adata.uns["stsr"]["k"] == 4
    capsys.readouterr()
    argv = ["export", "--dataset", "her2st", "--method", "mean", "--seed", "7", "--out", str(out)]
    assert cli.main(argv + ["--data-dir", str(root), "--results-dir", str(results)]) == 2
    assert "no saved prediction" in capsys.readouterr().err
