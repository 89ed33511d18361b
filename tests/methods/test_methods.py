"""The method contract, the lazy registry and the first methods."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import methods
from methods.contract import Sample
from methods.interpolation import fill_empty, upsample


def make_sample(
    g: int = 3, h: int = 4, w: int = 5, k: int = 2, seed: int = 0, hr: bool = True
) -> Sample:
    rng = np.random.default_rng(seed)
    lr_mask = rng.random((h, w)) > 0.2
    hr_mask = np.kron(lr_mask, np.ones((k, k), dtype=bool))
    lr = rng.random((g, h, w)).astype(np.float32) * lr_mask
    return Sample(
        region=f"r{seed}",
        genes=tuple(f"g{i}" for i in range(g)),
        scale=k,
        lr=lr,
        lr_mask=lr_mask,
        hr_mask=hr_mask,
        image=np.zeros((3, h * k * 4, w * k * 4), np.uint8),
        hr=(rng.random((g, h * k, w * k)).astype(np.float32) * hr_mask) if hr else None,
    )


def test_registry_resolves_all_and_rejects_unknown_names_listing_known_ones():
    assert methods.resolve("all") == methods.names()
    assert methods.resolve("bicubic, mean,bicubic") == ["bicubic", "mean"]
    with pytest.raises(methods.UnknownMethodError) as err:
        methods.resolve("bicubic,sr9000")
    assert "'sr9000'" in str(err.value) and all(n in str(err.value) for n in methods.names())


def test_registry_is_lazy():
    code = (
        "import sys, methods; assert 'methods.interpolation' not in sys.modules; "
        "m = methods.create('bicubic'); assert m.name == 'bicubic'; "
        "assert 'torch_geometric' not in sys.modules and 'mlflow' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_sample_checks_shapes_and_strips_the_target():
    s = make_sample()
    assert s.without_target().hr is None and s.hr is not None
    with pytest.raises(ValueError, match="hr_mask"):
        Sample(
            region="x",
            genes=("a",),
            scale=2,
            lr=np.zeros((1, 2, 2)),
            lr_mask=np.ones((2, 2), bool),
            hr_mask=np.ones((3, 4), bool),
            image=np.zeros((3, 8, 8), np.uint8),
        )


def test_fill_empty_takes_the_nearest_lr_spot():
    lr = np.zeros((1, 1, 4))
    lr[0, 0, 0], lr[0, 0, 3] = 1.0, 5.0
    mask = np.array([[True, False, False, True]])
    np.testing.assert_array_equal(fill_empty(lr, mask)[0, 0], [1.0, 1.0, 5.0, 5.0])


def test_nearest_is_block_replication_and_smooth_modes_keep_constants():
    s = make_sample(seed=1)
    full = Sample(
        region="f",
        genes=s.genes,
        scale=2,
        lr=s.lr,
        lr_mask=np.ones_like(s.lr_mask),
        hr_mask=np.ones_like(s.hr_mask),
        image=s.image,
    )
    pred = methods.create("nearest").predict([full])
    np.testing.assert_array_equal(pred[0], np.kron(s.lr, np.ones((1, 2, 2))))
    const = Sample(
        region="c",
        genes=s.genes,
        scale=2,
        lr=np.full_like(s.lr, 2.5) * s.lr_mask,
        lr_mask=s.lr_mask,
        hr_mask=s.hr_mask,
        image=s.image,
    )
    for name in ("bilinear", "bicubic"):
        np.testing.assert_allclose(methods.create(name).predict([const]), 2.5, rtol=1e-6)


def test_bicubic_never_goes_negative_and_differs_from_bilinear():
    lr = np.zeros((1, 1, 6, 6), np.float32)
    lr[..., 2:4, 2:4] = 5.0
    cubic, linear = upsample(lr, 2, "bicubic"), upsample(lr, 2, "bilinear")
    assert cubic.min() < 0  # raw bicubic undershoots: the method must clip
    s = Sample(
        region="x",
        genes=("a",),
        scale=2,
        lr=lr[0],
        lr_mask=np.ones((6, 6), bool),
        hr_mask=np.ones((12, 12), bool),
        image=np.zeros((3, 12, 12), np.uint8),
    )
    assert methods.create("bicubic").predict([s]).min() >= 0
    assert not np.allclose(cubic, linear)


def test_mean_control_predicts_the_training_mean_over_tissue():
    train = [make_sample(seed=i) for i in range(3)]
    m = methods.create("mean")
    m.fit(train)
    hr = np.stack([s.hr for s in train])
    mask = np.stack([s.hr_mask for s in train])
    expected = np.array([hr[:, g][mask].mean() for g in range(hr.shape[1])])
    pred = m.predict([make_sample(seed=9, hr=False)])
    assert pred.shape == (1, 3, 8, 10)
    np.testing.assert_allclose(pred[0, :, 0, 0], expected, rtol=1e-6)
    assert (pred == pred[:, :, :1, :1]).all() and m.control == "negative"
