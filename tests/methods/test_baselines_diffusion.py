"""The two same-budget baselines of diffst (U-Net regressor, SR3) and the trainer they share
with it (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_diffst_method import TINY  # the same tiny sizes as diffst's own tests

from methods.contract import Sample, StochasticMethod
from methods.diffst.method import DiffST
from methods.diffusion.config import PRESETS
from methods.sr3 import PlainConditionalDiffusion, SR3Net
from methods.unet_regressor import UNetRegressor

SWITCHES = ("graph", "cell_attention", "disentangle", "modulation")


def samples(
    n: int = 3, seed: int = 0, target: bool = True, image_seed: int | None = None
) -> list[Sample]:
    """``n`` samples of 3 genes on an 8 x 8 HR grid (x2); ``image_seed`` redraws the images
    alone (maps and images come from separate generators)."""
    rng = np.random.default_rng(seed)
    images = np.random.default_rng(seed + 1000 if image_seed is None else image_seed)
    out = []
    for i in range(n):
        hr = rng.gamma(2.0, 1.0, (3, 8, 8)).astype(np.float32)
        mask = np.ones((8, 8), bool)
        mask[0, :3] = False
        hr *= mask
        out.append(
            Sample(
                region=f"r{i}",
                genes=("g0", "g1", "g2"),
                scale=2,
                lr=hr.reshape(3, 4, 2, 4, 2).mean(axis=(2, 4)),
                lr_mask=np.ones((4, 4), bool),
                hr_mask=mask,
                image=images.integers(0, 256, (3, 32, 32), dtype=np.uint8),
                hr=hr if target else None,
            )
        )
    return out


def fitted(cls: type, seed: int = 0, **overrides) -> UNetRegressor | PlainConditionalDiffusion:
    m = cls(preset="quick", seed=seed, **{**TINY, **overrides})
    m.fit(samples())
    return m


@pytest.fixture(scope="module")
def unet() -> UNetRegressor:
    return fitted(UNetRegressor)


@pytest.fixture(scope="module")
def sr3() -> PlainConditionalDiffusion:
    return fitted(PlainConditionalDiffusion)


def test_regressor_is_deterministic_and_reads_the_image(unet):
    assert not isinstance(unet, StochasticMethod) and not unet.stochastic
    test = samples(n=2, seed=5, target=False)
    pred = unet.predict(test)
    assert pred.shape == (2, 3, 8, 8) and pred.dtype == np.float32
    assert np.isfinite(pred).all() and pred.min() >= 0
    np.testing.assert_array_equal(pred, unet.predict(test))
    np.testing.assert_array_equal(pred, fitted(UNetRegressor).predict(test))  # same seed
    other_images = samples(n=2, seed=5, target=False, image_seed=11)
    assert not np.allclose(pred, unet.predict(other_images))


def test_sr3_draws_are_seeded_diverse_and_ignore_the_image(sr3):
    assert isinstance(sr3, StochasticMethod)
    test = samples(n=2, seed=5, target=False)
    a = sr3.sample(test, 4, seed=1)
    assert a.shape == (2, 4, 3, 8, 8) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0
    np.testing.assert_array_equal(a, sr3.sample(test, 4, seed=1))
    assert not np.allclose(a, sr3.sample(test, 4, seed=2))
    assert not np.allclose(a[:, 0], a[:, 1])  # the K draws differ from each other
    other_images = samples(n=2, seed=5, target=False, image_seed=11)
    np.testing.assert_array_equal(a, sr3.sample(other_images, 4, seed=1))
    np.testing.assert_allclose(sr3.predict(test, k=4), sr3.sample(test, 4, sr3.seed).mean(1))


def test_sr3_network_conditions_on_the_upsampled_lr_only():
    torch.manual_seed(0)
    net = SR3Net(genes=3, channels=16, groups=4)
    assert net.encoder.input_conv.in_channels == 6  # x_t and the LR map, nothing else
    torch.nn.init.normal_(net.out[-1].weight)  # the head starts at zero: make it see the input
    x_t, t = torch.randn(2, 3, 8, 8), torch.tensor([0, 999])
    lr = torch.rand(2, 3, 3, 5)  # any LR size, odd included
    out = net(x_t, t, lr)
    assert out.shape == (2, 6, 8, 8) and torch.isfinite(out).all()
    assert not torch.allclose(out, net(x_t, t, lr + 0.5))
    with pytest.raises(ValueError, match="lr must be"):
        net(x_t, t, lr[:, :2])


def test_regressor_loss_decreases_on_a_fixed_batch():
    m = fitted(UNetRegressor, seed=3, iterations=0)
    batch = m._encode(samples())
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(5):
        loss = m._loss(batch, generator, 1.0)
        m.optimizer.zero_grad()
        loss.backward()
        m.optimizer.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


@pytest.mark.parametrize("cls", [DiffST, UNetRegressor, PlainConditionalDiffusion])
def test_checkpoint_round_trip_and_resume_after_interruption(cls, tmp_path, monkeypatch):
    """The shared trainer's checkpoints, for every method built on it."""
    full = cls(preset="quick", seed=0, **TINY)
    full.workdir = tmp_path / "full"
    full.fit(samples())
    state = torch.load(tmp_path / "full" / cls.checkpoint, weights_only=True)
    assert state["step"] == 4 and state["config"]["channels"] == 16
    test = samples(n=1, seed=7, target=False)

    again = cls(preset="quick", seed=0, **TINY)
    again.workdir = tmp_path / "full"
    again.fit(samples())  # complete checkpoint: loads, trains nothing
    assert again.history == pytest.approx(full.history)
    # the fit time of the run that trained it comes back with it (the runner records it)
    assert full.resumed_fit_s == 0.0 and again.resumed_fit_s == state["fit_seconds"] > 0
    np.testing.assert_array_equal(again.predict(test), full.predict(test))

    class Interrupt(Exception):
        pass

    original = cls._save

    def save_then_die(self, step, generator):
        original(self, step, generator)
        if step == 2:
            raise Interrupt

    monkeypatch.setattr(cls, "_save", save_then_die)
    first = cls(preset="quick", seed=0, **TINY)
    first.workdir = tmp_path / "cut"
    with pytest.raises(Interrupt):
        first.fit(samples())
    monkeypatch.setattr(cls, "_save", original)
    cut = torch.load(tmp_path / "cut" / cls.checkpoint, weights_only=True)
    resumed = cls(preset="quick", seed=0, **TINY)
    resumed.workdir = tmp_path / "cut"
    resumed.fit(samples())
    assert len(resumed.history) == 4
    done = torch.load(tmp_path / "cut" / cls.checkpoint, weights_only=True)
    assert cut["step"] == 2 and resumed.resumed_fit_s == cut["fit_seconds"] > 0
    assert done["fit_seconds"] > cut["fit_seconds"]  # both runs' seconds, summed
    assert resumed.history == pytest.approx(full.history, rel=1e-5)
    for a, b in zip(resumed.ema.parameters(), full.ema.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    np.testing.assert_allclose(resumed.predict(test), full.predict(test), rtol=1e-5, atol=1e-6)

    other = cls(preset="quick", seed=1, **TINY)  # another seed: the checkpoint is not reused
    other.workdir = tmp_path / "full"
    other.fit(samples())
    assert other.history != pytest.approx(full.history)


def test_config_params_and_rejected_names():
    for cls in (UNetRegressor, PlainConditionalDiffusion):
        m = cls(preset="quick", seed=0, channels=8, iterations=7)
        assert m.params()["preset"] == "quick" and m.params()["iterations"] == 7
        # the quick preset's rate, as for diffst
        assert m.params()["learning_rate"] == PRESETS["quick"]["learning_rate"]
        variant = {"prediction": m.config.prediction, "residual": m.config.residual}
        if cls is UNetRegressor:
            del variant["prediction"]  # a regressor has no parameterisation
        assert m.label_params() == {"preset": "quick", **variant, "channels": 8, "iterations": 7}
        with pytest.raises(TypeError, match="nonsense"):
            cls(preset="quick", nonsense=1)
        with pytest.raises(ValueError, match="preset"):
            cls(preset="huge")
    assert UNetRegressor(preset="quick", graph=False).params()["graph"] is False
    assert all(PlainConditionalDiffusion(preset="quick").params()[s] is False for s in SWITCHES)
    for switch in SWITCHES:
        with pytest.raises(TypeError, match=switch):
            PlainConditionalDiffusion(preset="quick", **{switch: True})


class _Payload:
    """Unpickling this would create a file: proof that arbitrary code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    m = DiffST(preset="quick", seed=0, **TINY)
    m.workdir = tmp_path / "work"
    m.workdir.mkdir()
    torch.save({"step": 1, "payload": _Payload(str(marker))}, m.workdir / DiffST.checkpoint)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        m.fit(samples())
    assert not marker.exists()
