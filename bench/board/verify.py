"""``python -m bench verify``: a results directory checked against its MLflow store and its page.

Each disagreement is one :class:`Problem` (the file, and what disagrees, in one line):

- **records**: every record file (``<results>/<dataset>/<method>/seed-<seed>.json``) parses as a
  record of this schema;
- **store**: every ok record has exactly one FINISHED child run for its cell (dataset, method,
  seed), the run of this record (its ``record_id`` tag, :func:`bench.run.tracking.record_id`),
  whose metrics are those the record gives (:func:`bench.run.tracking.cell_metrics`, relative
  tolerance 1e-9); finished runs of an earlier record of the cell are listed too. The
  ``ceiling`` control is computed by every run and never tracked, so no run is looked for;
- **files**: every side file a record owns (:attr:`bench.run.records.Record.files`) is there with
  the sha256 the record holds. A record written before records carried checksums gets a note
  ("no checksum recorded"), not a problem: nothing of its files can be checked;
- **page**: the page, re-rendered from the records with the command it names
  (:func:`bench.board.page.render`), is the same text, less its figure links; each line that
  differs is listed (a table row by its label and the columns that differ). A page whose
  headings or table columns are not those this code writes is said to be from another version
  of ``bench/board/page.py`` (or other records), not compared row by row.

A damaged record (its JSON unparseable, or a side file missing or not matching its checksum) is
moved aside with its side files into ``<results>/damaged/<UTC time>/<dataset>/<method>/``
(renames, holding the cell's lock) and the problem names where it went, so a later ``bench run``
computes the cell afresh rather than trusting it or reusing a file of it. Nothing is recomputed
here, and nothing else is changed (the store and the page are only read).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from bench.errors import BenchError, redact
from bench.files import FileLock
from bench.run.records import DAMAGED, SCHEMA, Record, read_record, record_paths

__all__ = ["Problem", "Report", "verify", "without_figure_links"]

REL_TOL = 1e-9  # metrics in the store against the record's
MAX_PAGE_PROBLEMS = 20  # page lines listed one by one; the rest counted in one line
MAX_METRICS = 5  # metrics named per disagreeing run; the rest counted
CEILING = "ceiling"  # bench.run.ceiling's control: a record without a run (never tracked)


@dataclass(frozen=True)
class Problem:
    """One disagreement: ``path`` (a record, a side file or the page), ``what`` (one line), the
    check it failed (``record``, ``run``, ``file`` or ``page``), and for a damaged record moved
    aside, where it went."""

    path: Path
    what: str
    check: str
    moved_to: Path | None = None

    def line(self) -> str:
        moved = f"; record and side files moved aside to {self.moved_to}" if self.moved_to else ""
        return f"{self.path}: {self.what}{moved}"


@dataclass
class Report:
    """What :func:`verify` checked and what disagrees; ``notes`` are not problems (e.g. records
    written before checksums)."""

    results_dir: Path
    store: str
    page: Path | None
    records: int = 0
    runs: int = 0
    files: int = 0
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def moved(self) -> list[Problem]:
        return [p for p in self.problems if p.moved_to is not None]

    def summary(self) -> str:
        checked = (
            f"{self.records} records, {self.runs} runs, {self.files} files, "
            f"{self.rows} page rows checked"
        )
        if self.ok:
            return f"{checked}: all agree"
        text = f"{checked}: {len(self.problems)} problem{'s' if len(self.problems) > 1 else ''}"
        if self.moved:
            where = self.moved[0].moved_to
            root = self.results_dir / DAMAGED
            if where is not None:
                root /= where.relative_to(root).parts[0]
            text += (
                f" ({len(self.moved)} damaged record(s) moved aside to {root}; "
                "'python -m bench run' computes their cells again)"
            )
        return text


def verify(
    results_dir: Path,
    tracking_uri: str | None = None,
    page: Path | None = None,
    move_damaged: bool = True,
) -> Report:
    """Check ``results_dir`` against its MLflow store and ``page`` (see the module doc).

    Parameters
    ----------
    results_dir : the folder ``bench run --results-dir`` wrote.
    tracking_uri : the store; default the one ``run`` uses for that folder
        (:func:`bench.run.tracking.default_uri`).
    page : the leaderboard file to check; None checks no page (the command line passes
        ``leaderboard/LEADERBOARD.md`` unless told another).
    move_damaged : move damaged records (and their side files) aside (the command line does).

    Returns
    -------
    A :class:`Report`; a missing results folder or an unreadable store is a
    :class:`bench.errors.BenchError` (one line) before anything is moved.
    """
    from bench.run.tracking import default_uri, read_child_runs

    results = Path(results_dir)
    if not results.is_dir():
        raise BenchError(f"results dir {results} does not exist; pass the --results-dir run wrote")
    uri = tracking_uri or default_uri(results)
    runs = read_child_runs(uri)  # first: an unusable store stops us before anything is moved
    report = Report(results, redact(uri), Path(page) if page is not None else None)

    records: list[tuple[Path, Record]] = []
    damaged: dict[Path, list[Problem]] = defaultdict(list)
    for path in record_paths(results):
        report.records += 1
        record, why = _parse(path)
        if record is None:
            problem = Problem(path, why, "record")
            if why.startswith("not a record"):
                damaged[path].append(problem)
            else:
                report.problems.append(problem)
            continue
        records.append((path, record))
        for problem in _check_files(path, record, report):
            damaged[path].append(problem)
    _check_runs(records, runs, report)
    if report.page is not None:
        unread = report.records - len(records)
        _check_page(report.page, [r for _, r in records], unread, report)
    away = _stamp(results) if damaged and move_damaged else None
    for path, problems in damaged.items():
        moved, why = _move_aside(results, path, away) if away else (None, "")
        for i, p in enumerate(problems):
            last = i == len(problems) - 1
            what = p.what + (why if last else "")
            report.problems.append(Problem(p.path, what, p.check, moved if last else None))
    report.problems.sort(key=lambda p: (_ORDER[p.check], str(p.path)))
    return report


_ORDER = {"record": 0, "file": 1, "run": 2, "page": 3}


def _parse(path: Path) -> tuple[Record | None, str]:
    """The record at ``path``, or None and why not: ``not a record ...`` for a damaged file (to
    move aside), anything else for one this code cannot judge (another schema)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        return None, f"not a record: not UTF-8 text ({err.reason})"
    except json.JSONDecodeError as err:
        return None, f"not a record: unparseable JSON ({err.msg} at line {err.lineno})"
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    schema = raw.get("schema") if isinstance(raw, dict) else None
    if isinstance(schema, int) and schema > SCHEMA:
        return None, (
            f"a record of schema {schema}, newer than this code's ({SCHEMA}); verify it with "
            "the code that wrote it"
        )
    record = read_record(path)
    if record is None:
        return None, (
            "not a record: another schema, missing or mistyped keys, or 'ok' without metrics"
        )
    return record, ""


def _check_files(path: Path, record: Record, report: Report) -> list[Problem]:
    """The side files ``record`` owns against their checksums; returns the problems (each makes
    the record damaged)."""
    from bench.data.fetch import sha256

    if record.files is None:
        present = _side_files(path)
        if present:
            names = ", ".join(p.name for p in present)
            report.notes.append(
                f"{path}: no checksum recorded (written before records carried them); "
                f"{names} not checked"
            )
        return []
    problems = []
    for name, digest in sorted(record.files.items()):
        side = path.parent / name
        if Path(name).name != name or name in ("", ".", ".."):
            problems.append(
                Problem(path, f"names a side file outside its folder: {name!r}", "file")
            )
            continue
        if not side.is_file():
            problems.append(Problem(side, "side file missing (the record lists it)", "file"))
            continue
        report.files += 1
        found = sha256(side)
        if found != digest:
            problems.append(
                Problem(
                    side,
                    f"sha256 {found[:12]}... on disk, {digest[:12]}... in the record {path.name}",
                    "file",
                )
            )
    return problems


def _side_files(path: Path) -> list[Path]:
    """The side files beside the record at ``path`` (:data:`bench.run.outputs.SIDE_SUFFIXES`)."""
    from bench.run.outputs import SIDE_SUFFIXES

    stem = path.name[: -len(".json")]
    return [p for p in (path.with_name(stem + s) for s in SIDE_SUFFIXES) if p.is_file()]


def _check_runs(records: list[tuple[Path, Record]], runs: list[Any], report: Report) -> None:
    """Each ok record against the finished child runs of its cell."""
    from bench.run.tracking import CURVE_METRICS, cell_metrics, record_id

    by_cell: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for run in runs:
        tags = run.data.tags
        if run.info.status == "FINISHED":
            by_cell[
                (tags.get("dataset", ""), tags.get("method", ""), tags.get("seed", ""))
            ].append(run)
    for path, record in records:
        if not record.ok or record.control == CEILING:
            continue
        finished = by_cell.get((record.dataset, record.method, str(record.seed)), [])
        report.runs += len(finished)
        rid = record_id(record)
        mine = [r for r in finished if r.data.tags.get("record_id") == rid]
        others = [r for r in finished if r.data.tags.get("record_id") != rid]
        if not mine:
            report.problems.append(
                Problem(
                    path,
                    f"no finished MLflow run of this record (record id {rid}); 'python -m bench "
                    "run' of its cell logs it",
                    "run",
                )
            )
        elif len(mine) > 1:
            ids = ", ".join(r.info.run_id for r in mine)
            report.problems.append(
                Problem(
                    path,
                    f"{len(mine)} finished MLflow runs of this record ({ids}); {_DROPS}",
                    "run",
                )
            )
        if others:
            ids = ", ".join(f"{r.info.run_id} ({r.data.tags.get('record_id')})" for r in others)
            report.problems.append(
                Problem(
                    path,
                    f"finished MLflow run(s) of an earlier record of its cell: {ids}; {_DROPS}",
                    "run",
                )
            )
        expected = cell_metrics(record)
        for run in mine:
            logged = {
                k: v
                for k, v in run.data.metrics.items()
                if not k.startswith(CURVE_METRICS) or k in expected
            }
            diffs = _metric_diffs(expected, logged)
            if diffs:
                report.problems.append(
                    Problem(
                        path,
                        f"MLflow run {run.info.run_id}: {'; '.join(diffs)} (delete the run and "
                        "'python -m bench run' of its cell logs the record again)",
                        "run",
                    )
                )


_DROPS = "'python -m bench run' of its cell removes the extra runs"


def _metric_diffs(expected: dict[str, float], logged: dict[str, float]) -> list[str]:
    out = []
    for key in sorted(set(expected) | set(logged)):
        if key not in logged:
            out.append(f"{key} missing from the run (record {expected[key]!r})")
        elif key not in expected:
            out.append(f"{key} {logged[key]!r} in the run, not in the record")
        elif not _same(expected[key], logged[key]):
            out.append(f"{key} {logged[key]!r} in the run, {expected[key]!r} in the record")
    if len(out) > MAX_METRICS:
        out = [*out[:MAX_METRICS], f"and {len(out) - MAX_METRICS} more metrics differ"]
    return out


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a):  # MLflow stores +-inf as +-the largest float
        return b == a or b == math.copysign(sys.float_info.max, a)
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)


# ---- the page ---------------------------------------------------------------------------------


def _command(lines: list[str]) -> str | None:
    """The command in the page's "Reproduce with:" block."""
    try:
        start = lines.index("Reproduce with:")
        opening = lines.index("```", start)
        closing = lines.index("```", opening + 1)
    except ValueError:
        return None
    return "\n".join(lines[opening + 1 : closing])


def without_figure_links(lines: list[str]) -> list[str]:
    """The page less its figure links, ``Figures: ...`` lines and inline images (``![...](...)``,
    the pooling ladder's), each with the blank line after it: ``render`` draws no figures,
    ``write`` links those it drew."""
    out: list[str] = []
    skip = False
    for line in lines:
        if skip and line == "":
            skip = False
            continue
        skip = line.startswith(("Figures: ", "!["))
        if not skip:
            out.append(line)
    return out


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """Lines by ``## `` section (the head before the first under ``""``)."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    for line in lines:
        if line.startswith("## "):
            current = line[3:]
            out[current] = []
        out[current].append(line)
    return out


def _is_row(line: str) -> bool:
    return line.startswith("|") and not line.startswith("|-") and not line.startswith("|:")


def _cells(line: str) -> list[str]:
    """A table row's cells (pipes escaped as ``\\|`` kept inside their cell)."""
    inner = line.strip()[1:-1]
    cells, cur, i = [], "", 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner) and inner[i + 1] == "|":
            cur += "\\|"
            i += 2
            continue
        if inner[i] == "|":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += inner[i]
        i += 1
    return [*cells, cur.strip()]


def _layout(lines: list[str]) -> list[str]:
    """A section's headings and table header rows: what a version of the page code fixes."""
    out = []
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith("#") or (_is_row(line) and following.startswith("|-")):
            out.append(line)
    return out


def _header(lines: list[str], i: int) -> list[str] | None:
    """The header cells of the table holding row ``i`` of ``lines``."""
    while i > 0 and lines[i].startswith("|"):
        if lines[i].startswith("|-"):
            return _cells(lines[i - 1])
        i -= 1
    return None


def _label(cells: list[str]) -> str:
    """A row's name: its first cell that is not a number (the rank)."""
    for cell in cells:
        if cell and not cell.replace(".", "", 1).isdigit():
            return cell
    return cells[0] if cells else ""


def _subsection(lines: list[str], i: int) -> str:
    while i >= 0:
        if lines[i].startswith("#"):
            return lines[i].lstrip("#").strip()
        i -= 1
    return ""


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _check_page(path: Path, records: list[Record], unread: int, report: Report) -> None:
    """The page against the page this code renders from ``records`` (see the module doc);
    ``unread`` record files could not be read (the page may show them: said where it helps)."""
    from bench.board.page import render

    if not path.is_file():
        report.problems.append(
            Problem(
                path,
                "no page here; write it with 'python -m bench leaderboard' (or pass the "
                "--leaderboard run wrote)",
                "page",
            )
        )
        return
    try:
        page = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        report.problems.append(Problem(path, f"cannot be read ({err})", "page"))
        return
    command = _command(page)
    if not page or page[0] != "# stsr-bench leaderboard" or command is None:
        report.problems.append(
            Problem(path, "not a leaderboard page (no title or 'Reproduce with:' command)", "page")
        )
        return
    mine = _sections(render(records, command).splitlines())
    theirs = _sections(without_figure_links(page))
    found: list[Problem] = []
    for name in theirs:
        if name not in mine:
            found.append(
                Problem(path, f"section '{name}' is on the page; no record gives it", "page")
            )
    for name in mine:
        if name not in theirs:
            found.append(
                Problem(path, f"section '{name}': the records give it, the page lacks it", "page")
            )
    for name in (n for n in theirs if n in mine):
        a, b = theirs[name], mine[name]
        layout_a, layout_b = _layout(a), _layout(b)
        if layout_a != layout_b:
            first = next(
                (x, y) for x, y in zip_longest(layout_a, layout_b, fillvalue="(end)") if x != y
            )
            why = (
                f"the page shows records that cannot be read now ({unread} above)"
                if unread
                else "written by another version of bench/board/page.py or from other records"
            )
            found.append(
                Problem(
                    path,
                    f"section '{name or 'head'}' is laid out otherwise than this code writes it "
                    f"from the records (page: '{_short(first[0], 70)}', code: "
                    f"'{_short(first[1], 70)}'): {why}; rewrite it with 'python -m bench "
                    "leaderboard' and verify again",
                    "page",
                )
            )
            continue
        report.rows += sum(1 for line in a if _is_row(line))
        found += _diff_lines(path, name, a, b)
    if len(found) > MAX_PAGE_PROBLEMS:
        rest = len(found) - MAX_PAGE_PROBLEMS
        found = found[:MAX_PAGE_PROBLEMS]
        found.append(Problem(path, f"... and {rest} more page lines disagree", "page"))
    report.problems += found


def _diff_lines(path: Path, name: str, a: list[str], b: list[str]) -> list[Problem]:
    """The lines of one section that differ: page ``a`` against records ``b``."""
    out = []
    where = name or "head"
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        pairs = list(zip(range(i1, i2), range(j1, j2), strict=False))
        for i, j in pairs:
            out.append(_line_problem(path, where, a, b, i, j))
        for i in range(i1 + len(pairs), i2):
            out.append(Problem(path, f"{where}: a line no record gives: '{_short(a[i])}'", "page"))
        for j in range(j1 + len(pairs), j2):
            out.append(
                Problem(path, f"{where}: the records give '{_short(b[j])}', missing", "page")
            )
    return out


def _line_problem(path: Path, where: str, a: list[str], b: list[str], i: int, j: int) -> Problem:
    sub = _subsection(a, i)
    place = where if sub == where or not sub else f"{where} / {sub}"
    if _is_row(a[i]) and _is_row(b[j]):
        ca, cb, head = _cells(a[i]), _cells(b[j]), _header(a, i)
        if len(ca) == len(cb) and head is not None and len(head) == len(ca):
            label = cb[head.index("method")] if "method" in head else _label(cb)
            diffs = [
                f"{h}: page {x}, records {y}"
                for h, x, y in zip(head, ca, cb, strict=True)
                if x != y
            ]
            return Problem(path, f"{place}: row '{label}': {'; '.join(diffs)}", "page")
    return Problem(path, f"{place}: page '{_short(a[i])}', records '{_short(b[j])}'", "page")


# ---- moving aside -----------------------------------------------------------------------------


def _stamp(results: Path) -> Path:
    """A fresh ``<results>/damaged/<UTC time>`` folder name (not yet made)."""
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder, n = results / DAMAGED / base, 1
    while folder.exists():
        n += 1
        folder = results / DAMAGED / f"{base}-{n}"
    return folder


def _move_aside(results: Path, path: Path, away: Path) -> tuple[Path | None, str]:
    """Move the record at ``path`` and its side files into ``away`` (``<results>/damaged/<time>``)
    under the same relative folder, holding the cell's lock; returns the record's new path (None
    when not moved) and a note."""
    target = away / path.parent.relative_to(results)
    lock = FileLock(path.with_name(path.name[: -len(".json")] + ".lock"))
    if not lock.acquire():
        return None, (
            f"; not moved: an invocation is computing this cell ({lock.holder() or 'unknown'})"
        )
    try:
        target.mkdir(parents=True, exist_ok=True)
        for side in _side_files(path):
            os.replace(side, target / side.name)
        os.replace(path, target / path.name)  # last: until here the record names its files
    except OSError as err:
        return None, f"; not moved ({err.strerror})"
    finally:
        lock.release()
    return target / path.name, ""
