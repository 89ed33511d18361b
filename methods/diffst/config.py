"""diffst hyperparameters and presets.

``paper`` keeps the published sizes and training budget (diffst.md): 128 base channels, channel
multipliers (1, 1, 1), one residual block per level, batch 8 (4 per GPU on 2 GPUs), 24,751
iterations, AdamW lr 1e-4 / weight decay 1e-5, EMA 0.9999, 20 respaced DDPM steps, 16 x 16 cell
tiles of 16 px. ``quick`` shrinks channels, tiles and iterations to train in minutes on 2 CPU
cores, and so raises the learning rate to 5e-4 and lowers the EMA decay to 0.99 (an EMA of
0.9999 averages over ~10,000 steps: after 1,000 it would still hold the random initial weights);
every other choice is the paper's. ``default`` is ``paper`` on a GPU and ``quick`` on a CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class DiffSTConfig:
    """Every hyperparameter of one diffst run (all JSON-serialisable)."""

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 1)
    num_res_blocks: int = 1
    groups: int = 32
    tile_grid: int = 16
    tile_px: int = 16
    iterations: int = 24_751
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    ema_decay: float = 0.9999
    disentangle_weight: float = 0.01
    timesteps: int = 1000
    steps: int = 20  # sampling steps (respaced)
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    augment: bool = True  # flips and 90-degree rotations of map, LR and image together
    amp: bool = True  # bfloat16 autocast for training on CUDA only; sampling stays float32
    checkpoint_every: int = 500
    # ablation switches, one per contribution
    graph: bool = True
    cell_attention: bool = True
    disentangle: bool = True
    modulation: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["channel_mult"] = list(self.channel_mult)
        return out


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # about 90 s of training on 2 CPU cores for her2st (24 x 24 HR, 50 genes)
    "quick": {
        "channels": 32,
        "groups": 8,
        "tile_grid": 12,
        "tile_px": 8,
        "iterations": 1000,
        "batch_size": 4,
        "learning_rate": 5e-4,
        "ema_decay": 0.99,
        "checkpoint_every": 250,
    },
}


def make_config(preset: str, on_gpu: bool, **overrides: Any) -> DiffSTConfig:
    """The preset's config with ``overrides`` applied; unknown names raise TypeError."""
    if preset == "default":
        preset = "paper" if on_gpu else "quick"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from default, {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(DiffSTConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(
            f"unknown diffst parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    values = {**PRESETS[preset], **overrides}
    if "channel_mult" in values:
        values["channel_mult"] = tuple(values["channel_mult"])
    return DiffSTConfig(**values)
