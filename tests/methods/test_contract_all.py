"""One generic contract test for every registered method (quick preset, tiny synthetic data).

Iterative methods run at smoke size (``tests/smoke.py``): the contract is about behaviour
(shapes, finiteness, no target at predict time, determinism, seed reproducibility).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from smoke import SMOKE

import methods
from methods.contract import Sample
from methods.registry import method_class


def tiny(
    n: int, seed: int, target: bool, genes: int = 3, size: int = 8, px: int = 4
) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        mask = np.ones((size, size), bool)
        mask[0, :3] = False
        image = rng.integers(0, 256, (3, size * px, size * px), dtype=np.uint8)
        red = image[0].reshape(size, px, size, px).mean(axis=(1, 3)) / 64.0
        hr = (rng.gamma(2.0, 1.0, (genes, size, size)) + red).astype(np.float32) * mask
        lr = hr.reshape(genes, size // 2, 2, size // 2, 2).mean(axis=(2, 4))
        out.append(
            Sample(
                region=f"r{seed}-{i}",
                genes=tuple(f"g{j}" for j in range(genes)),
                scale=2,
                lr=lr,
                lr_mask=np.ones((size // 2, size // 2), bool),
                hr_mask=mask,
                image=image,
                hr=hr if target else None,
            )
        )
    return out


def make(name: str, seed: int = 0) -> methods.Method:
    return methods.create(name, preset="quick", seed=seed, **SMOKE.get(name, {}))


@pytest.mark.parametrize("name", methods.names())
def test_method_contract(name):
    train, test = tiny(3, seed=1, target=True), tiny(2, seed=2, target=False)
    method = make(name)
    json.dumps(method.params())  # parameters are JSON-serialisable (records, MLflow)
    assert set(method.label_params()) <= set(method.params()) | {"preset"}
    method.fit(train)
    if method.needs_target:  # only a positive control may read the target, and says so
        assert method.control == "positive"
        with pytest.raises(ValueError):
            method.predict(test)
        test = tiny(2, seed=2, target=True)
    if method.stochastic:
        draws = method.sample(test, 3, seed=5)
        assert draws.shape == (2, 3, 3, 8, 8) and np.isfinite(draws).all()
        np.testing.assert_array_equal(draws, method.sample(test, 3, seed=5))
        assert not np.array_equal(draws, method.sample(test, 3, seed=6))
    pred = np.asarray(method.predict(test))
    assert pred.shape == (2, 3, 8, 8) and np.isfinite(pred).all()
    again = make(name)
    again.fit(train)
    np.testing.assert_array_equal(pred, np.asarray(again.predict(test)))  # same seed, same output


def test_every_method_declares_what_it_is():
    for name in methods.names():
        cls, _ = method_class(name)
        assert cls.control in (None, "negative", "positive"), name
        assert cls.__doc__ and cls.__module__.startswith("methods."), name


@pytest.mark.parametrize("name", methods.names())
def test_the_default_preset_runs_and_names_the_devices_preset(name):
    """``make run`` (preset "default") runs each method as ``--preset quick`` does on a CPU and
    ``--preset paper`` on a GPU, under the same run name: the README's run and the page agree."""
    import torch

    device = "paper" if torch.cuda.is_available() else "quick"
    default = methods.create(name, preset="default", seed=1)
    chosen = methods.create(name, preset=device, seed=1)
    drop = {"preset"} if default.control else set()  # a control passes its preset on as given
    assert {k: v for k, v in default.params().items() if k not in drop} == {
        k: v for k, v in chosen.params().items() if k not in drop
    }
    if not default.control:
        assert default.label_params() == chosen.label_params()
