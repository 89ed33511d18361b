"""The page of a folded dataset (issue 24, "Aggregation over folds" and "Power"): the fold tasks
of one dataset pool into ONE section (every fold's (region, gene) pairs, a per-fold table, a
missing fold drops a method from the ranking with a sentence), non-folded datasets render as
before, the section's hierarchical interval covers a known mean at about the nominal rate, and the
printed detectable difference is detected with about 80% power by the section's own test.

Records are built directly (no grid run): ``_records`` simulates per-(region, gene) PCC as a
method's level plus a region effect plus gene noise, with known standard deviations.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from bench.board import folds as board_folds
from bench.board import page
from bench.board import rows as board_rows
from bench.board.stats import (
    detectable_difference,
    min_signed_rank_p,
    paired_wilcoxon_regions,
    power_at,
)
from bench.run.records import PerGene, Record, SplitRef

COMMAND = "python -m bench run --folds all"
Z80 = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)


def _records(
    levels: dict[str, float],
    *,
    folds: int = 4,
    regions: int | tuple[int, ...] = 6,
    genes: int = 10,
    sd_region: float = 0.05,
    sd_gene: float = 0.1,
    seeds: tuple[int, ...] = (0,),
    name: str = "syn",
    with_fold: bool = True,
    seed: int = 0,
    controls: dict[str, str] | None = None,
    pcc_only: bool = False,
) -> list[Record]:
    """Records of ``folds`` fold tasks: PCC = level + region effect (per method and region) +
    gene noise; tile-named regions, unique over folds; ssim / rmse constant (left out with
    ``pcc_only``, which saves their intervals in the simulations)."""
    rng = np.random.default_rng(seed)
    sizes = (regions,) * folds if isinstance(regions, int) else regions
    controls = controls or {}
    out = []
    for f in range(folds):
        names = [f"section_r{f}c{i}" for i in range(sizes[f])]
        gene_names = [f"g{j}" for j in range(genes)]
        split = SplitRef(
            fingerprint=f"{f:x}" * 16,
            k=2,
            genes=tuple(gene_names),
            test=tuple(names),
            qc_min_totals={r: 5 + f + (i == 0 and f == 1) for i, r in enumerate(names)},
            qc_depth_fraction=0.1,
            scored=50 * sizes[f],
            dropped=f,
            fold=f if with_fold else None,
            folds=folds if with_fold else None,
        )
        for method, level in levels.items():
            effect = rng.normal(0.0, sd_region, len(names))
            for s in seeds:
                pcc = [
                    float(level + effect[i] + rng.normal(0.0, sd_gene))
                    for i in range(len(names))
                    for _ in gene_names
                ]
                out.append(
                    Record(
                        dataset=f"{name}-f{f}",
                        method=method,
                        seed=s,
                        split=split,
                        status="ok",
                        control=controls.get(method),
                        metrics={"pcc": float(np.mean(pcc)), "input_response": 0.9},
                        per_gene=PerGene(
                            region=[r for r in names for _ in gene_names],
                            gene=gene_names * len(names),
                            scores={"pcc": pcc}
                            if pcc_only
                            else {"pcc": pcc, "ssim": [0.5] * len(pcc), "rmse": [1.0] * len(pcc)},
                        ),
                        timings={"fit_s": 1.0, "predict_s": 0.5},
                        device="cpu",
                    )
                )
    return out


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:]
        out.setdefault(current, []).append(line)
    return out


def _table(lines: list[str], head: str) -> dict[str, list[str]]:
    """The rows (first cell -> other cells) of the table whose header starts with ``head``."""
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _pcc(records: list[Record], method: str, fold: int | None = None) -> float:
    """Mean PCC of ``method`` over the (region, gene) pairs (seeds averaged per pair first) of
    one fold, or of every fold."""
    pairs: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r.method != method or (fold is not None and r.dataset != f"syn-f{fold}"):
            continue
        for key in zip(r.per_gene.region, r.per_gene.gene, r.per_gene.scores["pcc"], strict=True):
            pairs.setdefault(key[:2], []).append(key[2])
    return float(np.mean([np.mean(v) for v in pairs.values()]))


LEVELS = {"good": 0.5, "bicubic": 0.45, "other": 0.3, "mean": 0.1}


@pytest.fixture(scope="module")
def folded() -> tuple[list[Record], str]:
    records = _records(LEVELS, regions=(5, 8, 6, 7), seeds=(0, 1), controls={"mean": "negative"})
    return records, page.render(records, COMMAND)


def test_one_section_pools_every_fold(folded) -> None:
    records, text = folded
    sections = _sections(text)
    heads = [h for h in sections if h.startswith("syn")]
    assert heads == ["syn · k = 2 · 4 folds"], heads  # no section per fold
    body = "\n".join(sections[heads[0]])
    assert "26 test regions (5 + 8 + 6 + 7 by fold)" in body  # every fold's regions, once
    assert "`syn-f0`, `syn-f1`, `syn-f2`, `syn-f3` of 4" in body
    assert "hierarchical bootstrap" in body and "region means" in body
    ranked = _table(sections[heads[0]], "| rank |")
    assert [cells[0] for cells in ranked.values()] == ["good", "bicubic", "other"]
    for cells in ranked.values():  # the pooled mean over every fold's pairs
        assert cells[1].startswith(f"{_pcc(records, cells[0]):.3f} [")
    assert "PCC syn (4 folds)" in text  # the summary's column


def test_per_fold_table_has_each_fold_mean(folded) -> None:
    records, text = folded
    lines = _sections(text)["syn · k = 2 · 4 folds"]
    table = _table(lines, "| method | f0 |")
    assert set(table) == {"good", "bicubic", "other", "mean"}
    for method, cells in table.items():
        means = [_pcc(records, method, f) for f in range(4)]
        assert cells[:4] == [f"{m:.3f}" for m in means]
        assert cells[4] == f"{np.std(means, ddof=1):.3f}"
        assert cells[5] == f"{max(means) - min(means):.3f}"
    splits = _table(lines, "| fold | task |")
    assert [c[0] for c in splits.values()] == [f"syn-f{f}" for f in range(4)]
    assert [c[2] for c in splits.values()] == ["5", "8", "6", "7"]
    # each fold's QC thresholds, one number when its test regions share it
    thresholds = [c[5] for c in splits.values()]
    assert thresholds[0] == "5" and thresholds[2:] == ["7", "8"]
    assert thresholds[1] == "7 in section_r1c0; 6 in " + ", ".join(
        f"section_r1c{i}" for i in range(1, 8)
    )


def test_a_missing_fold_drops_the_method_with_a_sentence() -> None:
    records = _records(LEVELS, controls={"mean": "negative"})
    records = [r for r in records if not (r.method == "bicubic" and r.dataset == "syn-f2")]
    failed = next(r for r in records if r.method == "other" and r.dataset == "syn-f1")
    failed.status, failed.error = "failed", "boom"
    lines = _sections(page.render(records, COMMAND))["syn · k = 2 · 4 folds"]
    body = "\n".join(lines)
    ranked = _table(lines, "| rank |")
    assert [cells[0] for cells in ranked.values()] == ["good"]
    assert "**Not ranked, a fold is missing**" in body
    assert "`bicubic` lacks f2; `other` lacks f1" in body
    table = _table(lines, "| method | f0 |")
    row = table["bicubic (incomplete, not ranked)"]
    assert row[2] == "n/a" and row[0] == f"{_pcc(records, 'bicubic', 0):.3f}"
    assert "- other (syn-f1, seed 0, failed): boom" in body


def test_folds_without_records_are_named() -> None:
    records = [r for r in _records(LEVELS) if r.dataset != "syn-f3"]
    body = "\n".join(_sections(page.render(records, COMMAND))["syn · k = 2 · 4 folds"])
    assert "**Fold(s) f3 of 4 have no records here**" in body
    assert "18 test regions (6 + 6 + 6 by fold)" in body


def test_old_records_read_the_fold_from_the_label() -> None:
    records = _records(LEVELS, with_fold=False)
    sections = _sections(page.render(records, COMMAND))
    assert [h for h in sections if h.startswith("syn")] == ["syn · k = 2 · 4 folds"]
    assert "of 4 (a count inferred from the labels)" in "\n".join(
        sections["syn · k = 2 · 4 folds"]
    )


def test_a_split_renders_as_before_beside_folds() -> None:
    """A non-folded dataset's section is the same text with or without a folded one beside it,
    and a page of splits only is unchanged by the folds module (no fold field, no -f label)."""
    plain = [r for r in _records(LEVELS, folds=1, name="solo", with_fold=False)]
    for r in plain:
        r.dataset = "solo"
    alone = page.render(plain, COMMAND)
    both = page.render(plain + _records(LEVELS), COMMAND)
    key = next(h for h in _sections(alone) if h.startswith("solo"))
    assert "\n".join(_sections(both)[key]).rstrip() == "\n".join(_sections(alone)[key]).rstrip()
    assert "Cross-validated columns" not in alone and "Cross-validated columns" in both
    assert board_folds.group(plain) == (plain, [])


def test_split_ref_keeps_the_fold_and_omits_it_for_a_split() -> None:
    ref = SplitRef(fingerprint="ab", k=2, fold=1, folds=4)
    assert SplitRef.from_json(ref.to_json()) == ref
    assert "fold" not in SplitRef(fingerprint="ab").to_json()
    assert SplitRef.from_json(SplitRef(fingerprint="ab").to_json()).fold is None


# --- the interval and the power against simulations with a known answer -----------------------


def _pooled_row(records: list[Record], clustered: bool = True) -> dict:
    (pooled,) = board_folds.group(records)[1]
    ranked, _ = board_rows.rows(pooled.complete, list(pooled.split.genes), clustered=clustered)
    return ranked[0]


def test_hierarchical_interval_covers_the_true_mean() -> None:
    """200 simulated folded datasets (4 folds x 6 regions x 10 genes, region sd 0.1, gene sd
    0.2, true mean 0.5): the section's interval covers 0.5 at about the nominal 95%; the
    genes-within-regions interval a split section uses misses the region variation."""
    n_sims, hits, genes_only = 200, 0, 0
    for i in range(n_sims):
        records = _records({"m": 0.5}, sd_region=0.1, sd_gene=0.2, seed=100 + i, pcc_only=True)
        _, low, high = _pooled_row(records)["pcc"]
        hits += low <= 0.5 <= high
        if i < 60:
            _, low, high = _pooled_row(records, clustered=False)["pcc"]
            genes_only += low <= 0.5 <= high
    print(f"coverage: hierarchical {hits / n_sims}, genes only {genes_only / 60}")
    assert 0.88 <= hits / n_sims <= 0.99
    assert genes_only / 60 < 0.85


def test_printed_detectable_difference_has_80_percent_power() -> None:
    """Two methods level on average, their differences clustered in regions (4 folds x 10
    regions x 15 genes). The page prints the detectable difference X from the observed pairs;
    paired differences simulated with the observed variance (split into region and gene parts
    by the observed intraclass correlation) and mean X are detected by the section's own test
    (signed-rank on region means, p < 0.05) about 80% of the time, and at mean 0 about 5%."""
    sd_region, sd_gene, n_regions, n_genes = 0.03, 0.06, 40, 15
    records = _records(
        {"a": 0.5, "b": 0.5}, regions=10, genes=n_genes, sd_region=sd_region, sd_gene=sd_gene
    )
    text = page.render(records, COMMAND)
    found = re.search(r"detects a mean difference of (\d\.\d{3}) PCC with 80% power", text)
    assert found, text
    printed = float(found.group(1))
    row_a, row_b = (r for r in _pooled_rows(records))
    d = (row_b["pcc_table"] - row_a["pcc_table"]).reshape(-1)
    region = np.repeat(np.arange(n_regions), n_genes)
    mde = detectable_difference(d, power=0.8, alpha=0.05, region_ids=region)
    assert printed == pytest.approx(mde, abs=5e-4)
    # the known answer: sd of a region mean of d, over sqrt(regions), Wilcoxon's efficiency
    region_var = 2 * sd_region**2 + 2 * sd_gene**2 / n_genes
    truth = Z80 * math.sqrt(region_var / n_regions) * math.sqrt(math.pi / 3)
    assert printed == pytest.approx(truth, rel=0.35)

    icc = board_folds.power_rows(_pooled_rows(records))[0]["icc"]
    var = float(np.var(d, ddof=1))
    su, se = math.sqrt(icc * var), math.sqrt((1 - icc) * var)
    rng = np.random.default_rng(9)
    n_sims, hits, null = 400, 0, 0
    for _ in range(n_sims):
        u = rng.normal(0, su, (n_regions, 1))
        hits += paired_wilcoxon_regions(printed + u + rng.normal(0, se, (n_regions, n_genes)),
                                        np.zeros((n_regions, n_genes))) < 0.05  # fmt: skip
        u = rng.normal(0, su, (n_regions, 1))
        null += paired_wilcoxon_regions(u + rng.normal(0, se, (n_regions, n_genes)),
                                        np.zeros((n_regions, n_genes))) < 0.05  # fmt: skip
    print(f"rejection rate at the printed difference {hits / n_sims}, at none {null / n_sims}")
    assert 0.70 <= hits / n_sims <= 0.90
    assert null / n_sims <= 0.09


def _pooled_rows(records: list[Record]) -> list[dict]:
    (pooled,) = board_folds.group(records)[1]
    return board_rows.rows(pooled.complete, list(pooled.split.genes), clustered=True)[0]


def test_too_few_regions_say_so() -> None:
    """Six regions: a region-mean test can reach p = 2/64 but not below Holm's 0.05 / 2; four
    regions: not even p < 0.05."""
    levels = {"a": 0.5, "b": 0.3, "c": 0.2}
    six = page.render(_records(levels, folds=6, regions=1), COMMAND)
    assert "no method can be separated from the best here" in six
    assert "level with it (not separated by the test): `b`, `c`" in six
    four = page.render(_records(levels, folds=4, regions=1), COMMAND)
    assert "no difference from the best is detectable with these regions, however large" in four
    table = _table(_sections(four)["syn · k = 2 · 4 folds"], "| method | difference")
    assert all(cells[3] == "none" and cells[4] == "0.00" for cells in table.values())


def test_region_test_power_at_and_smallest_p() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 0.1, (8, 5)), rng.normal(0.5, 0.1, (8, 5))
    a[2, 1] = np.nan  # dropped from region 2's mean
    d = a - b
    means = [np.nanmean(row) for row in d]
    assert paired_wilcoxon_regions(a, b) == pytest.approx(sps.wilcoxon(means).pvalue)
    labels = np.repeat(np.arange(8), 5)
    assert paired_wilcoxon_regions(a.reshape(-1), b.reshape(-1), labels) == pytest.approx(
        paired_wilcoxon_regions(a, b)
    )
    assert paired_wilcoxon_regions(a, a) == 1.0
    assert math.isnan(paired_wilcoxon_regions(np.full((2, 2), np.nan), b[:2, :2]))
    assert paired_wilcoxon_regions(b + 1.0, b) == pytest.approx(min_signed_rank_p(8))
    assert min_signed_rank_p(6) == pytest.approx(2 / 64) and min_signed_rank_p(0) == 1.0
    assert power_at(0.02, 0.02) == pytest.approx(0.8)
    assert power_at(-0.02, 0.02) == pytest.approx(0.8)
    assert power_at(0.0, 0.02) == pytest.approx(sps.norm.cdf(-sps.norm.ppf(0.975)))
    assert power_at(0.04, 0.02) > 0.99 and math.isnan(power_at(0.01, math.nan))
    with pytest.raises(ValueError, match="region_ids"):
        paired_wilcoxon_regions(a.reshape(-1), b.reshape(-1))
