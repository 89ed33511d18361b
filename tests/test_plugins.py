"""Plugins from outside: the example package (``examples/plugin``) installed on a temporary path
adds the method ``lr_smooth`` and the reader ``spot_table``; ``list``, ``split``, ``run`` and the
contract tests see them like built-in ones; uninstalled, they are gone. Broken plugins (an import
error, a class that is not a Method, a reader without ``read_section``) are one line naming the
distribution, never a traceback or a crashed grid."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import synthetic as syn

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "plugin"


def _bench(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env(site: Path, cards: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["STSR_DATASETS_DIR"] = str(cards)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def _dist(site: Path, name: str, entry_points: str) -> None:
    """A hand-made distribution (metadata only) on ``site``: what an installed wheel leaves."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example plugin installed with pip into a temporary folder (no network, no deps)."""
    site = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    shutil.copytree(EXAMPLE, build / "plugin")  # pip builds in place; keep the checkout clean
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(build / "plugin")],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    return site


def test_plugin_method_passes_the_contract_tests(tmp_path: Path, installed: Path) -> None:
    env = _env(installed, tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/methods/test_contract_all.py", "-k", "lr_smooth"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:]
    assert " passed" in out.stdout and "deselected" in out.stdout


def test_broken_plugins_are_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(
        site,
        "broken_pkg",
        "[stsr_bench.methods]\nghost = no_such_module_xyz:Ghost\nnotamethod = json:JSONDecoder\n"
        "bicubic = json:JSONDecoder\n\n[stsr_bench.readers]\nghostreader = no_such_reader_xyz\n"
        "plainmodule = json\n",
    )
    cards, data = tmp_path / "cards", tmp_path / "data"
    env = _env(site, cards)
    listed = _bench(env, "list")
    assert listed.returncode == 0, listed.stderr
    lines = {x.split()[0]: x for x in listed.stdout.splitlines() if x.startswith("  ")}
    assert "broken plugin" in lines["ghost"] and "broken_pkg 1.0" in lines["ghost"]
    assert "ModuleNotFoundError" in lines["ghost"]
    assert "not a subclass of methods.contract.Method" in lines["notamethod"]
    assert "plugin" not in lines["bicubic"]  # a built-in name wins over a plugin's

    syn.legacy_st(cards, data)
    results, board = str(tmp_path / "results"), str(tmp_path / "LB.md")
    common = ["--datasets", "synth_st", "--data-dir", str(data), "--no-progress",
              "--results-dir", results, "--leaderboard", board]  # fmt: skip
    for name in ("ghost", "notamethod"):
        out = _bench(env, "run", "--methods", name, *common)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
        assert f"method plugin {name!r} from broken_pkg 1.0" in out.stderr
    assert not (tmp_path / "results").exists()  # refused before anything was written
    code = "from bench.grid.plan import usable_methods as u; print(u(['bicubic', 'ghost'], True))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "['bicubic']"  # under --methods all a broken plugin is skipped
    assert out.stderr.startswith("skipped: method plugin 'ghost'") and out.stderr.count("\n") == 1

    for reader, why in (("ghostreader", "cannot be imported"), ("plainmodule", "no read_section")):
        ds = syn.legacy_st(cards, data, name=f"synth_{reader}")
        ds.card["reader"] = reader
        ds.write_card()
        out = _bench(env, "split", "--datasets", ds.name, "--data-dir", str(data))
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
        assert f"reader plugin {reader!r} from broken_pkg 1.0" in out.stderr and why in out.stderr


def test_plugin_is_listed_splits_runs_and_goes_away(installed: Path, tmp_path: Path) -> None:
    """Runs last in this module: it uninstalls the plugin."""
    cards, data = tmp_path / "cards", tmp_path / "data"
    syn.spot_table(cards, data)
    env = _env(installed, cards)

    listed = _bench(env, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.strip().startswith("lr_smooth"))
    assert "plugin: stsr-example-plugin 0.1.0" in line

    common = ["--datasets", "synth_spot", "--data-dir", str(data)]
    split = _bench(env, "split", *common)
    assert split.returncode == 0, split.stderr  # the card's reader is the plugin's spot_table
    run = _bench(
        env, "run", "--methods", "lr_smooth,bicubic", *common, "--no-progress",
        "--results-dir", str(tmp_path / "results"), "--leaderboard", str(tmp_path / "LB.md"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    record = json.loads(
        (tmp_path / "results" / "synth_spot" / "lr_smooth" / "seed-0.json").read_text()
    )
    assert record["status"] == "ok", record.get("error")
    assert record["params"]["sigma_blocks"] == 0.5
    assert "lr_smooth" in (tmp_path / "LB.md").read_text()

    for path in installed.iterdir():  # uninstall: remove what pip put there
        shutil.rmtree(path)
    gone = _bench(env, "list")
    assert gone.returncode == 0 and "lr_smooth" not in gone.stdout
    assert "synth_spot" in gone.stdout and "unusable card" in gone.stdout
    assert "reader = 'spot_table' is unknown" in gone.stdout
    again = _bench(env, "run", "--methods", "lr_smooth", *common, "--no-progress")
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "unknown method 'lr_smooth'" in again.stderr
