"""Sample spread kept by the runner, and the gene-map figures drawn from it: the per-cell and
leaderboard spread-beside-error figures and the gallery of gene maps."""

from __future__ import annotations

import numpy as np
import pytest

from bench.board.page import write
from bench.run import cell as runner
from bench.run import outputs
from bench.run.plots import error_spread_figure, gallery_figure, save_png
from bench.run.records import read_records

GENES = ["a", "b", "c"]


def _clims(fig) -> list[tuple[str, tuple[float, float]]]:
    """(title, colour limits) of every image panel, in drawing order (colour bars left out)."""
    return [(ax.get_title(), ax.images[0].get_clim()) for ax in fig.axes if ax.get_title()]


def _toy(seed: int = 0):
    rng = np.random.default_rng(seed)
    hr = rng.gamma(2.0, 1.0, size=(3, 8, 10))
    mask = np.ones((8, 10), dtype=bool)
    mask[:2, :2] = False
    hr[:, ~mask] = 50.0  # outside tissue: must not set any colour limit
    return hr, mask, rng


def test_error_and_spread_share_one_scale_set_by_in_tissue_values():
    hr, mask, rng = _toy()
    pred = hr + rng.normal(0, 0.5, hr.shape)
    spread = np.abs(rng.normal(0, 2.0, hr.shape))
    fig = error_spread_figure(hr, pred, spread, mask, GENES, "toy")
    clims = _clims(fig)
    assert [t for t, _ in clims].count("spread (std over K)") == 3  # one row per gene
    for i, gene in enumerate(GENES):
        titles, row = zip(*clims[4 * i : 4 * i + 4], strict=True)
        assert titles[0] == f"{gene}: truth" and titles[2] == "|mean - truth|"
        top = max(np.abs(pred[i] - hr[i])[mask].max(), spread[i][mask].max())
        assert row[2] == row[3] == pytest.approx((0.0, top))
        assert row[0] == row[1]
        assert row[0][1] == pytest.approx(max(hr[i][mask].max(), pred[i][mask].max()))


def test_gallery_has_lr_truth_each_method_and_each_spread_per_gene(tmp_path):
    hr, mask, rng = _toy(1)
    lr = hr.reshape(3, 4, 2, 5, 2).mean(axis=(2, 4))
    preds = [("m1", hr + 1.0), ("m2", hr * 3.0), ("s1", hr)]
    spreads = [("s1", np.ones_like(hr)), ("s2", 2 * np.ones_like(hr))]
    fig = gallery_figure(lr, hr, np.ones((4, 5), bool), mask, preds, spreads, GENES, "toy")
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(panels) == 3 * (2 + 3 + 2)
    first = [ax.get_title() for ax in panels[:7]]
    assert first == ["a: LR", "truth", "m1", "m2", "s1", "s1 spread", "s2 spread"]
    for i in range(3):  # expression on the truth's in-tissue range, spread from 0
        row = panels[7 * i : 7 * i + 7]
        truth = (hr[i][mask].min(), hr[i][mask].max())
        assert all(ax.images[0].get_clim() == pytest.approx(truth) for ax in row[:5])
        assert all(ax.images[0].get_clim() == pytest.approx((0.0, 2.0)) for ax in row[5:])
    path = save_png(fig, tmp_path / "g.png")
    again = save_png(fig, tmp_path / "h.png")
    assert path.read_bytes() == again.read_bytes() and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="pred of m1"):
        gallery_figure(lr, hr, np.ones((4, 5), bool), mask, [("m1", hr[:2])], [], GENES, "t")


@pytest.fixture
def noisy(register_method):
    register_method("noisy", "stub_methods", "NoisyBicubic")


def test_runner_keeps_the_spread_of_the_draws_and_draws_it(noisy, her2st, tmp_path):
    from stub_methods import NoisyBicubic

    opts = runner.RunOptions(preset="quick", draws=6)
    record, extras = runner.run_cell(her2st, "noisy", 3, opts)
    assert record.status == "ok", record.error
    draws = NoisyBicubic().sample([s.without_target() for s in her2st.test], 6, 3)
    np.testing.assert_allclose(extras["spread"], draws.std(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(extras["pred"], draws.mean(axis=1), rtol=1e-5, atol=1e-6)
    # the figure's map is the metric's map: its in-tissue mean is the recorded spread
    scored = her2st.truth.scored  # every score is over the positions past spot QC
    means = [extras["spread"][i][:, m].mean(axis=1) for i, m in enumerate(scored)]
    assert record.metrics["spread"] == pytest.approx(float(np.mean(means)), rel=1e-4)

    results = tmp_path / "results"
    files = {p.name for p in outputs.save(results, her2st, record, extras)}
    assert {"seed-3.spread.png", "seed-3.pred.npz", "seed-3.genes.png"} <= files
    with np.load(results / "her2st" / "noisy" / "seed-3.pred.npz") as z:
        np.testing.assert_array_equal(z["spread"], extras["spread"])
    record, extras = runner.run_cell(her2st, "bicubic", 0, opts)
    assert "spread" not in extras
    files = {p.name for p in outputs.save(results, her2st, record, extras)}
    assert "seed-0.spread.png" not in files
    with np.load(results / "her2st" / "bicubic" / "seed-0.pred.npz") as z:
        assert "spread" not in z.files


def test_leaderboard_links_the_gallery_and_spread_figures_it_drew(noisy, her2st, tmp_path):
    results, opts = tmp_path / "results", runner.RunOptions(preset="quick", draws=4)
    for method in ("noisy", "bicubic", "mean"):
        outputs.save(results, her2st, *runner.run_cell(her2st, method, 0, opts))
    page, drawn = write(results, tmp_path / "LB.md", "cmd")
    names = [p.name for p in drawn]
    assert not any("gallery" in n or "spread" in n for n in names)  # no test maps saved yet

    maps = outputs.save_test_maps(results, her2st)
    assert maps.name == f"maps-{her2st.fingerprint}.npz"
    with np.load(maps) as z:
        np.testing.assert_array_equal(z["hr"], her2st.truth.hr[0].astype(np.float32))
        assert str(z["region"]) == her2st.test[0].region and list(z["genes"]) == list(her2st.genes)
    page, drawn = write(results, tmp_path / "LB.md", "cmd")
    stem = f"her2st-{her2st.fingerprint[:8]}"
    names = [p.name for p in drawn]
    assert names == [f"{stem}-{kind}.png" for kind in ("metrics", "vs-bicubic", "gallery")] + [
        f"{stem}-spread-noisy.png"
    ]
    text = page.read_text()
    assert f"[gene maps](figures/{stem}-gallery.png)" in text
    assert f"[noisy: sample spread beside error](figures/{stem}-spread-noisy.png)" in text
    first = {p.name: p.read_bytes() for p in drawn}
    assert {p.name: p.read_bytes() for p in write(results, page, "cmd")[1]} == first

    # a method whose prediction file is gone drops out of the gallery, not the page
    (results / "her2st" / "noisy" / "seed-0.pred.npz").unlink()
    _, drawn = write(results, page, "cmd")
    assert [p.name for p in drawn][-1] == f"{stem}-gallery.png"
    assert first[f"{stem}-gallery.png"] != drawn[-1].read_bytes()
    assert {r.method for r in read_records(results)} == {"noisy", "bicubic", "mean"}
