"""bench.board.page: ranking, controls, failures, fingerprints, seed averaging, purity, write."""

from __future__ import annotations

import copy
import random
import re

import numpy as np
import pytest

from bench.board import page
from bench.board.page import write
from bench.board.stats import bootstrap_ci, bootstrap_ci_seeds
from bench.run.records import Record, read_records, write_record

SECTIONS = ("s2", "s1", "s3")  # the leaderboard sorts sections: s1, s2, s3
GENES = ("KRT5", "ERBB2", "MUC1", "ACTB", "CD74", "FN1")  # split order, not alphabetical
CMD = "python -m bench leaderboard --results results --out leaderboard/README.md"
CI = re.compile(r"^(-?\d+\.\d{3}) \[(-?\d+\.\d{3}), (-?\d+\.\d{3})\]$")


def render(records: list, command: str) -> str:
    """The page of records given as JSON objects (the layout on disk, old key names included)."""
    return page.render(
        [r if isinstance(r, Record) else Record.from_json(r) for r in records], command
    )


def _maps(base: float, seed: int) -> np.ndarray:
    """A (section x gene) table around ``base``, reproducible for ``seed``."""
    rng = np.random.default_rng(seed)
    return base + rng.normal(0.0, 0.1, size=(len(SECTIONS), len(GENES)))


def _record(
    method: str,
    seed: int = 0,
    *,
    pcc: np.ndarray | float = 0.5,
    control: str | None = None,
    status: str = "ok",
    error: str | None = None,
    fingerprint: str = "fp-a",
    dataset: str = "toy",
    stochastic: bool = False,
) -> dict:
    """A record as the runner writes it; ``pcc`` is a (S, G) table (NaN = null) or a base value."""
    split = {"fingerprint": fingerprint, "k": 2, "genes": list(GENES), "test": list(SECTIONS)}
    rec = {
        "schema": 1, "dataset": dataset, "method": method, "seed": seed, "status": status,
        "error": error, "control": control, "params": {"preset": "quick"}, "split": split,
        "timings": {"fit_s": 1.0 + seed, "predict_s": 0.5, "score_s": 0.1},
        "peak_memory_mb": 10.0, "device": "cpu", "code_version": "test",
    }  # fmt: skip
    if status != "ok":
        return rec
    code = sum(map(ord, method)) + 100 * seed
    table = np.asarray(pcc, dtype=float) if np.ndim(pcc) else _maps(float(pcc), code)
    ssim, rmse = _maps(0.3, code + 1), _maps(1.0, code + 2)
    cells = [(i, j) for i in range(len(SECTIONS)) for j in range(len(GENES))]

    def col(t: np.ndarray) -> list:
        return [None if np.isnan(t[i, j]) else float(t[i, j]) for i, j in cells]

    rec["per_gene"] = {
        "section": [SECTIONS[i] for i, _ in cells], "gene": [GENES[j] for _, j in cells],
        "pcc": col(table), "ssim": col(ssim), "rmse": col(rmse),
    }  # fmt: skip
    valid = table[~np.isnan(table)]
    rec["metrics"] = {"pcc": float(valid.mean()) if valid.size else None, "ssim": 0.3, "rmse": 1.0}
    if stochastic:
        rec["metrics"] |= {"spread": 0.2, "crps": 0.4, "spread_skill": 0.5 + seed,
                           "draw_diversity": 0.02, "rvd": 0.3}  # fmt: skip
        rec["draws_used"] = 16 + 8 * seed
    rec["metrics"]["input_response"] = 0.9 if method != "fixed" else 0.1
    return rec


def _records() -> list[dict]:
    """Two ranked methods (alphabetical order != PCC order), a control and a failed run."""
    return [
        _record("alpha", pcc=0.3),
        _record("zeta", pcc=0.7),
        _record("zeta", seed=1, pcc=0.7),
        _record("flat", pcc=0.0, control="negative"),
        _record("broken", status="failed", error="CUDA out of memory in fit"),
    ]


def _sections(text: str) -> list[str]:
    """The dataset sections (the summary across datasets left out)."""
    return [s for s in text.split("\n## ")[1:] if not s.startswith("Summary across datasets")]


def _tables(section: str) -> list[list[list[str]]]:
    """Every markdown table in ``section`` as rows of cells (header and rule dropped)."""
    tables, rows = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
        elif rows:
            tables.append(rows[2:])
            rows = []
    return tables


def _part(section: str, heading: str) -> str:
    """The text of one ``### heading`` subsection."""
    return section.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]


def test_header_names_generator_and_command():
    text = render(_records(), CMD)
    assert text.startswith("# stsr-bench leaderboard\n")
    assert "python -m bench leaderboard" in text and "do not edit by hand" in text
    assert f"```\n{CMD}\n```" in text


def test_one_row_per_ok_method_ranked_by_pcc():
    (section,) = _sections(render(_records(), CMD))
    ranked = _tables(section.split("### Controls")[0])[0]
    assert [r[1] for r in ranked] == ["zeta", "alpha"]
    assert [r[0] for r in ranked] == ["1", "2"]
    assert [r[5] for r in ranked] == ["2", "1"]  # seeds
    assert ranked[0][6] == "2.0" and ranked[1][6] == "1.5"  # mean fit + predict seconds
    assert "k = 2" in section and "fp-a" in section and "3 test regions, 6 genes" in section


def test_control_only_in_controls_table_and_failed_run_listed():
    (section,) = _sections(render(_records(), CMD))
    ranked = _tables(section.split("### Controls")[0])[0]
    (controls,) = _tables(_part(section, "Controls"))
    assert "flat" not in [r[1] for r in ranked]
    assert [(r[0], r[1]) for r in controls] == [("negative", "flat")]
    failed = _part(section, "Failed or skipped")
    assert "broken (seed 0, failed): CUDA out of memory in fit" in failed
    assert "broken" not in [r[1] for r in ranked + controls]


def test_no_failures_says_none():
    (section,) = _sections(render(_records()[:4], CMD))
    assert _part(section, "Failed or skipped").strip() == "none"


def test_intervals_contain_the_mean():
    (section,) = _sections(render(_records(), CMD))
    rows = [r for t in _tables(section)[:2] for r in t]  # ranked and controls
    assert len(rows) == 3
    for row in rows:
        for cell in row[2:5]:
            mean, low, high = map(float, CI.match(cell).groups())
            assert low <= mean <= high and low < high


def test_fingerprints_never_share_a_table():
    records = [_record("omega", pcc=0.9, fingerprint="fp-b"), *_records()]
    sections = _sections(render(records, CMD))
    assert len(sections) == 2
    assert "`fp-a`" in sections[0] and "`fp-b`" in sections[1]
    assert [r[1] for r in _tables(sections[1])[0]] == ["omega"]
    assert "omega" not in sections[0]
    assert _part(sections[1], "Controls").strip().endswith("none")


def test_pure_and_independent_of_record_and_key_order():
    records = _records() + [
        _record("omega", pcc=0.9, fingerprint="fp-b", stochastic=True),
        _record("omega", seed=1, pcc=0.9, fingerprint="fp-b", stochastic=True),
        _record("crashed", status="failed", error="NaN loss at step 3"),
        _record("other", dataset="aaa", pcc=0.4),
    ]
    text = render(records, CMD)
    assert render(records, CMD) == text
    assert render(records[::-1], CMD) == text
    for seed in range(5):
        shuffled = copy.deepcopy(records)
        random.Random(seed).shuffle(shuffled)
        shuffled = [dict(reversed(list(r.items()))) for r in shuffled]
        assert render(shuffled, CMD) == text
    assert [s.split("\n", 1)[0] for s in _sections(text)] == [
        "aaa · k = 2 · split `fp-a`",
        "toy · k = 2 · split `fp-a`",
        "toy · k = 2 · split `fp-b`",
    ]
    failed = _part(_sections(text)[1], "Failed or skipped")
    assert failed.index("- broken") < failed.index("- crashed")


def test_independent_of_per_gene_row_order():
    records = _records()
    text = render(records, CMD)
    for rec in records:
        per_gene = rec.get("per_gene")
        if per_gene:
            n = len(per_gene["gene"])
            perm = np.random.default_rng(0).permutation(n)
            rec["per_gene"] = {k: [v[i] for i in perm] for k, v in per_gene.items()}
    assert render(records, CMD) == text


def test_seeds_are_averaged_per_pair_and_resampled_in_the_interval():
    t0, t1 = _maps(0.5, 1), _maps(0.2, 2)
    t1[0, :3] = np.nan  # seed 1 lacks some pairs: pooled and per-pair means differ
    records = [_record("m", 0, pcc=t0), _record("m", 1, pcc=t1)]
    (row,) = _tables(_sections(render(records, CMD))[0])[0]

    order = np.argsort(SECTIONS)  # documented order: sections sorted
    avg = np.where(np.isnan(t1), t0, (t0 + t1) / 2)[order]
    _, low, high = bootstrap_ci_seeds(np.stack([t0[order], t1[order]]), n_boot=1000, seed=0)
    expected = f"{avg.mean():.3f} [{low:.3f}, {high:.3f}]"
    pooled = "{:.3f} [{:.3f}, {:.3f}]".format(*bootstrap_ci(np.vstack([t0, t1]), seed=0))
    assert expected != pooled
    assert row[2] == expected
    # seeds that disagree widen the interval beyond the genes-only one
    _, g_low, g_high = bootstrap_ci(avg, n_boot=1000, seed=0)
    assert high - low > g_high - g_low


def test_collapse_for_every_method_and_diversity_columns_only_with_samplers():
    (plain,) = _sections(render(_records() + [_record("fixed", pcc=0.2)], CMD))
    table = _part(plain, "Collapse and diversity")
    rows = {r[0]: r[1:] for r in _tables(table)[0]}
    assert rows["alpha"] == ["0.900", "n/a", "–"]  # input response, RVD, flag: no sampler columns
    assert rows["fixed"] == ["0.100", "n/a", "**collapsed (input)**"]
    records = _records() + [_record("gen", 0, stochastic=True), _record("gen", 1, stochastic=True)]
    (section,) = _sections(render(records, CMD))
    rows = {r[0]: r[1:] for r in _tables(_part(section, "Collapse and diversity"))[0]}
    # input response, spread, CRPS, spread-skill, draw diversity, RVD (no coverage), flag
    assert rows["gen"] == ["0.900", "0.200", "0.400", "1.000", "0.020", "0.300"] + [
        "**collapsed (draws)**"
    ]
    assert rows["alpha"] == ["0.900"] + ["n/a"] * 5 + ["–"]
    assert "coverage (K >= 10)" in _part(section, "Collapse and diversity")
    for rec in records[-2:]:  # K >= 10: the runs have coverage; seeds 0.8 and 0.9
        rec["metrics"]["coverage"] = 0.8 + 0.1 * rec["seed"]
    (section,) = _sections(render(records, CMD))
    part = _part(section, "Collapse and diversity")
    head, *_ = (line for line in part.splitlines() if line.startswith("|"))
    assert "| coverage (→0.9) |" in head
    rows = {r[0]: r[1:] for r in _tables(part)[0]}
    assert rows["gen"][:5] == ["0.900", "0.200", "0.400", "1.000", "0.850"]


def test_different_variants_are_never_averaged():
    quick, default = _record("zeta", 0, pcc=0.7), _record("zeta", 1, pcc=0.2)
    quick["name"], quick["params"] = "zeta[preset=quick,seed=0]", {"preset": "quick"}
    default["name"], default["params"] = "zeta[preset=default,seed=1]", {"preset": "default"}
    (section,) = _sections(render([quick, default, _record("alpha", pcc=0.4)], CMD))
    ranked = _tables(section.split("### Controls")[0])[0]
    rows = {r[1]: r for r in ranked}
    assert list(rows) == ["zeta[preset=quick]", "alpha", "zeta[preset=default]"]
    assert rows["zeta[preset=quick]"][5] == "1" and rows["zeta[preset=default]"][5] == "1"
    same = _record("zeta", 1, pcc=0.7)
    same["name"], same["params"] = "zeta[preset=quick,seed=1]", {"preset": "quick"}
    (section,) = _sections(render([quick, same], CMD))  # one variant, two seeds: one row
    (row,) = _tables(section.split("### Controls")[0])[0]
    assert row[1] == "zeta[preset=quick]" and row[5] == "2"


def test_verdict_follows_the_paired_test():
    level = _maps(0.7, 1) + 0.001  # paired with zeta's table: a tiny shift, one direction
    records = _records() + [_record("twin", pcc=level)]
    records[1]["per_gene"]["pcc"] = [float(v) for v in (level - 0.001).ravel()]
    (section,) = _sections(render(records, CMD))
    verdict = next(line for line in section.splitlines() if line.startswith("**Verdict**"))
    ranked = [r[1] for r in _tables(section.split("### Controls")[0])[0]]
    marks = {r[1]: r[7].endswith("*") for r in _tables(section.split("### Controls")[0])[0]}
    below = verdict.split("below it: ")[1]
    for name in ranked[1:]:
        assert (f"`{name}`" in below) == marks[name]
    assert f"best by mean PCC `{ranked[0]}`" in verdict


def test_rank_stability_reports_kendall_tau():
    records = _records() + [_record("mid", pcc=0.5)]
    alts = {"alpha": 0.9, "zeta": 0.1, "mid": 0.5}  # the alternative reverses the order
    for rec in records:
        if rec["status"] == "ok" and not rec["control"]:
            rec["metrics"] |= {"alt_pcc_noqc": alts[rec["method"]], "alt_pcc_pooled": 0.3}
    (section,) = _sections(render(records, CMD))
    rows = {r[0]: r for r in _tables(_part(section, "Rank stability"))[0]}
    noqc = rows["PCC, spot QC off"]
    assert noqc[1] == "-1.00" and noqc[2].startswith("alpha") and noqc[3] == "2"
    assert rows["PCC on the linear scale (expm1)"][1] == "n/a"


def test_excluded_pairs_and_nan_shown_as_na():
    t = _maps(0.5, 3)
    t[1, :2] = np.nan
    empty = np.full((len(SECTIONS), len(GENES)), np.nan)
    records = [_record("holes", pcc=t), _record("void", pcc=empty), _record("alpha", pcc=0.3)]
    (section,) = _sections(render(records, CMD))
    ranked = _tables(section)[0]
    assert [r[1] for r in ranked] == ["holes", "alpha", "void"]  # NaN ranks last
    assert ranked[2][2] == "n/a [n/a, n/a]"
    note = _part(section, "Pairs excluded from PCC")
    assert "- holes: 2 of 18" in note and "- void: 18 of 18" in note and "alpha" not in note


def _with_qc(split: dict) -> list[dict]:
    records = _records()
    for rec in records:
        rec["split"] |= split
    return records


def test_spot_qc_sentence_names_each_regions_threshold():
    split = {"qc_min_totals": {"s2": 31, "s1": 88, "s3": 31}, "qc_depth_fraction": 0.1238}
    (section,) = _sections(render(_with_qc(split | {"dropped": 5}), CMD))
    assert (
        "5 in-tissue test position(s) with an all-gene total below their region's threshold "
        "(31 counts in s2, s3; 88 in s1: 0.1238 x the depth level of the region's section, read "
        "from its LR input;"
    ) in " ".join(section.split())
    same = {"qc_min_totals": dict.fromkeys(SECTIONS, 9), "qc_depth_fraction": 0.04}
    (section,) = _sections(render(_with_qc(same), CMD))
    assert "below their region's threshold (9 counts: 0.04 x the depth level" in section


def test_records_from_before_per_section_qc_keep_their_one_threshold():
    """A record written with one ``qc_min_total`` loads with it on every test region, and the
    page says what that rule was."""
    from bench.run.records import SplitRef

    ref = SplitRef.from_json({"fingerprint": "fp-a", "test": ["C5", "C6"], "qc_min_total": 138})
    assert ref.qc_min_totals == {"C5": 138, "C6": 138} and ref.qc_depth_fraction is None
    assert SplitRef.from_json(ref.to_json()) == ref
    (section,) = _sections(render(_with_qc({"qc_min_total": 138, "dropped": 4}), CMD))
    assert (
        "4 in-tissue test position(s) with an all-gene total below 138 counts (3 MADs of log "
        "depth below the training regions' median"
    ) in " ".join(section.split())


def test_no_records():
    assert "No result records found." in render([], CMD)


@pytest.mark.parametrize("existing", [False, True])
def test_write_is_atomic_and_matches_render(tmp_path, existing):
    results = tmp_path / "results"
    for rec in _records():
        write_record(results, Record.from_json(rec))
    out = tmp_path / "board" / "README.md"
    if existing:
        out.parent.mkdir()
        out.write_text("stale\n")
    page, drawn = write(results, out, CMD)
    assert page == out and [f.name for f in drawn] == ["toy-fp-a-metrics.png"]  # no bicubic
    lines = out.read_text().splitlines(keepends=True)
    assert "".join(lines).count("(figures/toy-fp-a-metrics.png)") == 1
    no_links = "".join(line for line in lines if not line.startswith("Figures: "))
    assert no_links.replace("\n\n\n", "\n\n") == render(read_records(results), CMD)
    assert "zeta" in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["README.md", "figures"]
    assert not [p for p in out.parent.rglob(".*")]  # no temporary file left behind


def test_significance_against_the_best_is_paired_and_holm_corrected():
    from bench.board.rows import seed_mean_table
    from bench.board.stats import holm, paired_wilcoxon

    records = [
        _record("best", pcc=0.7),
        _record("close", pcc=0.69),
        _record("worse", pcc=0.3),
        _record("flat", pcc=0.0, control="negative"),
    ]
    (section,) = _sections(render(records, CMD))
    ranked = {r[1]: r[7] for r in _tables(section)[0]}
    assert ranked["best"] == "best"
    tables = {
        m: seed_mean_table([Record.from_json(r)], "pcc", GENES)[0]
        for r in records
        for m in [r["method"]]
    }
    raw = [paired_wilcoxon(tables[m], tables["best"]) for m in ("close", "worse")]
    adjusted = holm(raw)
    assert ranked["worse"] == f"{adjusted[1]:.2g} *"  # 0.3 vs 0.7 on every pair
    assert ranked["close"].startswith(f"{adjusted[0]:.2g}")
    assert "*" not in ranked["close"] or adjusted[0] < 0.05


def test_cost_table_lists_every_method_with_device():
    (section,) = _sections(render(_records(), CMD))
    cost = _part(section, "Cost")
    rows = {r[0]: r for r in _tables(cost)[0]}
    assert set(rows) == {"zeta", "alpha", "flat"}
    assert rows["zeta"][1:] == ["1.5", "0.5", "–", "10", "cpu"]  # fit (1 + seed) over 2 seeds


def test_cost_table_gives_a_samplers_draws():
    records = [_record("gen", seed=s, pcc=0.6, stochastic=True) for s in (0, 1)]
    (section,) = _sections(render(records + [_record("alpha", pcc=0.3)], CMD))
    rows = {r[0]: r for r in _tables(_part(section, "Cost"))[0]}
    assert rows["gen"][3] == "20" and rows["alpha"][3] == "–"  # K: 16 and 24 averaged


def test_aggregated_rank_rule_across_datasets_and_metrics():
    a = [_record("good", pcc=0.8), _record("bad", pcc=0.2)]
    b = [_record("good", pcc=0.1, dataset="other"), _record("bad", pcc=0.6, dataset="other")]
    b.append(_record("solo", pcc=0.9, dataset="other"))
    text = render(a + b, CMD)
    summary = text.split("\n## Summary across datasets")[1].split("\n## ")[0]
    rows = {r[1]: r for r in _tables(summary)[0]}
    # good: PCC ranks 1 (toy) and 2 (other); bad: 2 and 3; solo: 1, but on one section only.
    # SSIM/RMSE are seeded noise tables: recompute their ranks from the rendered means
    expected: dict[str, list[float]] = {}
    for section in _sections(text):
        ranked = _tables(section)[0]
        for col, lower in ((2, False), (3, False), (4, True)):
            means = {r[1]: float(CI.match(r[col]).group(1)) for r in ranked}
            ordered = sorted(means.values(), reverse=not lower)
            for m, v in means.items():
                hits = [i + 1 for i, x in enumerate(ordered) if x == v]
                expected.setdefault(m, []).append(sum(hits) / len(hits))
    for m in ("good", "bad", "solo"):
        assert float(rows[m][2]) == pytest.approx(np.mean(expected[m]), abs=0.006), m
    assert rows["solo"][3] == "3/6" and rows["good"][3] == "6/6"
    assert [r[1] for r in _tables(summary)[0]][-1] == "solo"  # fewer sections: after the others
    # headline PCC per section: the section table's cell, marked * where that table's test is
    head = next(line for line in summary.splitlines() if line.startswith("| rank"))
    assert head.endswith("| PCC other | PCC toy |")  # sections in sorted order
    for col, section in zip((5, 6), _sections(text), strict=True):
        table = {r[1]: r for r in _tables(section)[0]}
        for m, row in rows.items():
            if m not in table:
                assert row[col] == "n/a"
                continue
            star = " *" if table[m][-2].endswith("*") else ""  # vs best; then converged
            assert row[col] == table[m][2] + star and CI.match(table[m][2])
    assert rows["solo"][6] == "n/a" and rows["bad"][6].endswith(" *")


def test_scores_scaled_between_controls():
    records = [
        _record("m", pcc=0.5),
        _record("mean", pcc=0.0, control="negative"),
        _record("truth", pcc=1.0, control="positive"),
    ]
    (section,) = _sections(render(records, CMD))
    scaled = _part(section, "Scaled between controls")
    (row,) = _tables(scaled)[0]
    rows = {r[1]: r for t in _tables(section)[:2] for r in t}
    mean = {k: float(CI.match(rows[k][2]).group(1)) for k in ("m", "mean", "truth")}
    assert float(row[1]) == pytest.approx(
        (mean["m"] - mean["mean"]) / (mean["truth"] - mean["mean"]), abs=0.002
    )


def test_write_draws_the_linked_figures_deterministically(tmp_path):
    results = tmp_path / "results"
    records = _records() + [_record("bicubic", pcc=0.5)]
    for rec in records:
        write_record(results, Record.from_json(rec))
    board, figures = write(results, tmp_path / "board" / "LB.md", CMD)
    assert [p.name for p in figures] == ["toy-fp-a-metrics.png", "toy-fp-a-vs-bicubic.png"]
    links = re.findall(r"\]\((figures/[^)]+)\)", board.read_text())
    assert links == [f"figures/{p.name}" for p in figures]
    first = {p.name: p.read_bytes() for p in figures}
    assert all(b.startswith(b"\x89PNG") for b in first.values())
    text = board.read_text()
    _, again = write(results, board, CMD)
    assert {p.name: p.read_bytes() for p in again} == first  # same records, same bytes
    assert board.read_text() == text


def test_a_killed_writers_temporary_figures_are_removed(tmp_path):
    import os
    import time

    from bench.board import page

    figures = tmp_path / "figures"
    figures.mkdir()
    stale = figures / ".x-metrics.png.abc.tmp.png"
    fresh = figures / ".y-metrics.png.def.tmp.png"
    for f in (stale, fresh):
        f.write_bytes(b"half a figure")
    old = time.time() - page.STALE_S - 60
    os.utime(stale, (old, old))
    unlinked = figures / "old-ladder.png"  # an earlier page's figure this page does not link
    unlinked.write_bytes(b"\x89PNG")
    page.write(tmp_path / "results", tmp_path / "LB.md", "cmd")
    assert not stale.exists() and fresh.exists()  # a running writer's file is left alone
    assert not unlinked.exists()
