"""Issue 13: the width check, every parameterisation's sampler, the residual formulation, the
paper's parameter count, that one training step lowers each variant's loss, and the precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_diffst_method import TINY, samples

from methods import registry
from methods.diffusion.schedule import GaussianDiffusion
from methods.interpolation import Interpolation

REPO = Path(__file__).resolve().parents[2]
U_NETS = ("diffst", "sr3", "unet")


def committed_gene_counts() -> set[int]:
    counts = set()
    for path in REPO.glob("datasets/*/split-k*.json"):
        counts.add(len(json.loads(path.read_text())["genes"]))
    return counts


# ------------------------------------------------------------------------------- the width


def test_committed_splits_exist_with_genes():
    assert {25, 50} <= committed_gene_counts()


@pytest.mark.parametrize("name", U_NETS)
@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_no_preset_is_narrower_than_its_input(name, preset):
    method = registry.create(name, preset=preset)
    for genes in committed_gene_counts():
        assert method.width(genes) >= method.input_width(genes), (name, preset, genes)
    assert registry.method_class("sr3")[0].input_width(50) == 100  # x_t and the LR map


def test_a_narrow_network_is_refused_in_one_line():
    from methods.diffst.network import DiffSTNet
    from methods.sr3 import SR3Net

    with pytest.raises(ValueError, match=r"channels=32 .* 50 channels") as err:
        DiffSTNet(genes=50, image_channels=3, channels=32, lr_hw=(4, 4), hr_hw=(8, 8))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"channels=64 .* 100 channels"):
        SR3Net(genes=50, channels=64)
    SR3Net(genes=50, channels=104)  # wide enough
    for name in U_NETS:  # the same check through the method, from an explicit width
        m = registry.create(name, preset="quick", **{**TINY, "channels": 4})
        with pytest.raises(ValueError, match="narrower"):
            m.fit(samples(genes=5))


# ------------------------------------------------------------------- samplers, every variant


def x0_oracle(diffusion: GaussianDiffusion, x_star: torch.Tensor):
    """The exact parameterised output for data = the single point ``x_star``."""
    acp = torch.as_tensor(diffusion.alphas_cumprod, dtype=x_star.dtype)

    def model_fn(x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        a = acp[ts].reshape(-1, 1, 1, 1).sqrt()
        s = (1 - acp[ts]).reshape(-1, 1, 1, 1).sqrt()
        eps = (x - a * x_star) / s
        target = {"eps": eps, "x0": x_star.expand_as(x), "v": a * eps - s * x_star}
        out = target[diffusion.prediction]
        return torch.cat([out, torch.zeros_like(out)], dim=1)

    return model_fn


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_oracle_sampler_reconstructs_x0_for_every_parameterisation(prediction, method):
    diffusion = GaussianDiffusion.linear(prediction=prediction)
    g = torch.Generator().manual_seed(0)
    x_star = torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64) * 1.6 - 0.8
    out = diffusion.sample(
        x0_oracle(diffusion, x_star), (2, 3, 4, 4), g, steps=20, method=method, device="cpu"
    )
    assert out.dtype == torch.float32 or out.dtype == torch.float64
    torch.testing.assert_close(out.double(), x_star.expand(2, 3, 4, 4), atol=1e-4, rtol=0)


def test_targets_invert_to_x0_and_eps():
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(3, 2, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 400, 999])
    for prediction in ("eps", "x0", "v"):
        d = GaussianDiffusion.linear(prediction=prediction)
        x_t = d.q_sample(x0, t, noise)
        got_x0, got_eps = d.to_x0_eps(d.target(x0, noise, t), x_t, t)
        torch.testing.assert_close(got_x0, x0)
        torch.testing.assert_close(got_eps, noise)


def test_variance_interpolant_is_clamped():
    d = GaussianDiffusion.linear()
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    t = torch.tensor([500])
    wild = d._p_from_output(torch.cat([x, torch.full_like(x, 23.0)], 1), x, t, True)
    edge = d._p_from_output(torch.cat([x, torch.full_like(x, 1.0)], 1), x, t, True)
    torch.testing.assert_close(wild["log_variance"], edge["log_variance"])
    # the training loss leaves it free, so its gradient never vanishes outside the range
    free = d._p_from_output(torch.cat([x, torch.full_like(x, 23.0)], 1), x, t, True, bound=False)
    assert (free["log_variance"] > edge["log_variance"]).all()
    v = torch.full_like(x, 3.0, requires_grad=True)
    out = d.training_losses(lambda x_t, tt: torch.cat([torch.zeros_like(x_t), v], 1), x, t)
    out["vb"].sum().backward()
    assert (v.grad.abs() > 0).all()


# ------------------------------------------------------------------------- the residual form


@pytest.mark.parametrize("name", U_NETS)
def test_residual_with_a_zero_network_returns_the_bicubic_interpolation(name):
    train, test = samples(), samples(n=2, seed=3, target=False)
    extra = {} if name == "unet" else {"prediction": "x0"}
    m = registry.create(name, preset="quick", **{**TINY, "iterations": 0}, residual=True, **extra)
    m.fit(train)  # no step taken: the zero-initialised output conv gives a zero residual
    pred = m.predict(test)
    bicubic = Interpolation(mode="bicubic").predict(test)
    cap = m.scale.numpy()[None, :, None, None]  # the model scale's top, r_g
    expected = np.minimum(bicubic, cap)
    np.testing.assert_allclose(pred, expected, atol=1e-5)
    assert (bicubic < cap).mean() > 0.5  # most positions are compared uncapped


def test_the_run_name_carries_the_variant():
    m = registry.create("diffst", preset="paper")  # the paper's parameterisation, named
    assert {"prediction": "eps", "residual": False}.items() <= m.label_params().items()
    m = registry.create("diffst", preset="quick")
    assert {"prediction": "v", "residual": True}.items() <= m.label_params().items()
    m = registry.create("sr3", preset="quick", prediction="v", residual=True)
    assert m.label_params()["prediction"] == "v" and m.label_params()["residual"] is True
    with pytest.raises(ValueError, match="prediction"):
        registry.create("sr3", preset="quick", prediction="score")


# ------------------------------------------------------------------------ the paper's size


def test_paper_parameter_count_matches_the_release():
    """The release has 13.36 M parameters at 25 genes (256 x 256 HR, 26 x 26 LR, H&E)."""
    from methods.diffst.network import DiffSTNet
    from methods.diffusion.config import make_config

    cfg = make_config("paper", on_gpu=True)
    net = DiffSTNet(
        genes=25,
        image_channels=3,
        channels=cfg.channels,
        channel_mult=cfg.channel_mult,
        num_res_blocks=cfg.num_res_blocks,
        groups=cfg.groups,
        lr_hw=(26, 26),
        hr_hw=(256, 256),
        tile_px=cfg.tile_px,
    )
    count = sum(p.numel() for p in net.parameters())
    assert abs(count / 13.36e6 - 1) < 0.03, count
    assert sum(p.numel() for p in net.modulation.parameters()) == 2 * (1024**2 + 1024)


# ------------------------------------------------------------------ one step lowers the loss

VARIANTS = [("unet", None, False), ("unet", None, True)] + [
    (name, prediction, residual)
    for name in ("sr3", "diffst")
    for prediction in ("eps", "x0", "v")
    for residual in (False, True)
]


@pytest.mark.parametrize(("name", "prediction", "residual"), VARIANTS)
def test_one_training_step_lowers_the_loss(name, prediction, residual):
    extra = {} if prediction is None else {"prediction": prediction}
    m = registry.create(
        name, preset="quick", **{**TINY, "learning_rate": 1e-4}, residual=residual, **extra
    )
    train = samples(genes=3)
    m._build(train)
    batch = m._encode(train)

    def loss() -> torch.Tensor:  # the same timesteps and noise every call
        return m._loss(batch, torch.Generator().manual_seed(7), 1.0)

    before = loss()
    m.optimizer.zero_grad()
    before.backward()
    m.optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item(), (before.item(), after.item())


# ------------------------------------------------------------------------------- precision


@pytest.mark.parametrize("amp", [True, False])
def test_amp_runs_the_network_in_bfloat16_on_cpu_for_training_and_sampling(amp):
    """``amp`` autocasts the network to bfloat16 for training and sampling on any device
    (config.py); the loss and the draws stay float32."""
    m = registry.create("sr3", preset="quick", **TINY, residual=True, prediction="v", amp=amp)
    train = samples(genes=3)
    m._build(train)
    seen: list[torch.dtype] = []
    m.net.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    m.ema.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    loss = m._loss(m._encode(train), torch.Generator().manual_seed(7), 1.0)
    assert seen == [torch.bfloat16 if amp else torch.float32]
    assert loss.dtype == torch.float32
    seen.clear()
    draws = m.sample(samples(n=1, genes=3, seed=3, target=False), 2, seed=0)
    assert seen and set(seen) == {torch.bfloat16 if amp else torch.float32}
    assert draws.dtype == np.float32 and np.isfinite(draws).all()


@pytest.mark.parametrize("outside", ["floor", "mean"])
def test_outside_tissue_is_the_floor_or_the_gene_mean(outside):
    m = registry.create("sr3", preset="quick", **TINY, outside=outside)
    assert registry.create("sr3", preset="quick").config.outside == "floor"  # the release's
    m.scale = torch.tensor([2.0, 4.0])
    m.mean = torch.tensor([0.5, 1.0])
    values = np.full((1, 2, 2, 2), 1.0, np.float32)
    mask = np.array([[[True, False], [True, True]]])
    x = m._to_model(values, mask).numpy()
    np.testing.assert_allclose(x[0, :, 0, 0], [0.0, -0.5])  # in tissue: 2 v / r - 1
    want = [-1.0, -1.0] if outside == "floor" else [2 * 0.5 / 2 - 1, 2 * 1.0 / 4 - 1]
    np.testing.assert_allclose(x[0, :, 0, 1], want)
