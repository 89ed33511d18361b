"""The house's rules that import-linter cannot check: no module of the harness reaches into
another module's private names (a leading underscore), so every name crossing a module border
is public and documented; the benchmarks use the library's public API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = ("bench", "methods")


def private_uses(path: Path) -> list[str]:
    """``module:line name`` for each private name of another project module that ``path``
    imports (``from x import _y``) or reads off an imported project module (``x._y``)."""
    tree = ast.parse(path.read_text(), str(path))
    modules: set[str] = set()  # local names bound to project modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PROJECT:
                    modules.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] not in PROJECT:
                continue  # a third-party module (relative imports are the project's)
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    where = "." * node.level + (node.module or "")
                    found.append(f"{node.lineno} from {where} import {a.name}")
                else:
                    modules.add(a.asname or a.name)  # perhaps a submodule
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.lineno} {node.value.id}.{node.attr}")
    return [f"{path.relative_to(REPO)}:{f}" for f in found]


def files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*.py"))


@pytest.mark.parametrize("folder", ["bench", "methods", "tests", "benchmarks"])
def test_no_private_name_crosses_a_module_border(folder):
    paths = files(folder)
    offenders = [use for p in paths for use in private_uses(p)]
    assert not offenders, "private names used across modules:\n" + "\n".join(offenders)


def test_the_checker_sees_both_forms(tmp_path):
    bad = REPO / "tests" / ".layout_probe.py"
    try:
        bad.write_text("from bench.scoring.metrics import _x\nfrom bench import grid\ngrid._y\n")
        assert [u.split(":", 1)[1] for u in private_uses(bad)] == [
            "1 from bench.scoring.metrics import _x",
            "3 grid._y",
        ]
    finally:
        bad.unlink(missing_ok=True)


@pytest.mark.subprocess
def test_importing_bench_loads_no_wing():
    """``import bench`` stays cheap: the entry point is resolved on first use."""
    import subprocess
    import sys

    code = "import sys, bench; print(sorted(m for m in sys.modules if m.startswith('bench')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "['bench']", out.stderr


# The test truth reaches the scorer alone (bench/data/splits.py, Truth): these modules may read a
# split's ``.truth``; nothing in methods/ or benchmarks/ (tuning code) and no other harness
# module may. Benchmarks tune on ``split.fit`` and ``split.validation``.
TRUTH_READERS = {
    "bench/data/splits.py",  # defines it
    "bench/data/cache.py",  # stores it
    "bench/run/cell.py",  # the scorer (and the positive control's targets)
    "bench/run/ceiling.py",  # the noise ceiling, a property of the test truth
    "bench/run/outputs.py",  # the first test region's truth for the page's gene-map figures
    "bench/run/export.py",  # the truth layer of an exported cell, for the user
    # checks the ceiling estimators by simulation on the test regions' own depths, as the
    # ceiling itself reads them; it prints a diagnostic and chooses nothing
    "benchmarks/ceiling_check.py",
}


def truth_reads(path: Path) -> list[str]:
    """``file:line`` of every ``<expr>.truth`` read in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return [
        f"{name}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("truth", "test_counts")
    ]


def test_only_the_scorer_reads_the_test_truth():
    offenders = [
        use
        for p in files("bench", "methods", "benchmarks")
        if p.relative_to(REPO).as_posix() not in TRUTH_READERS
        for use in truth_reads(p)
    ]
    assert not offenders, "test truth read outside the scorer:\n" + "\n".join(offenders)


def test_test_inputs_carry_no_target(her2st):
    import numpy as np

    assert all(s.hr is None for s in her2st.test)
    assert all(s.hr is not None for s in her2st.fit + her2st.validation)
    truth = her2st.truth
    assert np.array_equal(truth.tissue, np.stack([s.hr_mask for s in her2st.test]))
    assert truth.hr.shape == (len(her2st.test), len(her2st.genes), *her2st.test[0].hr_shape)
    back = truth.targets(her2st.test)  # only the positive control is handed these
    assert np.array_equal(back[1].hr, truth.hr[1]) and her2st.test[1].hr is None


def test_the_truth_checker_sees_a_read(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def tune(split):\n    return split.truth.hr.mean()\n")
    assert truth_reads(probe) == [f"{probe}:2"]
