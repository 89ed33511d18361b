"""bench.run.plots: the gene panel PNG and the choice of genes to show."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.run.plots import gene_panel, pick_genes

PNG = b"\x89PNG\r\n\x1a\n"


def _maps(g: int = 3, h: int = 4, w: int = 5, k: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    hr = rng.gamma(2.0, 1.0, size=(g, h * k, w * k)).astype(np.float32)
    hr_mask = np.ones((h * k, w * k), dtype=bool)
    hr_mask[:2, :3] = False
    hr[:, ~hr_mask] = 0.0
    lr = hr.reshape(g, h, k, w, k).mean(axis=(2, 4))
    lr_mask = np.ones((h, w), dtype=bool)
    lr_mask[0, 0] = False
    pred = hr + rng.normal(0, 0.3, size=hr.shape).astype(np.float32)
    return lr, hr, pred, hr_mask, lr_mask


@pytest.mark.parametrize("g", [1, 3])
def test_gene_panel_writes_a_png(tmp_path, g):
    lr, hr, pred, hr_mask, lr_mask = _maps(g=g)
    pred[0, 3, 3] = np.nan  # NaN is drawn blank, not an error
    genes = [f"GENE{i}" for i in range(g)]
    path = tmp_path / "fig" / "panel.png"
    assert gene_panel(lr, hr, pred, hr_mask, lr_mask, genes, path, "toy / method") == path
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        width, height = im.size
    assert 600 <= width <= 1500 and 200 * g <= height <= 500 * g


def test_gene_panel_rejects_mismatched_shapes(tmp_path):
    lr, hr, pred, hr_mask, lr_mask = _maps()
    with pytest.raises(ValueError, match="gene names"):
        gene_panel(lr, hr, pred, hr_mask, lr_mask, ["a"], tmp_path / "x.png", "t")
    with pytest.raises(ValueError, match="pred"):
        gene_panel(lr, hr, pred[:, :-1], hr_mask, lr_mask, ["a", "b", "c"], tmp_path / "x.png", "")
    assert not (tmp_path / "x.png").exists()


def test_gene_panel_leaves_no_open_pyplot_figure(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    lr, hr, pred, hr_mask, lr_mask = _maps(g=1)
    gene_panel(lr, hr, pred, hr_mask, lr_mask, ["a"], tmp_path / "p.png", "t")
    assert plt.get_fignums() == before


def test_pick_genes_orders_by_variance_with_ties_by_index():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(6, 6))
    scales = [0.5, 3.0, 1.0, 3.0, 2.0, 0.1]  # genes 1 and 3 tie exactly
    hr = np.stack([s * base for s in scales])
    mask = np.ones((6, 6), dtype=bool)
    genes = [f"g{i}" for i in range(6)]
    assert pick_genes(hr, mask, genes, n=3) == [1, 3, 4]
    assert pick_genes(hr, mask, genes, n=10) == [1, 3, 4, 2, 0, 5]
    assert pick_genes(hr, mask, genes, n=1) == [1]


def test_pick_genes_ignores_masked_positions():
    mask = np.zeros((5, 5), dtype=bool)
    mask[1:4, 1:4] = True
    hr = np.zeros((3, 5, 5))
    hr[0][mask] = np.arange(9.0)  # varies inside tissue
    hr[1][~mask] = 100.0 * np.arange((~mask).sum())  # huge variance, but only outside tissue
    hr[2][mask] = np.arange(9.0) / 2
    assert pick_genes(hr, mask, ["a", "b", "c"], n=2) == [0, 2]
    # unmasked, gene 1 would win
    assert pick_genes(hr, np.ones((5, 5), dtype=bool), ["a", "b", "c"], n=1) == [1]


def test_pick_genes_rejects_empty_mask_and_wrong_names():
    hr = np.ones((2, 3, 3))
    with pytest.raises(ValueError, match="no in-tissue"):
        pick_genes(hr, np.zeros((3, 3), dtype=bool), ["a", "b"])
    with pytest.raises(ValueError, match="gene names"):
        pick_genes(hr, np.ones((3, 3), dtype=bool), ["a"])
