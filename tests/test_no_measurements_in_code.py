"""Docstrings and comments say what a thing is; measured scores and timings live in
``docs/decisions.md`` (issue 27).

Every comment (``tokenize``) and docstring (``ast``: module, class and function docstrings and
bare string statements) of every ``.py`` file under ``bench/`` and ``methods/`` is searched for
the shapes a measured result takes: a score quoted with its metric (``PCC 0.35``), one number
set against another (``0.540 against 0.513``, ``0.623 -> 0.625``), a range or a run of scores
(``0.69-0.96``, ``0.473, 0.470, 0.477``), a time (``420-500 s``, ``29 ms``) and a speed-up
(``1.07x faster``, ``30-100 times slower``). Formulas, units, defaults and thresholds (``flag <
0.5``, ``K = 128 draws``, ``C1 = 0.01^2``) do not match. A measured fact goes to the decisions
log, with its command and commit, and the code points at the entry by name.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = ("bench", "methods")

_SCORE = r"-?\d*\.\d{2,}"
_NUMBER = r"(\d{1,3}(,\d{3})+|\d+)(\.\d+)?"
MEASUREMENT_PATTERNS: dict[str, re.Pattern[str]] = {
    # a metric quoted with its value: "PCC 0.35", "validation PCC 0.380", "CRPS: 0.178"
    "metric with a value": re.compile(
        r"\b(PCC|SSIM|RMSE|CRPS|PCC@T|spread-skill|coverage|std)\s*(=|of|:|at|was|is)?\s*"
        + _SCORE
        + r"(?!\s*[*^/(]|\d)",
        re.IGNORECASE,
    ),
    # one score set against another: "0.540 against 0.513", "0.623 -> 0.625", "0.60 vs 0.51"
    "score against score": re.compile(_SCORE + r"\s*(against|vs\.?|versus|->|→)\s*-?\d*\.\d+"),
    # a range of measured values: "0.69-0.96", "-0.03 to +0.015"
    "range of scores": re.compile(r"[-+]?\d*\.\d{2,}\s*(-|to)\s*[-+]?\d*\.\d{2,}"),
    # a run of scores: "0.473, 0.470, 0.477", "0.588 / 0.597 / 0.605"
    "list of scores": re.compile(r"\b\d\.\d{3}(\s*[,/]\s*\d\.\d{3}){2,}"),
    # a time: "170 s", "420-500 s a cell", "29 ms vs 59 ms", "2.5 min", "s ->"
    "timing": re.compile(
        r"\b" + _NUMBER + r"(\s*(-|to)\s*" + _NUMBER + r")?\s*"
        r"(ms|s|sec|secs|seconds|min|mins|minutes|h|hours)\b(?![\w(\[])"
        r"(?!\s*[*^/=])"
    ),
    # a speed-up: "2.3x faster", "1.07x", "30-100 times slower"
    "speed-up": re.compile(
        r"\b\d+(\.\d+)?(-\d+(\.\d+)?)?\s*(x|×|times)\s+(faster|slower|quicker|speed-?up)\b"
        r"|\b\d+\.\d+x\b"
    ),
}


def find_measurements(text: str) -> list[tuple[int, str, str]]:
    """``(offset, pattern name, matched text)`` for each measured-result shape in ``text``."""
    found = []
    for name, pattern in MEASUREMENT_PATTERNS.items():
        for m in pattern.finditer(text):
            found.append((m.start(), name, m.group(0)))
    return sorted(found)


def prose_blocks(source: str) -> list[tuple[int, str]]:
    """``(first line, text)`` of each comment block and docstring of ``source``.

    A block's text keeps the file's line breaks, so a sentence that wraps is matched whole and a
    match's line is the block's first line plus the newlines before it. Consecutive comment
    lines form one block; a docstring is its statement's source lines, quotes included."""
    blocks: list[tuple[int, str]] = []
    run: list[str] = []
    run_start = last = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        line = tok.start[0]
        if run and line != last + 1:
            blocks.append((run_start, "\n".join(run)))
            run = []
        if not run:
            run_start = line
        run.append(tok.string.lstrip("#"))
        last = line
    if run:
        blocks.append((run_start, "\n".join(run)))

    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for stmt in body:
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                text = "\n".join(lines[stmt.lineno - 1 : stmt.end_lineno])
                blocks.append((stmt.lineno, text))
    return blocks


def measurements_in(path: Path, root: Path = REPO) -> list[str]:
    """``file:line: [pattern] matched text`` for each measured result in ``path``'s prose."""
    out = []
    for start, text in sorted(prose_blocks(path.read_text())):
        for offset, name, matched in find_measurements(text):
            line = start + text.count("\n", 0, offset)
            shown = " ".join(matched.split())
            out.append(f"{path.relative_to(root)}:{line}: [{name}] {shown!r}")
    return out


def python_files(root: Path = REPO) -> list[Path]:
    return sorted(p for r in ROOTS for p in (root / r).rglob("*.py"))


def test_no_measured_results_in_docstrings_or_comments():
    files = python_files()
    assert len(files) > 50, "the walk found too few files: wrong root?"
    found = [hit for p in files for hit in measurements_in(p)]
    assert not found, (
        "measured scores or timings in code prose; move each to docs/decisions.md (command, "
        "numbers, commit) and point at the entry by name:\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "text",
    [
        "with x0 clipped DDIM gave a better mean (her2st 0.540 against 0.513 after 1,000 its)",
        "the strongest histology-using baseline on her2st (TESLA-style, PCC 0.35 at k = 2)",
        "reached validation PCC 0.380 / spread-skill 1.70 unscaled",
        "Xenium diffst PCC 0.623 -> 0.625, CRPS 0.178 -> 0.173 with DDIM",
        "istar: 0.614 vs 0.41 her2st",
        "seeds 0-2: 0.473, 0.470,\n# 0.477 -> 0.446",
        "diffst 0.588 / 0.597 / 0.605 at K = 32 / 64 / 128",
        "while 300 cost 420-500 s a cell, the grid's largest",
        "about 90 s of training on 2 CPU cores",
        "measured best (2 cores): 29 ms vs 59 ms at 2^23",
        "sr3 fits in 189 s against 303 s in float32",
        "the sampler took 170 s",
        "steps 5 / 10 / 20: 1.0 / 1.9 / 3.3 s",
        "one fit 170 s -> 95 s",
        "that formula gave 0.69-0.96 of what the expected map scores, against -0.03 to +0.015",
        "Unscaled, the residual's std is 0.39 on her2st",
        "amp trains 2.3x faster",
        "1.07x the float32 speed",
        "multi-threaded steps measured 30-100 times slower than single-threaded ones",
    ],
)
def test_detector_flags_measured_sentences(text):
    assert find_measurements(text), text


@pytest.mark.parametrize(
    "text",
    [
        "PCC = cov(x, y) / (sd x sd y)",
        "input response flag < 0.5, draw diversity below 0.05",
        "K = 128 draws per input",
        "more than 3 MADs of log depth below the training median",
        "With ``C1 = 0.01^2``, ``C2 = 0.03^2`` (L = 1)",
        "Gaussian window sigma 1.5, radius 5 (11 x 11), K1 = 0.01, K2 = 0.03",
        "noise variance ``s2`` at full depth, ``2 s2`` at half depth",
        "(B, 2G, H, W) float32; (N, K, G, H, W)",
        "``0.9 * tissue + 0.1 * attention``; 0.25 / 0.5 / 1.0 curriculum",
        "less than ``MIN_GAIN`` = 0.01 above its validation PCC at 75% of the budget",
        "PCC 1, SSIM 1, RMSE 0",
        "its PCC is 0 by definition",
        "20 respaced DDPM steps, 16 x 16 cell tiles of 16 px",
        "an EMA of 0.9999 averages over ~10,000 steps",
        "spot_diameter_fullres spans a theoretical 65 um spot",
        "lr 1e-4, weight decay 1e-5; 1e-2 .. 1e5, 15 values",
        'iDDPM eqs. 13-15; see docs/decisions.md, "Sampler: DDPM, not DDIM"',
        "the quick preset trains in minutes on 2 CPU cores",
        "a pixel size 10x too large",
    ],
)
def test_detector_passes_definitions(text):
    assert not find_measurements(text), find_measurements(text)


def test_walk_names_file_and_line_of_a_planted_measurement(tmp_path):
    pkg = tmp_path / "methods"
    pkg.mkdir()
    (pkg / "planted.py").write_text(
        '"""A module.\n\nIts sampler beat the other, 0.540 against\n0.513 on her2st.\n"""\n'
        "\n"
        "X = 1  # a constant, K = 128\n"
        "# about 90 s of training\n"
        "\n"
        "\n"
        "def f():\n"
        '    """PCC = cov(x, y) / (sd x sd y); flag < 0.5."""\n'
        "    return 2  # 2.3x faster than before\n"
    )
    found = measurements_in(pkg / "planted.py", root=tmp_path)
    where = [hit.split(": [")[0] for hit in found]
    assert where == ["methods/planted.py:3", "methods/planted.py:8", "methods/planted.py:13"]
