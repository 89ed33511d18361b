"""Hyperparameters and presets of the diffusion trainer (``diffst``, ``sr3`` and ``unet``).

``paper`` keeps the published sizes and training budget (diffst.md): 128 base channels, channel
multipliers (1, 1, 1), one residual block per level, batch 8 (4 per GPU on 2 GPUs), 24,751
iterations, AdamW lr 1e-4 / weight decay 1e-5, EMA 0.9999, 20 respaced DDPM steps, 16 x 16 cell
tiles of 16 px. ``quick`` shrinks channels, tiles and the budget to train in minutes on 2 CPU
cores: 4,000 training samples as batch 8 for 500 steps, at learning rate 7e-4 and EMA decay 0.98
(an EMA of 0.9999 averages over ~10,000 steps: after 500 it would still hold the random initial
weights; 0.98's horizon 1 / (1 - d) is 50 steps, 400 samples). ``diffst``, ``sr3`` and ``unet``
share it (docs/decisions.md, "Quick diffusion preset: minutes on two CPU cores"); every other
choice is the paper's. ``default`` is ``paper`` on a GPU and ``quick`` on a CPU.

Width: the noisy map x_t enters the U-Net only through its first conv, and predicting the noise
at high noise levels means passing x_t through almost unchanged, so a first layer narrower than
its input caps what the network can learn (issue 13: at 32 channels for 50 genes the noise error
has a floor of about 1 - 32/50 and the samples are clipped noise). ``channels = None`` (the
``quick`` preset) therefore means "as narrow as passes the input": the smallest multiple of 8
that is at least the network's input width (:func:`auto_channels`), and never below 32. The
networks refuse a narrower explicit width at construction (``check_width``).

Parameterisation (``prediction``, ``residual``): see ``schedule.py`` and ``trainer.py``; the paper
predicts the noise of the HR map itself (``prediction="eps"``, ``residual=False``), and so does
``paper``. ``quick`` predicts v of the residual over bicubic (``prediction="v"``,
``residual=True``), a documented deviation that the run name carries; its measurements are in
docs/decisions.md ("Quick preset: v of the residual").

Sampler: every preset draws with the release's ancestral DDPM, ``paper`` over the release's 20
respaced steps and ``quick`` over 10 (a documented deviation); ``sampler="ddim"``
(deterministic, eta = 0) remains an option (docs/decisions.md, "Sampling steps" and "Sampler").

Precision (``amp``): the network trains and samples under bfloat16 autocast on every device;
the losses, the EMA and the sampler's update of x_t stay float32 (the paper trained in mixed
precision on GPUs). A CPU without bfloat16 instructions emulates it and may be slower:
``amp=False`` is plain float32 (docs/decisions.md, "bfloat16 training" and "bfloat16
sampling").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from methods.contract import device_preset
from methods.diffusion.schedule import PREDICTIONS, Prediction


@dataclass(frozen=True)
class DiffusionConfig:
    """Every hyperparameter of one diffst, sr3 or unet run (all JSON-serialisable)."""

    channels: int | None = 128  # None: auto_channels of the input width
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
    # the paper's: the noise of the HR map; "x0" / "v" predict x0 or v (schedule.py)
    prediction: Prediction = "eps"
    # generate HR minus the bicubic upsampled LR map (SRDiff, ResShift) instead of HR itself
    residual: bool = False
    # outside tissue, the model-scale value of HR and LR maps: the model's floor -1 ("floor", the
    # split's 0, as the release) or the gene's training mean ("mean"); trainer.py ``_to_model``;
    # docs/decisions.md, "Outside tissue: the release's floor"
    outside: Literal["mean", "floor"] = "floor"
    augment: bool = True  # flips and 90-degree rotations of map, LR and image together
    amp: bool = True  # bfloat16 autocast of the network (module docstring)
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
    # minutes of training on 2 CPU cores (docs/decisions.md, "Quick diffusion preset: minutes
    # on two CPU cores")
    "quick": {
        "channels": None,
        "groups": 8,
        "tile_grid": 12,
        "tile_px": 8,
        "iterations": 500,
        "batch_size": 8,
        "learning_rate": 7e-4,
        "ema_decay": 0.98,
        "checkpoint_every": 125,
        # learns fastest within the CPU budget (docs/decisions.md, "Quick preset: v of the
        # residual")
        "prediction": "v",
        "residual": True,
        # half the release's sampling steps, within tolerance on every dataset's validation
        # (docs/decisions.md, "Sampling steps")
        "steps": 10,
    },
}


def make_config(preset: str, on_gpu: bool, **overrides: Any) -> DiffusionConfig:
    """The preset's config with ``overrides`` applied; unknown names raise TypeError."""
    preset = device_preset(preset, on_gpu)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from default, {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(DiffusionConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(
            f"unknown diffst parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    if overrides.get("prediction", "eps") not in PREDICTIONS:
        raise ValueError(
            f"prediction must be one of {PREDICTIONS}, not {overrides['prediction']!r}"
        )
    if overrides.get("outside", "floor") not in ("mean", "floor"):
        raise ValueError(f"outside must be 'mean' or 'floor', not {overrides['outside']!r}")
    values = {**PRESETS[preset], **overrides}
    if "channel_mult" in values:
        values["channel_mult"] = tuple(values["channel_mult"])
    return DiffusionConfig(**values)


def auto_channels(input_width: int) -> int:
    """The ``channels = None`` width: the least multiple of 8 >= ``input_width``, at least 32."""
    return max(32, -(-input_width // 8) * 8)
