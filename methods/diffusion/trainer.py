"""Shared training and sampling machinery of ``diffst`` and its two same-budget baselines.

:class:`UNetTrainer` holds everything that does not depend on the objective: the config and
presets (``config.py``), the model scale, the residual base, the dihedral augmentation, the
training loop with AdamW, EMA and resumable checkpoints, and batched inference. A subclass says
only how its network is built (:meth:`UNetTrainer._network`), how wide its input is
(:meth:`UNetTrainer.input_width`), which extra inputs it reads (:meth:`UNetTrainer._extra_inputs`,
e.g. diffst's histology) and what the loss of one batch is (:meth:`UNetTrainer._loss`);
:class:`DiffusionTrainer` adds the Gaussian diffusion (hybrid loss, respaced DDPM / DDIM samplers,
K draws per input in one batch) with one more hook, :meth:`DiffusionTrainer._denoise`, the network
call. Users: ``diffst`` (``methods/diffst``), the U-Net regressor (``methods/unet_regressor.py``)
and plain conditional diffusion (``methods/sr3.py``), so the three differ only in network and
objective, never in data handling or training budget.

The residual formulation (``residual=True``; SRDiff, Li et al., Neurocomputing 2022; ResShift,
Yue et al., NeurIPS 2023, generates the residual too, with its own shift schedule that is not
taken here): ``base`` is the bicubic upsampling of the gap-filled LR map
(``methods/interpolation.py``, the ``bicubic`` baseline) on the model scale, and the model
generates (or regresses) ``(x0 - base) / c``; the prediction is ``base + c * residual``, clipped to
the model scale's [-1, 1]. Outside tissue the target is ``base`` itself (residual 0), so no
capacity goes to the tissue outline. A zero network therefore returns the bicubic interpolation.

**Decision**: ``c`` is the residual's standard deviation over the in-tissue positions of the
training maps (LDM, Rombach et al., CVPR 2022, section 4.3.2, rescales its latents to unit
variance the same way), so the residual enters the diffusion at the unit scale its noise schedule
was made for. Unscaled, the residual's std is well below 1 on every dataset, so every noise level
hides more of it than the schedule intends, and diffst learned less on validation
(docs/decisions.md, "Residual scaled to unit variance").

**Decision**: the residual formulation's draws are not clipped at each sampling step (the release
clips x0 to the data range at every step, and so does the HR formulation here); the final map is
clamped once (:meth:`_finish`). Counts are mostly zeros, so a per-step clip at the data range's
floor cuts one side of the draws only and shifts the chain (measured on validation:
docs/decisions.md, "Residual draws: clamped once, not at every step").
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import os
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from methods.contract import (
    Method,
    Preset,
    Sample,
    StochasticMethod,
    device_preset,
    load_module_states,
    module_states,
    stack,
)
from methods.diffusion.config import DiffusionConfig, auto_channels, make_config
from methods.diffusion.memo import Memo
from methods.interpolation import fill_empty, upsample

BATCH = 64  # maps per network call at inference (N * K is cut into chunks of this size)
Batch = dict[str, Tensor]


def dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate the last two axes by ``k`` quarter turns, then optionally flip the columns."""
    out = np.rot90(a, k, axes=(-2, -1))
    return np.ascontiguousarray(out[..., ::-1] if flip else out)


class UNetTrainer(Method):
    """A U-Net method trained on the model scale with diffst's config (see the module docstring).

    Keyword overrides are :class:`~methods.diffusion.config.DiffusionConfig`
    fields (unknown names raise TypeError); ``fixed`` are config values a subclass pins
    (overriding one raises TypeError).
    """

    checkpoint: ClassVar[str] = "unet_trainer.pt"  # file name inside ``workdir``
    fixed: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, preset: Preset = "default", seed: int = 0, **overrides: Any) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = self.device.type == "cuda"
        super().__init__(preset=device_preset(preset, on_gpu), seed=seed)
        pinned = sorted(set(overrides) & set(self.fixed))
        if pinned:
            raise TypeError(
                f"{type(self).__name__} does not take {', '.join(pinned)}: it has none of those "
                f"parts (fixed to {', '.join(f'{k}={self.fixed[k]}' for k in pinned)})"
            )
        self.overrides = dict(overrides)
        self.config: DiffusionConfig = make_config(self.preset, on_gpu, **overrides, **self.fixed)
        self.history: list[float] = []

    def params(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.config.to_dict()}

    def label_params(self) -> dict[str, Any]:
        """Preset, overrides and always the parameterisation, so variants never share a name."""
        cfg = self.config
        variant = {"prediction": cfg.prediction, "residual": cfg.residual}
        return {"preset": self.preset, **variant, **self.overrides}

    @classmethod
    def input_width(cls, genes: int) -> int:
        """Channels of the network's first layer input for ``genes`` genes (x_t: G)."""
        return genes

    def width(self, genes: int) -> int:
        """The U-Net's base width for ``genes`` genes: the config's, or with ``channels=None``
        the narrowest that passes the input (``config.auto_channels``)."""
        channels = self.config.channels
        return auto_channels(self.input_width(genes)) if channels is None else channels

    # --- hooks ------------------------------------------------------------------------------
    def _network(self, sample: Sample, totals: Tensor) -> nn.Module:
        """A fresh network for ``sample``'s shapes (``totals``: (G,) training HR gene sums)."""
        raise NotImplementedError

    def _loss(self, batch: Batch, generator: torch.Generator, ratio: float) -> Tensor:
        """Scalar training loss of ``batch`` (``_encode`` output rows, with ``x0``); random
        draws come from ``generator`` (CPU); ``ratio`` is the cell-tile curriculum's fraction."""
        raise NotImplementedError

    def _extra_inputs(self, samples: Sequence[Sample]) -> Batch:
        """Inputs beyond the LR map, one row per sample (diffst: tissue image and cell tiles)."""
        return {}

    def _ratio(self, step: int) -> float:
        """The cell-tile curriculum's fraction at training ``step`` (1.0: no curriculum)."""
        return 1.0

    # --- inputs -----------------------------------------------------------------------------
    def _encode(self, samples: Sequence[Sample]) -> Batch:
        """Model-scale tensors: lr (N, G, h, w), x0 (N, G, H, W) when the samples carry ``hr``,
        base (N, G, H, W) with ``residual``, and :meth:`_extra_inputs`."""
        lr, lr_mask = stack(samples, "lr"), stack(samples, "lr_mask")
        out = {"lr": self._to_model(lr, lr_mask), **self._extra_inputs(samples)}
        if samples[0].hr is not None:
            out["x0"] = self._to_model(stack(samples, "hr"), stack(samples, "hr_mask"))
        if self.config.residual:
            filled = np.stack([fill_empty(s.lr, s.lr_mask) for s in samples])
            up = np.clip(upsample(filled, samples[0].scale, "bicubic"), 0.0, None)
            out["base"] = self._to_model(up, np.ones(up.shape[:1] + up.shape[2:], dtype=bool))
            if "x0" in out:  # outside tissue the target is the base: residual 0
                inside = torch.from_numpy(stack(samples, "hr_mask"))[:, None]
                out["x0"] = torch.where(inside, out["x0"], out["base"])
        return {k: v.to(self.device) for k, v in out.items()}

    def _target(self, batch: Batch) -> Tensor:
        """What the model generates or regresses: x0, or ``(x0 - base) / c`` with ``residual``."""
        if not self.config.residual:
            return batch["x0"]
        return (batch["x0"] - batch["base"]) / self.residual_std

    def _finish(self, batch: Batch, y: Tensor) -> Tensor:
        """Model output ``y`` back to an x0 map: ``base + c y`` with ``residual``, clipped."""
        if not self.config.residual:
            return y.clamp(-1.0, 1.0)
        return (batch["base"] + self.residual_std * y).clamp(-1.0, 1.0)

    def _to_model(self, values: np.ndarray, mask: np.ndarray) -> Tensor:
        """(N, G, h, w) split scale -> model scale ``2 v / r_g - 1`` in [-1, 1] (r_g: the gene's
        maximum over the training HR maps); outside tissue -1 (``outside="floor"``, the
        split's 0) or the gene's training mean (``outside="mean"``)."""
        r = self.scale.cpu().numpy()[None, :, None, None]
        mu = self.mean.cpu().numpy()[None, :, None, None]
        x = np.where(mask[:, None], values, mu) * (2.0 / r) - 1.0
        if self.config.outside == "floor":
            x = np.where(mask[:, None], x, -1.0)
        return torch.from_numpy(np.clip(x, -1.0, 1.0)).float()

    def _from_model(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`_to_model`, ``r_g (x + 1) / 2`` (non-negative as x >= -1)."""
        return (x + 1.0) * 0.5 * self.scale.to(x.device)[None, :, None, None]

    def _augmented(self, train: Sequence[Sample]) -> list[Sample]:
        """The 8 symmetries of the square (4 flips if not square) of every training sample."""
        if not self.config.augment:
            return list(train)
        h, w = train[0].hr_shape
        maps = ("lr", "lr_mask", "hr_mask", "image", "hr")  # turned and flipped together
        return [
            dataclasses.replace(s, **{f: dihedral(getattr(s, f), k, flip) for f in maps})
            for s in train
            for k in (range(4) if h == w else (0, 2))
            for flip in (False, True)
        ]

    def _build(self, train: Sequence[Sample]) -> None:
        """Scale statistics, network (seeded), EMA copy, optimiser and the run's signature."""
        s = train[0]
        self.config = dataclasses.replace(self.config, channels=self.width(len(s.genes)))
        cfg = self.config
        hr = stack(train, "hr").astype(np.float64)  # (N, G, H, W)
        tissue = hr.transpose(1, 0, 2, 3)[:, stack(train, "hr_mask")]  # (G, positions)
        self.scale = torch.from_numpy(np.maximum(tissue.max(axis=1), 1e-6)).float()
        self.mean = torch.from_numpy(tissue.mean(axis=1)).float()
        totals = torch.from_numpy(hr.sum(axis=(0, 2, 3))).float()  # training maps only
        torch.manual_seed(self.seed)
        self.net = self._network(s, totals).to(self.device)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        # the EMA's (ema, net) tensor pairs, listed once: loading a state copies in place
        self._ema_params = (list(self.ema.parameters()), list(self.net.parameters()))
        self._ema_buffers = (list(self.ema.buffers()), list(self.net.buffers()))
        # fused: one kernel for all parameters' updates, not a loop over them
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True
        )
        self.residual_std = 1.0  # c of the module docstring
        if cfg.residual:
            enc = self._encode(train)
            inside = torch.from_numpy(stack(train, "hr_mask"))[:, None].to(enc["x0"].device)
            inside = inside.expand_as(enc["x0"])
            self.residual_std = float((enc["x0"] - enc["base"])[inside].std().clamp_min(1e-3))
        digest = hashlib.sha256(repr((s.genes, cfg.to_dict(), self.seed)).encode())
        digest.update(np.ascontiguousarray(hr, dtype=np.float32).tobytes())
        self.signature = digest.hexdigest()

    # --- training ---------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast of the network for training and sampling with ``amp``
        (config.py); a no-op otherwise. Losses and the sampler's update stay float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp)

    def fit(self, train: Sequence[Sample]) -> None:
        """Train on the (augmented) training samples; resumes from ``workdir`` when possible.
        Every step is reported (:meth:`report`, phase "train"); the runner may predict with the
        EMA weights there, which changes no training draw (those come from ``generator``)."""
        cfg = self.config
        self._fit_started = time.perf_counter()
        self._build(train)
        data = self._encode(self._augmented(train))
        generator = torch.Generator().manual_seed(self.seed)
        start = self._load(generator)
        n = data["x0"].shape[0]
        for step in range(start, cfg.iterations):
            idx = torch.randint(0, n, (cfg.batch_size,), generator=generator)
            batch = {k: v[idx.to(self.device)] for k, v in data.items()}
            loss = self._loss(batch, generator, self._ratio(step))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self._update_ema()
            self.history.append(float(loss.detach()))
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.iterations:
                self._save(step + 1, generator)
            if self.report("train", step + 1, cfg.iterations, self.history[-1]):
                break  # early stopping: the runner restores the best snapshot()
        self.ema.eval()

    def snapshot(self) -> object | None:
        """Network and EMA weights now (the EMA is what predictions use); None before fit."""
        if not hasattr(self, "ema"):
            return None
        return module_states(net=self.net, ema=self.ema)

    def restore(self, state: object) -> None:
        load_module_states(state, net=self.net, ema=self.ema)  # type: ignore[arg-type]

    @torch.no_grad()
    def _update_ema(self) -> None:
        # ema <- d ema + (1 - d) net, all parameters in one call
        torch._foreach_lerp_(*self._ema_params, 1.0 - self.config.ema_decay)
        if self._ema_buffers[0]:
            torch._foreach_copy_(*self._ema_buffers)

    # --- checkpoints ------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        return None if self.workdir is None else Path(self.workdir) / self.checkpoint

    def _save(self, step: int, generator: torch.Generator) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "signature": self.signature,
            "step": step,
            "config": self.config.to_dict(),
            "model": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": generator.get_state(),
            "history": torch.tensor(self.history),
            # fit() seconds up to this checkpoint, over every run that trained towards it
            "fit_seconds": self.resumed_fit_s + time.perf_counter() - self._fit_started,
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _load(self, generator: torch.Generator) -> int:
        """Restore a matching checkpoint; returns the step to continue from (0 without one)."""
        path = self._checkpoint_path()
        if path is None or not path.is_file():
            return 0
        try:  # weights_only: tensors and plain containers only, never arbitrary objects
            state = torch.load(path, map_location=self.device, weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(
                f"{path}: holds objects other than tensors and plain containers; refusing to "
                "unpickle it (delete the file to retrain)"
            ) from None
        if state.get("signature") != self.signature:
            return 0  # another config or other training data: start afresh (it is overwritten)
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["rng"].cpu())
        self.history = state["history"].tolist()
        self.resumed_fit_s = float(state.get("fit_seconds", 0.0))
        return int(state["step"])

    # --- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def _infer(
        self,
        inputs: Batch,
        hw: tuple[int, int],
        k: int,
        run: Callable[[int, Batch, tuple[int, ...]], Tensor],
    ) -> np.ndarray:
        """``run(lo, part, shape)`` -> model-scale maps ``shape = (B, G, H, W)`` on the chunk of
        rows from ``lo`` of the encoded ``inputs`` (:meth:`_encode`, N rows) repeated ``k``
        times each; returns (N, K, G, H, W) float32 log1p-CP10k on the HR grid ``hw``."""
        rows = {key: v.repeat_interleave(k, dim=0) for key, v in inputs.items()}
        n, g = inputs["lr"].shape[:2]
        # each row's input, counted from the chunk's first (sorted): the network may share the
        # work that depends on the input only among a chunk's rows (DiffST)
        rows["input"] = torch.arange(n, device=self.device).repeat_interleave(k)
        self.ema.eval()
        chunks = []
        for lo in range(0, n * k, BATCH):  # rows (N K, ...) in chunks of BATCH
            part = {key: v[lo : lo + BATCH] for key, v in rows.items()}
            part["input"] = part["input"] - part["input"][0]
            chunks.append(run(lo, part, (part["lr"].shape[0], g, *hw)))
        values = self._from_model(torch.cat(chunks).float())
        return values.reshape(n, k, g, *hw).cpu().numpy().astype(np.float32)


class DiffusionTrainer(UNetTrainer, StochasticMethod):
    """A :class:`UNetTrainer` whose network denoises: hybrid loss and K-sample drawing."""

    def _denoise(
        self,
        net: nn.Module,
        x_t: Tensor,
        t: Tensor,
        batch: Batch,
        ratio: float,
        memo: Memo | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``net``'s ``(B, 2G, H, W)`` epsilon and v for ``x_t`` at timesteps ``t`` (B,),
        conditioned on ``batch`` rows; and a scalar auxiliary loss (0 when there is none).
        ``memo`` (sampling only): where the network may keep what it computes from the
        conditioning inputs and ``t`` alone for the next batch of draws (:mod:`.memo`)."""
        raise NotImplementedError

    def _build(self, train: Sequence[Sample]) -> None:
        from methods.diffusion.schedule import GaussianDiffusion

        super()._build(train)
        cfg = self.config
        self.diffusion = GaussianDiffusion.linear(cfg.timesteps, prediction=cfg.prediction)

    def _loss(self, batch: Batch, generator: torch.Generator, ratio: float) -> Tensor:
        """Hybrid loss (schedule.py) at uniform timesteps + ``disentangle_weight`` x aux."""
        cfg, x0 = self.config, self._target(batch)
        t = torch.randint(0, cfg.timesteps, (x0.shape[0],), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        aux: dict[str, Tensor] = {}

        def model_fn(x: Tensor, tt: Tensor) -> Tensor:
            with self._autocast():
                out, aux["loss"] = self._denoise(self.net, x, tt, batch, ratio)
            return out.float()

        losses = self.diffusion.training_losses(
            model_fn, x0, t.to(self.device), noise.to(self.device)
        )
        return losses["loss"].mean() + cfg.disentangle_weight * aux["loss"]

    def sample(self, samples: Sequence[Sample], k: int, seed: int) -> np.ndarray:
        """``k`` draws per input in one batched pass, (N, K, G, H, W) float32, log1p-CP10k."""
        with contextlib.closing(self.sample_batches(samples, k, [seed])) as batches:
            return next(batches)

    @torch.no_grad()
    def sample_batches(
        self, samples: Sequence[Sample], k: int, seeds: Iterable[int]
    ) -> Iterator[np.ndarray]:
        """:meth:`sample` for each of ``seeds``, encoding the inputs once and sharing one
        :class:`~methods.diffusion.memo.Memo` across the batches (the same chunks of inputs
        at the same timesteps): every batch is the draws ``sample`` gives for its seed."""
        inputs, hw, memo = self._encode(samples), samples[0].hr_shape, Memo()
        for seed in seeds:
            yield self._draws(inputs, hw, k, seed, memo)

    def _draws(
        self, inputs: Batch, hw: tuple[int, int], k: int, seed: int, memo: Memo
    ) -> np.ndarray:
        """One batch of ``k`` draws of each encoded input from ``seed`` (see :meth:`sample`);
        each network call is reported ("sample") out of the batch's calls."""
        cfg = self.config
        generator = torch.Generator(self.device).manual_seed(seed)
        calls = {"done": 0, "total": cfg.steps * math.ceil(inputs["lr"].shape[0] * k / BATCH)}

        def run(lo: int, part: Batch, shape: tuple[int, ...]) -> Tensor:
            chunk = memo.chunk(lo)

            def model_fn(x: Tensor, tt: Tensor) -> Tensor:
                with self._autocast():
                    out = self._denoise(self.ema, x, tt, part, 1.0, chunk)[0]
                calls["done"] += 1
                self.report("sample", calls["done"], calls["total"])
                return out.float()

            # x0 clipped to the data range at every step on the HR map (the release), never on
            # the residual (module docstring); _finish clamps the final map either way
            y = self.diffusion.sample(
                model_fn,
                shape,
                generator,
                steps=cfg.steps,
                method=cfg.sampler,
                device=self.device,
                clip=not cfg.residual,
            )
            return self._finish(part, y)

        return self._infer(inputs, hw, k, run)
