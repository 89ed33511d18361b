"""Tests of the diffst noise schedule, hybrid loss and samplers (CPU, a few seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from methods.diffusion.schedule import GaussianDiffusion

T = 1000


@pytest.fixture(scope="module")
def base() -> GaussianDiffusion:
    return GaussianDiffusion.linear()


def zeros_model(x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    return torch.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:], dtype=x.dtype)


def point_oracle(x_star: torch.Tensor, calls: list | None = None, v: float = 0.0):
    """Exact eps for data = the single point x_star, using the *original* timestep received."""
    acp = torch.as_tensor(GaussianDiffusion.linear().alphas_cumprod, dtype=x_star.dtype)

    def model_fn(x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append((x.clone(), ts.clone()))
        a = acp[ts].reshape(-1, 1, 1, 1)
        eps = (x - a.sqrt() * x_star) / (1 - a).sqrt()
        return torch.cat([eps, torch.full_like(eps, v)], dim=1)

    return model_fn


def test_linear_schedule_values(base):
    assert base.num_timesteps == T
    assert base.betas[0] == pytest.approx(1e-4) and base.betas[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(base.betas), (0.02 - 1e-4) / (T - 1), rtol=1e-9)
    assert (np.diff(base.alphas_cumprod) < 0).all()
    np.testing.assert_array_equal(base.timestep_map, np.arange(T))
    for t in (1, 10, 500, 999):
        acp_t = np.prod(1 - base.betas[: t + 1])
        acp_prev = np.prod(1 - base.betas[:t])
        expected = base.betas[t] * (1 - acp_prev) / (1 - acp_t)
        assert base.posterior_variance[t] == pytest.approx(expected, rel=1e-10)
        assert base.posterior_log_variance_clipped[t] == pytest.approx(math.log(expected))
    assert base.posterior_variance[0] == 0.0
    assert base.posterior_log_variance_clipped[0] == base.posterior_log_variance_clipped[1]


def test_respace(base):
    full = base.respace(T)
    np.testing.assert_allclose(full.betas, base.betas, rtol=1e-9)
    np.testing.assert_array_equal(full.timestep_map, np.arange(T))
    sp = base.respace(20)
    assert sp.num_timesteps == 20 and len(sp.timestep_map) == 20
    assert sp.timestep_map[0] == 0 and sp.timestep_map[-1] == T - 1
    np.testing.assert_array_equal(sp.timestep_map, np.round(np.linspace(0, T - 1, 20)))
    np.testing.assert_allclose(sp.alphas_cumprod, base.alphas_cumprod[sp.timestep_map], rtol=1e-9)
    # Respacing a respaced schedule composes timestep maps.
    np.testing.assert_array_equal(sp.respace(2).timestep_map, [0, T - 1])
    assert list(base.respace(1).timestep_map) == [T - 1]


@pytest.mark.parametrize("steps", [0, -3, T + 1, 2.5, True])
def test_respace_bad_steps(base, steps):
    with pytest.raises(ValueError, match="steps"):
        base.respace(steps)


def test_sample_bad_method(base):
    with pytest.raises(ValueError, match="method"):
        base.sample(zeros_model, (1, 1, 2, 2), torch.Generator().manual_seed(0), method="euler")


def test_q_sample_std(base):
    x0 = torch.zeros(2, 4, 128, 128)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 700])
    x_t = base.q_sample(x0, t, noise)
    for i, ti in enumerate(t.tolist()):
        assert x_t[i].std().item() == pytest.approx(
            math.sqrt(1 - base.alphas_cumprod[ti]), rel=0.02
        )
    # Non-zero x0: the mean is scaled by sqrt(acp_t).
    x_t = base.q_sample(torch.ones_like(x0), t, noise)
    assert x_t[1].mean().item() == pytest.approx(math.sqrt(base.alphas_cumprod[700]), abs=0.01)


def test_training_losses_oracle(base):
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 50, 400, 999])
    seen = []

    def oracle(x, ts):
        seen.append(ts)
        # v = -1 gives frac = 0, i.e. the true posterior log variance (iDDPM eq. 15).
        return torch.cat([noise, -torch.ones_like(noise)], dim=1)

    out = base.training_losses(oracle, x0, t, noise)
    assert set(out) == {"loss", "charbonnier", "vb"}
    assert all(v.shape == (4,) for v in out.values())
    torch.testing.assert_close(out["charbonnier"], torch.full((4,), 1e-3, dtype=torch.float64))
    assert out["vb"].abs().max().item() < 1e-8
    torch.testing.assert_close(out["loss"], out["charbonnier"] + out["vb"])
    torch.testing.assert_close(seen[0], t)
    # A wrong variance (v = +1, i.e. beta_t) has a positive KL (beta~_t -> beta_t as t -> T).
    wrong = base.training_losses(
        lambda x, ts: torch.cat([noise, torch.ones_like(noise)], 1), x0, t, noise
    )
    assert (wrong["vb"][:3] > 1e-7).all()


def test_training_losses_t0_is_gaussian_nll(base):
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 2, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps_hat = noise + 0.1
    out = base.training_losses(
        lambda x, ts: torch.cat([eps_hat, torch.zeros_like(noise)], 1),
        x0,
        torch.tensor([0, 0]),
        noise,
    )
    x_t = base.q_sample(x0, torch.tensor([0, 0]), noise)
    acp0 = base.alphas_cumprod[0]
    pred_x0 = (x_t - math.sqrt(1 - acp0) * eps_hat) / math.sqrt(acp0)  # unclipped in training
    mean = pred_x0  # coef1 = 1, coef2 = 0 at t = 0
    log_var = 0.5 * math.log(base.betas[0]) + 0.5 * base.posterior_log_variance_clipped[0]
    nll = 0.5 * (math.log(2 * math.pi) + log_var + (x0 - mean) ** 2 / math.exp(log_var))
    expected = nll.mean(dim=(1, 2, 3)) / math.log(2)
    torch.testing.assert_close(out["vb"], expected)


class TinyModel(nn.Module):
    def __init__(self, genes: int) -> None:
        super().__init__()
        self.eps = nn.Conv2d(genes, genes, 1)
        self.v = nn.Conv2d(genes, genes, 1)

    def forward(self, x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.eps(x), torch.tanh(self.v(x))], dim=1)


def test_training_losses_gradients(base):
    torch.manual_seed(0)
    model = TinyModel(3)
    x0 = torch.rand(4, 3, 6, 6) * 2 - 1
    t = torch.tensor([0, 5, 300, 900])
    out = base.training_losses(model, x0, t)
    out["loss"].mean().backward()
    assert model.v.weight.grad is not None and model.v.weight.grad.abs().sum() > 0
    assert model.eps.weight.grad is not None and model.eps.weight.grad.abs().sum() > 0
    out = base.training_losses(model, x0, t)
    g_eps, g_v = torch.autograd.grad(
        out["vb"].mean(), [model.eps.weight, model.v.weight], allow_unused=True
    )
    assert g_eps is None or g_eps.abs().max() == 0
    assert g_v is not None and g_v.abs().sum() > 0


def test_samplers_zero_model(base):
    shape = (2, 3, 5, 5)
    sp = base.respace(10)
    for x in (
        sp.p_sample_loop(zeros_model, shape, torch.Generator().manual_seed(0)),
        sp.ddim_sample_loop(zeros_model, shape, torch.Generator().manual_seed(0)),
        base.sample(zeros_model, shape, torch.Generator().manual_seed(0), steps=5, method="ddim"),
    ):
        assert x.shape == shape and torch.isfinite(x).all()
    a = sp.p_sample_loop(zeros_model, shape, torch.Generator().manual_seed(7))
    b = sp.p_sample_loop(zeros_model, shape, torch.Generator().manual_seed(7))
    c = sp.p_sample_loop(zeros_model, shape, torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    # Same x_T, different generators: DDPM still differs (ancestral noise), DDIM eta=0 does not.
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    d1 = sp.ddim_sample_loop(zeros_model, shape, torch.Generator().manual_seed(1), x_T=x_T)
    d2 = sp.ddim_sample_loop(zeros_model, shape, torch.Generator().manual_seed(2), x_T=x_T)
    torch.testing.assert_close(d1, d2, rtol=0, atol=0)
    p1 = sp.p_sample_loop(zeros_model, shape, torch.Generator().manual_seed(1), x_T=x_T)
    p2 = sp.p_sample_loop(zeros_model, shape, torch.Generator().manual_seed(2), x_T=x_T)
    assert not torch.allclose(p1, p2)
    # eta = 1 makes DDIM stochastic.
    e1 = sp.ddim_sample_loop(
        zeros_model, shape, torch.Generator().manual_seed(1), eta=1.0, x_T=x_T
    )
    e2 = sp.ddim_sample_loop(
        zeros_model, shape, torch.Generator().manual_seed(2), eta=1.0, x_T=x_T
    )
    assert torch.isfinite(e1).all() and not torch.allclose(e1, e2)


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_point_mass_recovered(base, method):
    x_star = torch.linspace(-0.9, 0.9, 2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    calls: list = []
    x_T = torch.randn(
        x_star.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    out = base.sample(
        point_oracle(x_star, calls), x_star.shape, torch.Generator().manual_seed(5), steps=20,
        method=method, x_T=x_T,
    )  # fmt: skip
    torch.testing.assert_close(out, x_star, atol=1e-6, rtol=0)
    # The network saw the ORIGINAL timesteps, from T - 1 down to 0, whole batches at a time.
    spaced = base.respace(20)
    seen = [ts.tolist() for _, ts in calls]
    assert seen == [[int(s)] * 2 for s in spaced.timestep_map[::-1]]
    if method == "ddim":
        # eta = 0 keeps the noise direction: every x_t is sqrt(acp) x* + sqrt(1 - acp) eps_T.
        acp = base.alphas_cumprod
        eps_T = (x_T - math.sqrt(acp[T - 1]) * x_star) / math.sqrt(1 - acp[T - 1])
        for x, ts in calls:
            a = acp[int(ts[0])]
            torch.testing.assert_close(x, math.sqrt(a) * x_star + math.sqrt(1 - a) * eps_T)


def test_clip(base):
    x_t = torch.full((1, 2, 3, 3), 5.0)
    t = torch.tensor([0])
    clipped = base.p_mean_variance(zeros_model, x_t, t)["pred_x0"]
    raw = base.p_mean_variance(zeros_model, x_t, t, clip=False)["pred_x0"]
    assert clipped.max() == 1.0 and raw.min() > 5.0
    # The last ancestral step returns the clipped x0 (coef1 = 1, coef2 = 0 at t = 0).
    sp, shape = base.respace(5), (2, 3, 8, 8)
    out = sp.p_sample_loop(zeros_model, shape, torch.Generator().manual_seed(0))
    unclipped = sp.p_sample_loop(zeros_model, shape, torch.Generator().manual_seed(0), clip=False)
    assert out.abs().max() <= 1.0 and unclipped.abs().max() > 1.0


def test_point_mass_ddpm_stochastic_path(base):
    """DDPM with exact x0: intermediate states have the marginal q(x_t | x*), variance 1 - acp."""
    x_star = torch.full((1, 1, 64, 64), 0.5, dtype=torch.float64)
    calls: list = []
    sp = base.respace(20)
    x_T = torch.randn(
        x_star.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )
    # v = -1: the true posterior variance, so each x_t is exactly distributed as q(x_t | x*).
    model_fn = point_oracle(x_star, calls, v=-1.0)
    sp.p_sample_loop(model_fn, x_star.shape, torch.Generator().manual_seed(6), x_T=x_T)
    for x, ts in calls[1:]:
        a = base.alphas_cumprod[int(ts[0])]
        resid = (x - math.sqrt(a) * x_star) / math.sqrt(1 - a)
        assert resid.std().item() == pytest.approx(1.0, rel=0.1)
