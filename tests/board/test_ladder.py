"""The pooling ladder (bench/board/ladder.py): other-k tasks leave the ranked sections and show
each method's PCC against k, over the seeds common to every k, with the noise ceiling."""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.board import ladder, page
from bench.board.verify import without_figure_links
from bench.run.records import PerGene, Record, SplitRef

COMMAND = "python -m bench run --methods all"
REGIONS, GENES = ("s1", "s2", "s3"), tuple(f"g{j}" for j in range(8))


def _record(dataset: str, k: int, method: str, seed: int, pcc: float, **extra) -> Record:
    """A record whose per-(region, gene) PCC varies around ``pcc`` and averages to it exactly."""
    rng = np.random.default_rng(k * 100 + seed)
    noise = rng.normal(0.0, 0.05, len(REGIONS) * len(GENES))
    values = [float(v) for v in pcc + noise - noise.mean()]
    return Record(
        dataset=dataset,
        method=method,
        seed=seed,
        split=SplitRef(
            fingerprint=f"{k:x}" * 16,
            k=k,
            genes=GENES,
            test=REGIONS,
            scored=100,
            qc_min_totals=dict.fromkeys(REGIONS, 3),
        ),
        status="ok",
        metrics={"pcc": float(np.mean(values)), "input_response": 0.9},
        per_gene=PerGene(
            region=[r for r in REGIONS for _ in GENES],
            gene=list(GENES) * len(REGIONS),
            scores={"pcc": values, "ssim": [0.5] * len(values), "rmse": [1.0] * len(values)},
        ),
        timings={"fit_s": 1.0, "predict_s": 0.5},
        device="cpu",
        **extra,
    )


# PCC by (method, k): bicubic falls fast, "good" slowly; the ceiling falls too
LEVELS = {("bicubic", 2): 0.6, ("bicubic", 3): 0.45, ("bicubic", 4): 0.3}
LEVELS |= {("good", 2): 0.62, ("good", 3): 0.55, ("good", 4): 0.5}
CEILING = {2: 0.9, 3: 0.85, 4: 0.8}


def _records(page_seeds=(0, 1, 2), ladder_seeds=(0,)) -> list[Record]:
    out = []
    for (method, k), level in LEVELS.items():
        name = "syn" if k == 2 else f"syn-k{k}"
        seeds = page_seeds if k == 2 else ladder_seeds
        # the page's seeds 1 and 2 score far higher: a ladder that used them would show it
        out += [_record(name, k, method, s, level + 0.2 * (s > 0)) for s in seeds]
    for k, level in CEILING.items():
        name = "syn" if k == 2 else f"syn-k{k}"
        out.append(_record(name, k, "ceiling", 0, level, control="ceiling"))
    return out


def test_other_k_tasks_leave_the_sections_and_form_the_ladder() -> None:
    records = _records()
    kept, ladders = ladder.take(records)
    assert {r.dataset for r in kept} == {"syn"}
    assert [(lad.dataset, lad.ks) for lad in ladders] == [("syn", [2, 3, 4])]
    assert ladders[0].seeds() == [0]
    text = page.render(records, COMMAND)
    assert "## syn · k = 2" in text and "syn-k3" not in text


def test_ladder_table_means_over_the_common_seeds_and_the_ceiling() -> None:
    (lad,) = ladder.take(_records())[1]
    pcc, ceiling = lad.table()
    assert list(pcc) == ["good", "bicubic"]  # the smallest k's ranking
    for (method, k), level in LEVELS.items():
        mean, low, high = pcc[method][k]
        assert abs(mean - level) < 1e-9  # seed 0 only, not the page's seeds 1 and 2
        assert low < mean < high
    assert ceiling.keys() == CEILING.keys()
    assert all(abs(ceiling[k] - CEILING[k]) < 1e-9 for k in CEILING)
    text = page.render(_records(), COMMAND)
    block = text[text.index("## Pooling ladder") :]
    good = next(line for line in block.splitlines() if line.startswith("| good |"))
    assert good.endswith("| -0.120 |")  # 0.50 at k = 4 less 0.62 at k = 2
    assert "| *noise ceiling* | 0.900 | 0.850 | 0.800 |" in block


def test_no_ladder_without_other_k_and_a_lone_other_k_stays_a_section() -> None:
    base_only = [r for r in _records() if r.dataset == "syn"]
    assert ladder.take(base_only)[1] == []
    assert "Pooling ladder" not in page.render(base_only, COMMAND)
    lone = [r for r in _records() if r.dataset == "syn-k3"]
    kept, ladders = ladder.take(lone)
    assert ladders == [] and len(kept) == len(lone)
    assert "## syn-k3 · k = 3" in page.render(lone, COMMAND)


def test_ladder_figure_is_written_and_linked(tmp_path) -> None:
    (lad,) = ladder.take(_records())[1]
    path = ladder.figure(lad, tmp_path / "syn-ladder.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.read_bytes() == ladder.figure(lad, tmp_path / "again.png").read_bytes()
    lines, drawn = ladder.section([lad], tmp_path, "figures")
    assert drawn == [tmp_path / "syn-ladder.png"]
    assert "![syn pooling ladder](figures/syn-ladder.png)" in lines


def test_bench_verify_reads_a_drawn_ladder_as_the_rendered_one(tmp_path) -> None:
    (lad,) = ladder.take(_records())[1]
    drawn, _ = ladder.section([lad], tmp_path, "figures")  # as write() puts it on the page
    rendered, _ = ladder.section([lad], None, "figures")  # as render() gives it to verify
    assert drawn != rendered
    assert without_figure_links(drawn) == rendered


def test_a_folded_dataset_keeps_its_single_split_for_the_ladder_only() -> None:
    records = _records()
    kept, ladders = ladder.take(records, folded={"syn"})
    assert kept == []  # its section is its pooled folds; the single split is a rung
    assert [(lad.dataset, lad.ks) for lad in ladders] == [("syn", [2, 3, 4])]
    assert ladders[0].table() == ladder.take(records)[1][0].table()
    base_only = [r for r in records if r.dataset == "syn"]
    assert ladder.take(base_only, folded={"syn"})[0] == base_only  # no ladder: stays a section


def _fold_records(other_k_folds=(0,)) -> list[Record]:
    """A folded dataset (folds 0 and 1 at k = 2) with fold ``other_k_folds`` at k = 3 and 4."""
    out = []
    for (method, k), level in LEVELS.items():
        for fold in (0, 1) if k == 2 else other_k_folds:
            name = f"syn-f{fold}" if k == 2 else f"syn-k{k}-f{fold}"
            rec = _record(name, k, method, 0, level + 0.1 * fold)
            split = dataclasses.replace(rec.split, fold=fold, folds=2)
            out.append(dataclasses.replace(rec, split=split))
    return out


def test_a_folded_dataset_ladders_over_its_fold_0_which_stays_in_its_section() -> None:
    records = _fold_records()
    kept, ladders = ladder.take(records, folded={"syn"})
    assert {r.dataset for r in kept} == {"syn-f0", "syn-f1"}  # both folds stay for the section
    ((lad),) = ladders
    assert (lad.dataset, lad.fold, lad.ks, lad.name) == ("syn", 0, [2, 3, 4], "syn fold 0")
    pcc, _ = lad.table()
    for (method, k), level in LEVELS.items():
        assert abs(pcc[method][k][0] - level) < 1e-9  # fold 0's records at every k, not fold 1's
    text = page.render(records, COMMAND)
    assert "## syn · k = 2 · 2 folds" in text and "### syn fold 0 · k = 2, 3, 4" in text
    assert "syn-k3" not in text


def test_every_fold_of_another_k_is_a_section_not_a_rung() -> None:
    records = _fold_records(other_k_folds=(0, 1))  # a --k 3 --folds all run beside the page
    kept, ladders = ladder.take(records, folded={"syn"})
    assert ladders == [] and len(kept) == len(records)
    assert "## syn-k3 · k = 3 · 2 folds" in page.render(records, COMMAND)
