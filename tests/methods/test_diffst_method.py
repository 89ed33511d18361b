"""diffst inside the method contract: training, sampling, checkpoints, ablations (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.contract import Sample
from methods.diffst.graph import ratio_adjacency
from methods.diffst.method import DiffST

TINY = {
    "channels": 16,
    "groups": 4,
    "tile_grid": 2,
    "tile_px": 4,
    "iterations": 4,
    "batch_size": 2,
    "steps": 3,
    "checkpoint_every": 2,
}


def samples(
    n: int = 3,
    genes: int = 3,
    size: int = 8,
    channels: int = 3,
    seed: int = 0,
    target: bool = True,
) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hr = rng.gamma(2.0, 1.0, (genes, size, size)).astype(np.float32)
        mask = np.ones((size, size), bool)
        mask[0, :3] = False
        hr *= mask
        lr = hr.reshape(genes, size // 2, 2, size // 2, 2).mean(axis=(2, 4))
        out.append(
            Sample(
                region=f"r{i}",
                genes=tuple(f"g{j}" for j in range(genes)),
                scale=2,
                lr=lr,
                lr_mask=np.ones((size // 2, size // 2), bool),
                hr_mask=mask,
                image=rng.integers(0, 256, (channels, size * 4, size * 4), dtype=np.uint8),
                hr=hr if target else None,
            )
        )
    return out


@pytest.fixture(scope="module")
def trained() -> DiffST:
    m = DiffST(preset="quick", seed=0, **TINY)
    m.fit(samples())
    return m


def test_sample_shape_seeds_and_scale(trained):
    test = samples(n=2, seed=5, target=False)
    a = trained.sample(test, 4, seed=1)
    assert a.shape == (2, 4, 3, 8, 8) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0
    np.testing.assert_array_equal(a, trained.sample(test, 4, seed=1))
    assert not np.allclose(a, trained.sample(test, 4, seed=2))
    assert not np.allclose(a[:, 0], a[:, 1])  # the K draws differ from each other
    mean = trained.sample(test, 4, seed=trained.seed).mean(axis=1)
    np.testing.assert_allclose(trained.predict(test, k=4), mean, rtol=1e-6)


def test_draws_share_conditioning_across_chunk_boundaries(trained, monkeypatch):
    """Sampling with each input's conditioning computed once per chunk gives the draws of the
    plain network call on repeated inputs, also when a chunk holds parts of several inputs."""
    import methods.diffusion.trainer as trainer

    test = samples(n=3, seed=6, target=False)
    monkeypatch.setattr(trainer, "BATCH", 5)  # chunks of 5 rows cut the 4-draw blocks
    shared = trained.sample(test, 4, seed=3)
    calls = []

    def repeated(self, net, x_t, t, batch, ratio, memo=None):
        calls.append(batch["input"].tolist())
        return net(x_t, t, batch["lr"], batch["image"], batch["tiles"], ratio=ratio)

    monkeypatch.setattr(DiffST, "_denoise", repeated)
    plain = trained.sample(test, 4, seed=3)
    # rows 0-4, 5-9, 10-11 of inputs 0 0 0 0 1 | 1 1 1 2 2 | 2 2, counted from each chunk's first
    assert list(dict.fromkeys(map(tuple, calls))) == [(0, 0, 0, 0, 1), (0, 0, 0, 1, 1), (0, 0)]
    np.testing.assert_allclose(shared, plain, rtol=0, atol=1e-4 * float(np.abs(plain).max()))


def test_batches_of_draws_share_conditioning_and_equal_single_samples(trained, monkeypatch):
    """sample_batches gives each seed's sample() draws bit for bit, computing the conditioning
    streams in its first batch only (chunks of 5 rows cut the 4-draw blocks)."""
    import methods.diffusion.trainer as trainer

    test = samples(n=3, seed=6, target=False)
    monkeypatch.setattr(trainer, "BATCH", 5)
    alone = [trained.sample(test, 4, seed) for seed in (3, 4, 5)]
    calls = []  # the LR encoder runs in the conditioning streams only
    hook = trained.ema.lr_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        trained.sample(test, 4, 3)
        one = len(calls)
        assert one == TINY["steps"] * 3  # 3 chunks of rows, every step
        batches = list(trained.sample_batches(test, 4, (3, 4, 5)))
    finally:
        hook.remove()
    assert len(calls) == 2 * one  # the second and third batches reuse the first's
    for got, want in zip(batches, alone, strict=True):
        np.testing.assert_array_equal(got, want)


def test_memo_keeps_chunks_apart_and_stores_within_its_budget():
    from methods.diffusion.memo import Memo

    x = torch.zeros(4)  # 16 bytes
    memo = Memo(budget=40)
    memo.chunk(0).put(7, (x, x))
    assert memo.get(7)[0] is x and memo.chunk(5).get(7) is None
    memo.put(7, (x, x))  # 64 bytes held would pass the budget: not stored
    assert memo.get(7) is None and memo.used == 32
    assert memo.chunk(0).get(7) is not None


def test_graph_adjacency_comes_from_training_maps_only(trained):
    train = samples()
    totals = torch.tensor(np.stack([s.hr for s in train]).sum(axis=(0, 2, 3)), dtype=torch.float32)
    adjacency = trained.net.gene_graph.dense_adjacency()
    torch.testing.assert_close(adjacency, ratio_adjacency(totals), rtol=1e-5, atol=0)
    torch.testing.assert_close(adjacency, adjacency.T)
    trained.sample(samples(n=2, seed=9, target=False), 2, seed=0)  # test data change nothing
    torch.testing.assert_close(trained.net.gene_graph.dense_adjacency(), adjacency)


def test_one_optimisation_step_lowers_the_loss_on_a_fixed_batch():
    m = DiffST(preset="quick", seed=3, **{**TINY, "iterations": 0})
    train = samples()
    m.fit(train)
    data = m._encode(train)
    gen = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (3,), generator=gen)
    noise = torch.randn(data["x0"].shape, generator=gen)

    def loss() -> torch.Tensor:
        out = {}

        def model_fn(x, tt):
            y, out["dis"] = m.net(x, tt, data["lr"], data["image"], data["tiles"])
            return y

        terms = m.diffusion.training_losses(model_fn, data["x0"], t, noise)
        return terms["loss"].mean() + 0.01 * out["dis"]

    before = loss()
    m.optimizer.zero_grad()
    before.backward()
    m.optimizer.step()
    assert float(loss().detach()) < float(before.detach())


@pytest.mark.parametrize("switch", ["graph", "cell_attention", "disentangle", "modulation"])
def test_each_ablation_switch_runs(switch):
    m = DiffST(preset="quick", seed=0, **{**TINY, switch: False})
    m.fit(samples())
    variant = {"prediction": m.config.prediction, "residual": m.config.residual}
    assert m.params()[switch] is False and m.label_params() == {
        "preset": "quick",
        **variant,
        **TINY,
        switch: False,
    }
    out = m.sample(samples(n=1, seed=4, target=False), 2, seed=0)
    assert out.shape == (1, 2, 3, 8, 8) and np.isfinite(out).all()


def test_one_channel_morphology_image():
    m = DiffST(preset="quick", seed=0, **TINY)
    m.fit(samples(channels=1))
    out = m.sample(samples(n=1, channels=1, seed=4, target=False), 2, seed=0)
    assert out.shape == (1, 2, 3, 8, 8) and np.isfinite(out).all()
