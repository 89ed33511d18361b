"""iStar-style super-resolution (Zhang et al., "Inferring super-resolution tissue architecture by
integrating spatial transcriptomics with histology", Nature Biotechnology 2024).

Kept from iStar (``impute.py`` of its public repository):

- a feed-forward network maps each HR position's ("superpixel's") image features to all genes:
  four hidden layers of 256 units with LeakyReLU(0.1), output ``ELU(alpha=0.01) + 0.01`` (never
  negative);
- it trains on LR alone: for every LR spot, the MEAN of the predictions over the spot's
  in-tissue HR positions must match the spot's measured value (MSE), Adam with learning rate
  1e-4, mini-batches of ``min(128, spots // 16)`` spots, 400 epochs (``paper``);
- one fit per slide: the network is trained at predict time on each input sample's own LR map
  and image (no target is involved), features standardised over that slide's in-tissue
  positions; ``paper`` trains an ensemble of 5 (iStar's ``n_states``) and takes the median.

Simplified (stated):

- features are :mod:`methods.features` (handcrafted colour / stain / texture statistics of the
  position's block and its 3 x 3 context, or a local TorchScript encoder) instead of the frozen
  hierarchical ViT (HIPT) on 16 x 16 px superpixels at 0.5 um/px;
- the targets are the benchmark's log-scale LR values divided per gene by their maximum over the
  slide's spots (iStar min-max scales raw counts): a scale only, so the mean constraint holds on
  the LR scale and the output floor stays at the scale's true 0;
- G benchmark genes instead of 1,000; ``quick`` trains one network (not 5) of 2 x 128 units,
  learning rate 1e-3, 200 epochs; ``default`` is ``quick`` on a CPU and ``paper`` on a GPU, as
  for every learner (``methods.contract.device_preset``);
- ``fit`` does nothing: like iStar, every slide is fitted on its own (the training sections'
  targets are not used).

Option (not iStar's): ``residual=True`` starts from the LR map: the network (linear output)
learns ``r`` with the prediction ``bicubic(LR) + r`` (clipped at 0) and the mean constraint on
``bicubic + r``, so ``r`` only has to fill in what interpolation misses (issue 13's "learners that
see the LR map start from it"); ``quick`` uses it (decided on validation regions: the entry
"istar starts from the LR map" of ``docs/decisions.md``).

Deterministic for ``seed`` (weights and batch order drawn from ``seed``, global RNG untouched).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from methods.contract import Method, Preset, Sample, device_preset
from methods.features import HANDCRAFTED, position_features, standardise
from methods.interpolation import fill_empty, upsample

PRESET_SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"hidden": (128, 128), "epochs": 200, "lr": 1e-3, "n_states": 1, "residual": True},
    "paper": {"hidden": (256, 256, 256, 256), "epochs": 400, "lr": 1e-4, "n_states": 5},
}


def spot_tensors(
    sample: Sample, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the HR positions by LR spot.

    Parameters
    ----------
    features : (H, W, F) standardised position features.

    Returns
    -------
    x : (S, k*k, F) float32 features of each spot's positions.
    inside : (S, k*k) float32, 1 for in-tissue positions (the ones the mean runs over).
    y : (S, G) float32 LR values of the spots.
    """
    k = sample.scale
    hl, wl = sample.lr_mask.shape
    a, b = np.nonzero(sample.lr_mask)
    blocks = features.reshape(hl, k, wl, k, -1).transpose(0, 2, 1, 3, 4)
    x = blocks[a, b].reshape(len(a), k * k, -1)
    inside = sample.hr_mask.reshape(hl, k, wl, k).transpose(0, 2, 1, 3)[a, b].reshape(len(a), -1)
    y = sample.lr[:, a, b].T
    return x.astype(np.float32), inside.astype(np.float32), y.astype(np.float32)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread for the duration, then restore the previous count.

    The network is tiny: OpenMP fork/join costs more than its matrix products, and on a busy
    2-core machine multi-threaded steps were far slower than single-threaded ones
    (docs/decisions.md, "istar trains on one thread").
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_network(n_in: int, n_out: int, hidden: Sequence[int], positive: bool = True) -> Any:
    """iStar's feed-forward net: LeakyReLU(0.1) hidden layers, ``ELU(0.01) + 0.01`` output
    (a plain linear output with ``positive=False``, for the residual, which may be negative)."""
    from torch import nn

    class ShiftedELU(nn.Module):
        def forward(self, x: Any) -> Any:
            return nn.functional.elu(x, alpha=0.01) + 0.01

    layers: list[nn.Module] = []
    width = n_in
    for units in hidden:
        layers += [nn.Linear(width, units), nn.LeakyReLU(0.1)]
        width = units
    layers += [nn.Linear(width, n_out), *([ShiftedELU()] if positive else [])]
    return nn.Sequential(*layers)


class IStarStyle(Method):
    """Per-slide network trained so that block means of its HR output match the LR spots."""

    def __init__(
        self,
        *,
        hidden: Sequence[int] | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        n_states: int | None = None,
        batch_size: int | None = None,
        encoder: str = HANDCRAFTED,
        residual: bool | None = None,
        preset: Preset = "default",
        seed: int = 0,
    ) -> None:
        import torch

        # iStar runs on the CPU; "default" is the device's preset like every learner's, so the
        # README's run names and runs on a CPU what the page's --preset quick does
        super().__init__(preset=device_preset(preset, torch.cuda.is_available()), seed=seed)
        if self.preset not in PRESET_SETTINGS:
            raise ValueError(
                f"preset must be one of default, {', '.join(sorted(PRESET_SETTINGS))}, "
                f"not {preset!r}"
            )
        base = PRESET_SETTINGS[self.preset]
        self.residual = bool(residual if residual is not None else base.get("residual", False))
        self.hidden = tuple(int(u) for u in (hidden if hidden is not None else base["hidden"]))
        self.epochs = int(epochs if epochs is not None else base["epochs"])
        self.lr = float(lr if lr is not None else base["lr"])
        self.n_states = int(n_states if n_states is not None else base["n_states"])
        self.batch_size = batch_size  # None: iStar's rule, min(128, spots // 16), at least 1
        self.encoder = encoder
        if self.epochs < 1 or self.n_states < 1 or any(u < 1 for u in self.hidden):
            raise ValueError(
                f"epochs, n_states and hidden units must be positive, got epochs={self.epochs}, "
                f"n_states={self.n_states}, hidden={self.hidden}"
            )

    def params(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "epochs": self.epochs,
            "lr": self.lr,
            "n_states": self.n_states,
            "batch_size": self.batch_size,
            "encoder": self.encoder,
            "residual": self.residual,
        }

    def label_params(self) -> dict[str, Any]:
        """The variant: whether it starts from the LR map (the rest are fixed per preset)."""
        return {"residual": self.residual}

    def fit(self, train: Sequence[Sample]) -> None:
        """Nothing to learn across slides: every slide is fitted on its own LR map."""

    def train_state(self, x: np.ndarray, inside: np.ndarray, y: np.ndarray, seed: int) -> Any:
        """Train one network on one slide's spots (:func:`spot_tensors`), in eval mode."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_network(x.shape[-1], y.shape[-1], self.hidden, not self.residual)
        gen = torch.Generator().manual_seed(seed)
        xt, mt, yt = torch.from_numpy(x), torch.from_numpy(inside), torch.from_numpy(y)
        count = mt.sum(dim=1, keepdim=True).clamp_min(1.0)
        n = len(xt)
        batch = self.batch_size or max(1, min(128, n // 16))
        optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, fused=True)
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                pred = net(xt[idx])  # (B, k*k, G)
                spot_mean = (pred * mt[idx, :, None]).sum(dim=1) / count[idx]
                loss = ((spot_mean - yt[idx]) ** 2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        return net.eval()

    def predict_one(self, sample: Sample) -> np.ndarray:
        """HR prediction ``(G, H, W)`` float32 of one sample, trained on its own LR map."""
        import torch

        g = sample.lr.shape[0]
        h, w = sample.hr_shape
        if not sample.lr_mask.any():  # no spot to learn from
            return np.zeros((g, h, w), np.float32)
        features = position_features(sample, self.encoder)
        tissue = sample.hr_mask if sample.hr_mask.any() else np.ones((h, w), bool)
        mean, std = standardise(features[tissue])
        features = (features - mean) / std
        x, inside, y = spot_tensors(sample, features)
        base = np.zeros((g, h, w), np.float32)
        if self.residual:  # learn what bicubic misses: block means of base + r match the spots
            filled = fill_empty(sample.lr, sample.lr_mask)
            base = np.clip(upsample(filled[None], sample.scale, "bicubic")[0], 0.0, None)
            blocks, _, _ = spot_tensors(sample, base.transpose(1, 2, 0))  # (S, k*k, G)
            count = np.maximum(inside.sum(axis=1, keepdims=True), 1.0)
            y = y - (blocks * inside[..., None]).sum(axis=1) / count  # the spot means' gap
        scale = np.abs(y).max(axis=0)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # (G,)
        flat = torch.from_numpy(features.reshape(h * w, -1).astype(np.float32))
        states = []
        with single_thread():
            for state in range(self.n_states):
                net = self.train_state(x, inside, y / scale, seed=self.seed * 1000 + state)
                with torch.no_grad():
                    states.append(net(flat).numpy())
        pred = np.median(np.stack(states), axis=0) * scale  # (H W, G)
        pred = pred.T.reshape(g, h, w) + base
        return np.ascontiguousarray(np.clip(pred, 0.0, None), dtype=np.float32)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return np.stack([self.predict_one(s) for s in samples])
