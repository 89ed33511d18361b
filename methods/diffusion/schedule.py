"""Gaussian diffusion for diffst: noise schedule, hybrid loss, DDPM and DDIM samplers.

The schedule is a plain object; the network enters only as ``model_fn(x_t, timesteps)``, an
opaque callable returning ``(B, 2G, H, W)``: the parameterised target in the first G channels,
the learned-range variance interpolant (``var``, roughly in [-1, 1]) in the last G. Equation
numbers cite Ho et al. 2020 ("DDPM"), Nichol & Dhariwal 2021 ("iDDPM"), Song et al. 2021
("DDIM") and Salimans & Ho 2022 ("PD", progressive distillation).

Parameterisations (``prediction``), with ``a = sqrt(acp_t)`` and ``s = sqrt(1 - acp_t)``:

- ``"eps"`` (the paper's, DDPM eq. 11): the network predicts the noise; ``x0 = (x_t - s eps) / a``.
- ``"x0"`` (DDPM section 3.2's alternative): the network predicts x0; ``eps = (x_t - a x0) / s``.
- ``"v"`` (PD section 4 and appendix D): the network predicts ``v = a eps - s x0``;
  ``x0 = a x_t - s v`` and ``eps = s x_t + a v``.

Whatever the parameterisation, the first G channels are trained with the Charbonnier loss to
their own target, and the sampler turns them into x0 (clipped) and eps. **Decision**: the learned
variance interpolant is clamped to [-1, 1] when sampling (iDDPM eq. 15 does not clamp it): outside
that range the log variance extrapolates beyond ``[log beta~_t, log beta_t]``, and an unclamped
x0-predicting model sampled NaN (issue 13's audit). The training loss leaves it unclamped, as
iDDPM does: a clamp there has zero gradient outside the range, and positions stuck at the maximum
variance for good (docs/decisions.md, "Variance interpolant: clamped when sampling only").

Schedule arrays are float64 NumPy, shape ``(T,)``; they are cast to the input tensor's dtype and
device when used. ``t`` arguments are indices into *this* schedule (``LongTensor (B,)``); the
network always receives the *original* training timestep ``timestep_map[t]``, so a respaced
schedule samples with a network trained on the full one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
import torch
from torch import Tensor

ModelFn = Callable[[Tensor, Tensor], Tensor]
Prediction = Literal["eps", "x0", "v"]
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v")


def _extract(arr: np.ndarray, t: Tensor, x: Tensor) -> Tensor:
    """``arr[t]`` as ``(B, 1, ..., 1)`` in ``x``'s dtype and device, to broadcast against ``x``."""
    out = torch.as_tensor(arr, dtype=x.dtype, device=x.device)[t.to(x.device)]
    return out.reshape(-1, *([1] * (x.ndim - 1)))


def _normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats."""
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )  # fmt: skip


def _mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the batch: ``(B, ...) -> (B,)``."""
    return x.mean(dim=tuple(range(1, x.ndim)))


class GaussianDiffusion:
    """A discrete Gaussian diffusion with a learned-range variance (iDDPM section 3.1).

    Parameters
    ----------
    betas
        ``(T,)`` noise variances of the forward process, each in (0, 1].
    timestep_map
        ``(T,)`` int, the original training timestep of each index of this schedule. ``None``
        means the identity (the base schedule).
    prediction
        What the network's first G channels predict: ``"eps"``, ``"x0"`` or ``"v"`` (module
        docstring).
    """

    def __init__(
        self,
        betas: np.ndarray,
        timestep_map: np.ndarray | None = None,
        prediction: Prediction = "eps",
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError(f"betas must be a non-empty 1-D array in (0, 1], got {betas!r}")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        if timestep_map is None:
            timestep_map = np.arange(self.num_timesteps)
        self.timestep_map = np.asarray(timestep_map, dtype=np.int64)
        if self.timestep_map.shape != betas.shape:
            raise ValueError(
                f"timestep_map must have shape {betas.shape}, got {self.timestep_map.shape}"
            )
        alphas = 1.0 - betas
        self.alphas_cumprod = acp = np.cumprod(alphas)  # alpha-bar_t (DDPM section 2)
        self.alphas_cumprod_prev = acp_prev = np.append(1.0, acp[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(acp)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - acp)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / acp)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / acp - 1.0)
        # iDDPM eq. 10: beta~_t = (1 - acp_{t-1}) / (1 - acp_t) beta_t (0 at t = 0).
        self.posterior_variance = post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
        # log beta~_0 = -inf: replace it by beta~_1 (iDDPM release); a 1-step schedule has none.
        first = post_var[1] if self.num_timesteps > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(np.append(first, post_var[1:]))
        # iDDPM eq. 11: mu~_t = coef1 x0 + coef2 x_t.
        self.posterior_mean_coef1 = betas * np.sqrt(acp_prev) / (1.0 - acp)
        self.posterior_mean_coef2 = (1.0 - acp_prev) * np.sqrt(alphas) / (1.0 - acp)

    @classmethod
    def linear(
        cls,
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        prediction: Prediction = "eps",
    ) -> GaussianDiffusion:
        """The linear beta schedule of DDPM (section 4): ``T = 1000``, ``1e-4 .. 0.02``."""
        betas = np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
        return cls(betas, prediction=prediction)

    def respace(self, steps: int) -> GaussianDiffusion:
        """Keep ``steps`` evenly spaced timesteps of this schedule (iDDPM section 4).

        Rule: indices ``round(linspace(0, T - 1, steps))`` (NumPy's round-half-even), so the
        first kept step is 0 and the last is ``T - 1``; this is improved-diffusion's
        ``space_timesteps(T, [steps])`` with one section. They are distinct for ``steps <= T``.
        ``steps = 1`` keeps ``T - 1`` alone (not 0), so its single step still starts from noise.
        Betas are recomputed so the kept ``alphas_cumprod`` are unchanged:
        ``beta_i = 1 - acp_i / acp_{i-1}``. ``timestep_map`` composes with this schedule's, so
        the network always receives original timesteps. ValueError unless ``steps`` is an int in
        ``[1, T]``.
        """
        ok = isinstance(steps, int | np.integer) and not isinstance(steps, bool)
        if not ok or not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps must be an int in [1, {self.num_timesteps}], got {steps!r}")
        if steps == 1:
            keep = np.array([self.num_timesteps - 1])
        else:
            keep = np.round(np.linspace(0, self.num_timesteps - 1, steps)).astype(np.int64)
        acp = self.alphas_cumprod[keep]
        betas = 1.0 - acp / np.append(1.0, acp[:-1])
        return GaussianDiffusion(betas, self.timestep_map[keep], self.prediction)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` (DDPM eq. 4): ``sqrt(acp_t) x0 + sqrt(1 - acp_t) noise``.

        ``x0``, ``noise``: ``(B, G, H, W)``; ``t``: ``(B,)`` long. Returns ``(B, G, H, W)``.
        """
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0) * x0
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def _model_timesteps(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.as_tensor(self.timestep_map, device=x.device)[t.to(x.device)]

    def to_x0_eps(self, pred: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """The network's parameterised output ``pred`` -> ``(x0, eps)`` (module docstring)."""
        if self.prediction == "eps":  # invert DDPM eq. 4
            x0 = (
                _extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - _extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * pred
            )
            return x0, pred
        a = _extract(self.sqrt_alphas_cumprod, t, x_t)
        s = _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        if self.prediction == "x0":
            return pred, (x_t - a * pred) / s
        return a * x_t - s * pred, s * x_t + a * pred  # v: PD eqs. in appendix D

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the network's first G channels are trained to output at ``t``."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        a = _extract(self.sqrt_alphas_cumprod, t, x0)
        s = _extract(self.sqrt_one_minus_alphas_cumprod, t, x0)
        return a * noise - s * x0

    def _p_from_output(
        self, out: Tensor, x_t: Tensor, t: Tensor, clip: bool, bound: bool = True
    ) -> dict[str, Tensor]:
        """Mean and variance of ``p(x_{t-1} | x_t)`` from the model output ``(B, 2G, H, W)``;
        ``bound`` clamps the variance interpolant (sampling; the training loss passes False)."""
        if out.shape[1] != 2 * x_t.shape[1] or out.shape[2:] != x_t.shape[2:]:
            raise ValueError(
                f"model output must be (B, 2G, ...) = {(x_t.shape[0], 2 * x_t.shape[1])} + "
                f"{tuple(x_t.shape[2:])}, got {tuple(out.shape)}"
            )
        pred, var = out.chunk(2, dim=1)
        # iDDPM eq. 15 (learned range): interpolate log variance between beta~_t and beta_t;
        # the interpolant is clamped to [0, 1] when sampling (module docstring).
        frac = (var + 1.0) / 2.0
        if bound:
            frac = frac.clamp(0.0, 1.0)
        min_log = _extract(self.posterior_log_variance_clipped, t, x_t)
        max_log = _extract(np.log(self.betas), t, x_t)
        log_variance = frac * max_log + (1.0 - frac) * min_log
        pred_x0, eps = self.to_x0_eps(pred, x_t, t)
        if clip:  # the release clips x0 to the data range [-1, 1]
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
        mean = self.q_posterior_mean(pred_x0, x_t, t)  # iDDPM eq. 11 with x0 predicted
        variance = torch.exp(log_variance)
        return dict(
            mean=mean, variance=variance, log_variance=log_variance, pred_x0=pred_x0, eps=eps
        )

    def q_posterior_mean(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Mean of ``q(x_{t-1} | x_t, x0)`` (iDDPM eq. 11); all tensors ``(B, G, H, W)``."""
        return (
            _extract(self.posterior_mean_coef1, t, x_t) * x0
            + _extract(self.posterior_mean_coef2, t, x_t) * x_t
        )

    def p_mean_variance(
        self, model_fn: ModelFn, x_t: Tensor, t: Tensor, clip: bool = True
    ) -> dict[str, Tensor]:
        """Evaluate the network once and return ``p(x_{t-1} | x_t)`` (iDDPM eqs. 13-15).

        ``model_fn(x_t, timesteps)`` receives original timesteps ``(B,)`` long and returns
        ``(B, 2G, H, W)``; ``x_t`` is ``(B, G, H, W)``; ``t`` ``(B,)`` long indexes this schedule;
        ``clip`` clamps the predicted x0 to [-1, 1] before the posterior mean. Returns a dict of
        ``mean``, ``variance``, ``log_variance``, ``pred_x0`` and ``eps``, each ``(B, G, H, W)``.
        """
        out = model_fn(x_t, self._model_timesteps(t, x_t))
        return self._p_from_output(out, x_t, t, clip)

    def training_losses(
        self, model_fn: ModelFn, x0: Tensor, t: Tensor, noise: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Hybrid loss: Charbonnier on the target plus the variational-bound term (iDDPM eq. 16).

        ``charbonnier = mean(sqrt((y - y_hat)^2 + 1e-6))`` over elements, ``y`` the
        parameterisation's target (:meth:`target`; epsilon in the paper). ``vb`` is
        ``L_{t-1} = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))`` (DDPM eq. 5) in bits, mean over
        elements, with y_hat detached so it trains the variance only (iDDPM section 3.1), and
        scaled by ``T / 1000`` (improved-diffusion's RESCALED_MSE; with lambda = 0.001 this is
        lambda * T * L_t). The posterior mean uses the unclipped x0, as in improved-diffusion.

        **Decision** at ``t = 0``: ``L_0`` is the continuous Gaussian negative log-likelihood of
        x0 under ``N(mean, variance)`` in bits, mean over elements, instead of improved-diffusion's
        discretised 8-bit decoder, because gene maps are continuous. Being a density it can be
        negative (the variance at t = 0 is ~1e-4).

        ``x0``: ``(B, G, H, W)`` clean maps scaled to [-1, 1]; ``t``: ``(B,)`` long indices into
        this schedule; ``noise``: ``(B, G, H, W)``, ``torch.randn_like(x0)`` if ``None``;
        ``model_fn`` as in :meth:`p_mean_variance`. Returns ``loss``, ``charbonnier``, ``vb``,
        each ``(B,)``.
        """
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        out = model_fn(x_t, self._model_timesteps(t, x_t))
        pred, var = out.chunk(2, dim=1)
        target = self.target(x0, noise, t)
        charbonnier = _mean_flat(torch.sqrt((target - pred) ** 2 + 1e-6))
        # Stop-gradient on the mean: the vb term only trains the variance.
        frozen = torch.cat([pred.detach(), var], dim=1)
        p = self._p_from_output(frozen, x_t, t, clip=False, bound=False)
        true_mean = self.q_posterior_mean(x0, x_t, t)
        true_log_var = _extract(self.posterior_log_variance_clipped, t, x_t)
        kl = _mean_flat(_normal_kl(true_mean, true_log_var, p["mean"], p["log_variance"]))
        sq = (x0 - p["mean"]) ** 2 / p["variance"]
        nll = _mean_flat(0.5 * (math.log(2 * math.pi) + p["log_variance"] + sq))
        vb = torch.where(t.to(x0.device) == 0, nll, kl) / math.log(2.0)
        vb = vb * (self.num_timesteps / 1000.0)
        return {"loss": charbonnier + vb, "charbonnier": charbonnier, "vb": vb}

    @staticmethod
    def _noise(shape: torch.Size, generator: torch.Generator, like: Tensor) -> Tensor:
        # Draw on the generator's device (a CUDA generator cannot fill a CPU tensor), then move.
        z = torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype)
        return z.to(like.device)

    def _loop(
        self,
        step: Callable[[Tensor, int], Tensor],
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device | str | None,
        progress: bool,
        x_T: Tensor | None,
    ) -> Tensor:
        """Run ``step(x, t)`` for ``t = T-1 .. 0`` from ``x_T`` (drawn if ``None``)."""
        device = torch.device(device) if device is not None else generator.device
        if x_T is None:
            x = self._noise(torch.Size(shape), generator, torch.empty(0, device=device))
        elif tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T must have shape {tuple(shape)}, got {tuple(x_T.shape)}")
        else:
            x = x_T.to(device)
        indices = range(self.num_timesteps - 1, -1, -1)
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices)
        for t in indices:
            x = step(x, t)
        return x

    @torch.no_grad()
    def p_sample_step(
        self, model_fn: ModelFn, x: Tensor, t: int, generator: torch.Generator, clip: bool = True
    ) -> Tensor:
        """One ancestral step ``x_t -> x_{t-1}`` (DDPM Algorithm 2); no noise at ``t = 0``."""
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        p = self.p_mean_variance(model_fn, x, tt, clip=clip)
        if t == 0:
            return p["mean"]
        return p["mean"] + torch.exp(0.5 * p["log_variance"]) * self._noise(x.shape, generator, x)

    @torch.no_grad()
    def p_sample_loop(
        self,
        model_fn: ModelFn,
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device | str | None = None,
        clip: bool = True,
        progress: bool = False,
        x_T: Tensor | None = None,
    ) -> Tensor:
        """Ancestral DDPM sampling through every timestep of this schedule.

        Starts from ``x_T`` ``(B, G, H, W)``, drawn float32 ``N(0, I)`` of ``shape`` when
        ``None``; all randomness comes from ``generator``, and ``device`` defaults to its device.
        Returns ``(B, G, H, W)``.
        """
        step = partial(self.p_sample_step, model_fn, generator=generator, clip=clip)
        return self._loop(step, shape, generator, device, progress, x_T)

    @torch.no_grad()
    def ddim_sample_step(
        self,
        model_fn: ModelFn,
        x: Tensor,
        t: int,
        generator: torch.Generator,
        eta: float = 0.0,
        clip: bool = True,
    ) -> Tensor:
        """One DDIM step ``x_t -> x_{t-1}`` (DDIM eq. 12, sigma from eq. 16 scaled by ``eta``)."""
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0 = self.p_mean_variance(model_fn, x, tt, clip=clip)["pred_x0"]
        # Re-derive eps from the (possibly clipped) x0 so the update stays consistent.
        eps = (_extract(self.sqrt_recip_alphas_cumprod, tt, x) * x - x0) / _extract(
            self.sqrt_recipm1_alphas_cumprod, tt, x
        )
        acp = _extract(self.alphas_cumprod, tt, x)
        acp_prev = _extract(self.alphas_cumprod_prev, tt, x)
        sigma = eta * torch.sqrt((1 - acp_prev) / (1 - acp) * (1 - acp / acp_prev))
        x_prev = torch.sqrt(acp_prev) * x0 + torch.sqrt((1 - acp_prev - sigma**2).clamp(0)) * eps
        if t > 0 and eta > 0:
            x_prev = x_prev + sigma * self._noise(x.shape, generator, x)
        return x_prev

    @torch.no_grad()
    def ddim_sample_loop(
        self,
        model_fn: ModelFn,
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device | str | None = None,
        eta: float = 0.0,
        clip: bool = True,
        progress: bool = False,
        x_T: Tensor | None = None,
    ) -> Tensor:
        """DDIM sampling through every timestep of this schedule, deterministic given ``x_T``
        when ``eta = 0``. Arguments as in :meth:`p_sample_loop`. Returns ``(B, G, H, W)``."""
        step = partial(self.ddim_sample_step, model_fn, generator=generator, eta=eta, clip=clip)
        return self._loop(step, shape, generator, device, progress, x_T)

    def sample(
        self,
        model_fn: ModelFn,
        shape: tuple[int, ...],
        generator: torch.Generator,
        steps: int = 20,
        method: Literal["ddpm", "ddim"] = "ddpm",
        **kwargs: object,
    ) -> Tensor:
        """Respace to ``steps`` and sample with ``method`` (the release: 20-step ancestral DDPM).

        ``kwargs`` go to :meth:`p_sample_loop` or :meth:`ddim_sample_loop` (``device``, ``clip``,
        ``progress``, ``x_T``; ``eta`` for DDIM). Returns ``(B, G, H, W)``.
        """
        if method not in ("ddpm", "ddim"):
            raise ValueError(f"method must be 'ddpm' or 'ddim', got {method!r}")
        spaced = self.respace(steps)
        loop = spaced.p_sample_loop if method == "ddpm" else spaced.ddim_sample_loop
        return loop(model_fn, shape, generator, **kwargs)
