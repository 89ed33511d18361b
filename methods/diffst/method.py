"""``diffst``: the cross-modal conditional diffusion model (Wang, Huang, Price & Li, MICCAI 2024).

Wang, Huang, Price, Li, "Cross-modal Diffusion Modelling for Super-resolved Spatial
Transcriptomics", MICCAI 2024 (arXiv 2404.12973). The network is :class:`DiffSTNet`
(``network.py``: U-Net with x_t, LR and image encoders, gene graph, cell-to-tissue attention,
disentangling, adaptive modulation), the diffusion is :class:`GaussianDiffusion`
(``schedule.py``), the histology inputs come from ``histology.py``, the hyperparameters from
``config.py``.

Deviations from the released code, each deliberate:

- Scale: the release min-max scales every (region, gene) map to [0, 1] using the target's own
  range. Here the split's scale is used (log1p-CP10k) and mapped to the diffusion's [-1, 1] by
  the per-gene maximum over the TRAINING HR maps, ``x = 2 v / r_g - 1`` (LR maps the same way), so
  no score depends on the target's range. Positions outside tissue (0 in the split) are set to
  the gene's training mean instead of -1: otherwise the tissue outline dominates the loss and a
  regression through the same network learns the in-tissue pattern about 3x slower (measured on
  her2st, test PCC 0.09 vs 0.28 after 300 steps). Outside tissue is never scored.
- The release concatenates a constant channel to x_t that its first conv does not accept (it
  crashes): x_t is fed alone.
- The release hard-codes the cell-tile ratio to 1; the 0.25 / 0.5 / 1.0 curriculum is implemented
  (ratio 1 at sampling).
- The release scores one sample per region; here K samples are drawn per input in one batch and
  the point prediction is their mean; the runner scores diversity.
- Training data are a handful of sections, so the 8 symmetries of the square (flips and 90-degree
  rotations of map, LR and image together; 4 flips when the grid is not square) are used as
  augmentation (``augment``), precomputed once.
- The variational-bound term's t = 0 case uses a continuous Gaussian likelihood (see schedule.py).
- ``quick`` preset: smaller sizes, learning rate 5e-4 and EMA 0.99 (config.py says why).
- Mixed precision (bfloat16 autocast) is used for training on CUDA only; sampling runs in float32
  so sampled values do not depend on the precision mode.

Checkpoints (``<workdir>/diffst.pt``) hold model, EMA, optimiser, step and RNG state; they are
written atomically every ``checkpoint_every`` steps and loaded with ``weights_only=True``. A run
with the same config and training data resumes from one (or skips training when it is complete).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from methods.contract import Preset, Sample, StochasticMethod, stack
from methods.diffst import histology
from methods.diffst.config import DiffSTConfig, make_config

CHECKPOINT = "diffst.pt"
_SAMPLE_BATCH = 64  # maps per sampler call (N * K is cut into chunks of this size)


def dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate the last two axes by ``k`` quarter turns, then optionally flip the columns."""
    out = np.rot90(a, k, axes=(-2, -1))
    return np.ascontiguousarray(out[..., ::-1] if flip else out)


class DiffST(StochasticMethod):
    """Cross-modal conditional diffusion for ST super-resolution (see the module docstring)."""

    def __init__(self, *, preset: Preset = "default", seed: int = 0, **overrides: Any) -> None:
        super().__init__(preset=preset, seed=seed)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.overrides = dict(overrides)
        self.config: DiffSTConfig = make_config(preset, self.device.type == "cuda", **overrides)
        self.history: list[float] = []

    def params(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.config.to_dict()}

    def label_params(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.overrides}

    # --- inputs -----------------------------------------------------------------------------
    def _encode(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """Model-scale tensors: lr (N, G, h, w), image (N, C, H, W), tiles (N, T, C, p, p)."""
        cfg = self.config
        h, w = samples[0].hr_shape
        out = {
            "lr": self._to_model(stack(samples, "lr"), stack(samples, "lr_mask")),
            "image": torch.stack([histology.tissue_image(s.image, (h, w)) for s in samples]),
            "tiles": torch.stack(
                [histology.cell_tiles(s.image, cfg.tile_grid, cfg.tile_px) for s in samples]
            ),
        }
        if samples[0].hr is not None:
            out["x0"] = self._to_model(stack(samples, "hr"), stack(samples, "hr_mask"))
        return {k: v.to(self.device) for k, v in out.items()}

    def _to_model(self, values: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """(N, G, h, w) log1p-CP10k -> model scale ``2 v / r_g - 1`` in [-1, 1] (r_g: the gene's
        maximum over the training HR maps); outside tissue the gene's training mean, so the
        network spends no capacity on the tissue outline (which the mask already gives)."""
        r = self.scale.cpu().numpy()[None, :, None, None]
        mu = self.mean.cpu().numpy()[None, :, None, None]
        x = np.where(mask[:, None], values, mu) * (2.0 / r) - 1.0
        return torch.from_numpy(np.clip(x, -1.0, 1.0)).float()

    def _from_model(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_to_model`, ``r_g (x + 1) / 2`` (non-negative as x >= -1)."""
        return (x + 1.0) * 0.5 * self.scale.to(x.device)[None, :, None, None]

    def _augmented(self, train: Sequence[Sample]) -> list[Sample]:
        if not self.config.augment:
            return list(train)
        h, w = train[0].hr_shape
        turns = range(4) if h == w else (0, 2)
        out = []
        for s in train:
            for k in turns:
                for flip in (False, True):
                    out.append(
                        Sample(
                            region=s.region,
                            genes=s.genes,
                            scale=s.scale,
                            lr=dihedral(s.lr, k, flip),
                            lr_mask=dihedral(s.lr_mask, k, flip),
                            hr_mask=dihedral(s.hr_mask, k, flip),
                            image=dihedral(s.image, k, flip),
                            hr=dihedral(s.hr, k, flip),
                        )
                    )
        return out

    def _build(self, train: Sequence[Sample]) -> None:
        from methods.diffst.network import DiffSTNet
        from methods.diffst.schedule import GaussianDiffusion

        cfg, s = self.config, train[0]
        hr = stack(train, "hr").astype(np.float64)  # (N, G, H, W)
        tissue = hr.transpose(1, 0, 2, 3)[:, stack(train, "hr_mask")]  # (G, positions)
        self.scale = torch.from_numpy(np.maximum(tissue.max(axis=1), 1e-6)).float()
        self.mean = torch.from_numpy(tissue.mean(axis=1)).float()
        totals = torch.from_numpy(hr.sum(axis=(0, 2, 3))).float()  # S_g, training maps only
        torch.manual_seed(self.seed)
        self.net = DiffSTNet(
            genes=len(s.genes),
            image_channels=s.image.shape[0],
            channels=cfg.channels,
            channel_mult=cfg.channel_mult,
            num_res_blocks=cfg.num_res_blocks,
            groups=cfg.groups,
            lr_hw=s.lr.shape[-2:],
            tile_px=cfg.tile_px,
            graph=cfg.graph,
            cell_attention=cfg.cell_attention,
            disentangle=cfg.disentangle,
            modulation=cfg.modulation,
        ).to(self.device)
        if cfg.graph:
            self.net.set_gene_totals(totals.to(self.device))
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.diffusion = GaussianDiffusion.linear(cfg.timesteps)
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        digest = hashlib.sha256(repr((s.genes, cfg.to_dict(), self.seed)).encode())
        digest.update(np.ascontiguousarray(hr, dtype=np.float32).tobytes())
        self.signature = digest.hexdigest()

    # --- training ---------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample]) -> None:
        """Train on the (augmented) training samples; resumes from ``workdir`` when possible."""
        from tqdm import tqdm

        from methods.diffst.attention import curriculum_ratio

        cfg = self.config
        self._build(train)
        data = self._encode(self._augmented(train))
        generator = torch.Generator().manual_seed(self.seed)
        start = self._load(generator)
        n = data["x0"].shape[0]
        autocast = cfg.amp and self.device.type == "cuda"
        bar = tqdm(range(start, cfg.iterations), desc="diffst train", leave=False, disable=None)
        for step in bar:
            idx = torch.randint(0, n, (cfg.batch_size,), generator=generator)
            t = torch.randint(0, cfg.timesteps, (cfg.batch_size,), generator=generator)
            noise = torch.randn(data["x0"][idx].shape, generator=generator)
            ratio = curriculum_ratio(step, cfg.iterations) if cfg.cell_attention else 1.0
            batch = {k: v[idx.to(self.device)] for k, v in data.items()}
            aux: dict[str, torch.Tensor] = {}

            def model_fn(
                x: torch.Tensor,
                tt: torch.Tensor,
                batch: dict = batch,
                aux: dict = aux,
                ratio: float = ratio,
            ) -> torch.Tensor:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    out, aux["disentangle"] = self.net(
                        x, tt, batch["lr"], batch["image"], batch["tiles"], ratio=ratio
                    )
                return out.float()

            losses = self.diffusion.training_losses(
                model_fn, batch["x0"], t.to(self.device), noise.to(self.device)
            )
            loss = losses["loss"].mean() + cfg.disentangle_weight * aux["disentangle"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self._update_ema()
            self.history.append(float(loss.detach()))
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(self.history[-20:]):.4f}")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.iterations:
                self._save(step + 1, generator)
        self.ema.eval()

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.config.ema_decay
        for p_ema, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            p_ema.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for b_ema, b in zip(self.ema.buffers(), self.net.buffers(), strict=True):
            b_ema.copy_(b)

    # --- checkpoints ------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        return None if self.workdir is None else Path(self.workdir) / CHECKPOINT

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
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _load(self, generator: torch.Generator) -> int:
        """Restore a matching checkpoint; returns the step to continue from (0 without one)."""
        path = self._checkpoint_path()
        if path is None or not path.is_file():
            return 0
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("signature") != self.signature:
            return 0  # another config or other training data: start afresh (it is overwritten)
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["rng"].cpu())
        self.history = state["history"].tolist()
        return int(state["step"])

    # --- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, samples: Sequence[Sample], k: int, seed: int) -> np.ndarray:
        """``k`` draws per input in one batched pass, (N, K, G, H, W) float32, log1p-CP10k."""
        cfg = self.config
        data = self._encode(samples)
        n, (h, w), g = len(samples), samples[0].hr_shape, len(samples[0].genes)
        cond = {key: v.repeat_interleave(k, dim=0) for key, v in data.items()}  # (N K, ...)
        generator = torch.Generator(self.device).manual_seed(seed)
        self.ema.eval()
        chunks = []
        for lo in range(0, n * k, _SAMPLE_BATCH):
            part = {key: v[lo : lo + _SAMPLE_BATCH] for key, v in cond.items()}

            def model_fn(x: torch.Tensor, tt: torch.Tensor, part: dict = part) -> torch.Tensor:
                return self.ema(x, tt, part["lr"], part["image"], part["tiles"], ratio=1.0)[0]

            shape = (part["lr"].shape[0], g, h, w)
            chunks.append(
                self.diffusion.sample(
                    model_fn,
                    shape,
                    generator,
                    steps=cfg.steps,
                    method=cfg.sampler,
                    device=self.device,
                )
            )
        values = self._from_model(torch.cat(chunks).float())
        return values.reshape(n, k, g, h, w).cpu().numpy().astype(np.float32)
