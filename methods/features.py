"""Offline image features per HR position, shared by the histology-driven baselines.

Used by ``istar`` (Zhang et al., Nature Biotechnology 2024) and ``linear_probe`` (HEST-Benchmark,
Jaume et al., NeurIPS 2024) in place of their pretrained encoders (HIPT, UNI, ...), whose
weights cannot be downloaded here. Two encoders:

``"handcrafted"`` (default, no weights): for each HR position, statistics of its ``p x p`` pixel
block and of its context (the 3 x 3 neighbourhood of blocks, clipped at the grid edge; the
position's own block included), computed from per-block sums so that nothing loops over
positions. Per scale (prefix ``block_`` or ``context_``), in this order:

- ``mean_c``, ``std_c`` for each image channel ``c``: intensity in [0, 1] (uint8 / 255);
- RGB only: ``mean_H``, ``std_H``, ``mean_E``, ``std_E``: haematoxylin and eosin densities by
  colour deconvolution (``skimage.color.rgb2hed``; Ruifrok & Johnston 2001), in that function's
  optical-density units (about 0 to 0.2 on H&E; slightly negative values occur);
- ``grad``: mean gradient magnitude of the grey level (``rgb2gray`` for RGB, the channel itself
  for 1 channel), in intensity units per pixel, from forward differences taken *inside* each
  block, so a block's features never read another block's pixels;
- ``entropy``: Shannon entropy (bits, 0..4) of the grey level quantised into 16 levels.

RGB images give 2 x 12 = 24 features, 1-channel images 2 x 4 = 8 (:func:`feature_names`).

A path to a local TorchScript file: a model mapping ``(B, 3, 224, 224)`` float images in [0, 1]
to ``(B, D)`` embeddings, applied to each in-tissue position's block resized to 224 x 224
(1-channel images are repeated to 3 channels); positions outside ``hr_mask`` get 0. Nothing is
ever downloaded: a missing file is a ``ValueError``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from methods.contract import Sample

HANDCRAFTED = "handcrafted"
GREY_LEVELS = 16  # quantisation of the grey level for the entropy feature
ENCODER_SIZE = 224  # input side of a pretrained patch encoder
ENCODER_BATCH = 64


def feature_names(channels: int) -> list[str]:
    """Names of the handcrafted features, in column order, for a ``channels``-channel image."""
    colour = ["R", "G", "B"] if channels == 3 else [str(c) for c in range(channels)]
    per_scale = [f"mean_{c}" for c in colour] + [f"std_{c}" for c in colour]
    if channels == 3:
        per_scale += ["mean_H", "std_H", "mean_E", "std_E"]
    per_scale += ["grad", "entropy"]
    return [f"{scale}_{n}" for scale in ("block", "context") for n in per_scale]


def block_means(image: np.ndarray, hr_shape: tuple[int, int]) -> np.ndarray:
    """Mean colour of each position's pixel block.

    Parameters
    ----------
    image : (C, H p, W p) uint8
    hr_shape : (H, W)

    Returns
    -------
    (H, W, C) float64 in [0, 1].
    """
    h, w = hr_shape
    p = _pixels_per_position(image, hr_shape)
    blocks = image.reshape(image.shape[0], h, p, w, p)
    return blocks.mean(axis=(2, 4), dtype=np.float64).transpose(1, 2, 0) / 255.0


def position_features(sample: Sample, encoder: str = HANDCRAFTED) -> np.ndarray:
    """Image features of every HR position of ``sample``.

    Parameters
    ----------
    sample : the sample; only ``image``, ``hr_mask`` (encoder only) and the HR shape are read.
    encoder : ``"handcrafted"`` or the path of a local TorchScript patch encoder (module
        docstring).

    Returns
    -------
    (H, W, F) float32; F = 24 (RGB) or 8 (1 channel) for ``"handcrafted"``, D for an encoder.
    """
    if encoder == HANDCRAFTED:
        return _handcrafted(sample.image, sample.hr_shape)
    path = Path(encoder)
    if not path.is_file():
        raise ValueError(
            f"encoder {encoder!r} is neither 'handcrafted' nor an existing local TorchScript "
            f"file (weights are never downloaded)"
        )
    return _encoded(sample, path)


def standardise(train_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of ``(n, F)`` training rows; a std of 0 is replaced by 1."""
    x = np.asarray(train_features, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    return mean.astype(np.float32), np.where(std > 1e-12, std, 1.0).astype(np.float32)


def _pixels_per_position(image: np.ndarray, hr_shape: tuple[int, int]) -> int:
    h, w = hr_shape
    if image.ndim != 3 or image.shape[1] % h or image.shape[2] % w:
        raise ValueError(f"image {image.shape} is not (C, H p, W p) for the HR grid {(h, w)}")
    p = image.shape[1] // h
    if image.shape[2] // w != p:
        raise ValueError(f"image {image.shape}: unequal pixels per position along rows and cols")
    return p


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over the 3 x 3 neighbourhood of axes 0 and 1 (H, W), zero outside the grid."""
    padded = np.pad(a, [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2))
    h, w = a.shape[:2]
    return sum(padded[di : di + h, dj : dj + w] for di in range(3) for dj in range(3))


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block sums of x and x^2: ``values`` (H, W, n, K) -> two (H, W, K) arrays."""
    return values.sum(axis=2), np.square(values).sum(axis=2)


def _mean_std(s1: np.ndarray, s2: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = s1 / n
    return mean, np.sqrt(np.clip(s2 / n - mean**2, 0.0, None))


def _entropy(hist: np.ndarray) -> np.ndarray:
    """Entropy in bits of histograms ``(H, W, L)`` -> (H, W)."""
    prob = hist / np.clip(hist.sum(axis=-1, keepdims=True), 1, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(prob > 0, prob * np.log2(prob), 0.0)
    return -terms.sum(axis=-1)


def _handcrafted(image: np.ndarray, hr_shape: tuple[int, int]) -> np.ndarray:
    from skimage.color import rgb2gray, rgb2hed

    h, w = hr_shape
    p = _pixels_per_position(image, hr_shape)
    c = image.shape[0]
    pixels = np.moveaxis(image, 0, -1).astype(np.float32) / 255.0  # (H p, W p, C)
    channels = [pixels]
    if c == 3:
        channels.append(rgb2hed(pixels)[..., :2].astype(np.float32))  # H, E
        grey = rgb2gray(pixels).astype(np.float32)
    else:
        grey = pixels.mean(axis=-1)
    stacked = np.concatenate(channels, axis=-1)  # (H p, W p, K)
    # (H, p, W, p, K) -> (H, W, p*p, K): each position's pixels in one axis
    blocks = stacked.reshape(h, p, w, p, -1).transpose(0, 2, 1, 3, 4).reshape(h, w, p * p, -1)
    s1, s2 = _moments(blocks.astype(np.float64))
    n = np.full((h, w, 1), float(p * p))

    # gradient magnitude from forward differences inside each block (p - 1)^2 pixels
    g = grey.reshape(h, p, w, p).astype(np.float64)
    if p > 1:
        dy = np.diff(g, axis=1)[:, :, :, :-1]
        dx = np.diff(g, axis=3)[:, :-1]
        grad_sum = np.sqrt(dy**2 + dx**2).sum(axis=(1, 3))[..., None]
        grad_n = np.full((h, w, 1), float((p - 1) ** 2))
    else:  # one pixel per position: no texture
        grad_sum, grad_n = np.zeros((h, w, 1)), np.ones((h, w, 1))

    # grey-level histograms per block via one bincount over (block index, level)
    level = np.minimum((grey * GREY_LEVELS).astype(np.int64), GREY_LEVELS - 1)
    block_id = (np.arange(h)[:, None, None, None] * w + np.arange(w)[None, None, :, None]) * (
        GREY_LEVELS
    )
    codes = (level.reshape(h, p, w, p) + block_id).ravel()
    hist = np.bincount(codes, minlength=h * w * GREY_LEVELS).reshape(h, w, GREY_LEVELS)

    scales = []
    for agg in (lambda a: a, _box3):  # the block itself, then its 3 x 3 context
        mean, std = _mean_std(agg(s1), agg(s2), agg(n))
        cols = [mean[..., :c], std[..., :c]]
        if c == 3:  # H and E: mean, std each
            cols += [mean[..., 3:4], std[..., 3:4], mean[..., 4:5], std[..., 4:5]]
        cols += [agg(grad_sum) / agg(grad_n), _entropy(agg(hist).astype(np.float64))[..., None]]
        scales.append(np.concatenate(cols, axis=-1))
    return np.concatenate(scales, axis=-1).astype(np.float32)


def _encoded(sample: Sample, path: Path) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    h, w = sample.hr_shape
    p = _pixels_per_position(sample.image, sample.hr_shape)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the file format stays
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(path), map_location="cpu").eval()
    rows, cols = np.nonzero(sample.hr_mask)
    img = sample.image.reshape(sample.image.shape[0], h, p, w, p)
    out: np.ndarray | None = None
    with torch.no_grad():
        for start in range(0, len(rows), ENCODER_BATCH):
            i, j = rows[start : start + ENCODER_BATCH], cols[start : start + ENCODER_BATCH]
            patch = torch.from_numpy(img[:, i, :, j, :].astype(np.float32) / 255.0)  # (B,C,p,p)
            if patch.shape[1] == 1:
                patch = patch.expand(-1, 3, -1, -1)
            patch = F.interpolate(
                patch, size=(ENCODER_SIZE, ENCODER_SIZE), mode="bilinear", antialias=p > 224
            )
            emb = model(patch).reshape(len(i), -1).numpy()
            if out is None:
                out = np.zeros((h, w, emb.shape[1]), np.float32)
            out[i, j] = emb
    return out if out is not None else np.zeros((h, w, 1), np.float32)
