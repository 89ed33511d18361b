"""Export a cell's HR prediction as AnnData (``.h5ad``), to open in scanpy or squidpy.

One observation per HR position of a test region that is measured (``hr_mask``) or lies under
an LR spot (the positions a method super-resolves); variables are the split's genes.

- ``X``: (positions, genes) float32 prediction on the split's scale (``uns["stsr"]["scale"]``);
- ``layers["truth"]``: the measured HR value, NaN where the position was not measured;
- ``layers["spread"]`` (stochastic methods): the population std over the K draws per position;
- ``obs``: ``region``, ``section``, ``hr_row``/``hr_col`` (position in the region's window),
  ``grid_row``/``grid_col`` (the section's grid), ``measured`` (bool);
- ``obsm["spatial"]``: (x, y) in the section's full-resolution image pixels (scanpy's
  convention; x = image column), ``obsm["spatial_um"]``: the same in micrometres from the grid;
- ``uns["stsr"]``: dataset, method, seed, split fingerprint, k, normalisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.section import Section
from bench.data.splits import Split
from bench.errors import BenchError
from bench.files import atomic_write


def to_anndata(
    split: Split,
    sections: dict[str, Section],
    pred: np.ndarray,
    method: str,
    seed: int,
    spread: np.ndarray | None = None,
):  # -> anndata.AnnData
    """AnnData of ``pred`` (N, G, H, W) for ``split.test`` and, for a stochastic method, the
    ``spread`` (N, G, H, W) of its draws (see the module docstring)."""
    import anndata as ad
    import pandas as pd

    spec = split.spec
    k = spec.k
    obs, xs, truths, spatial, spatial_um, spreads = [], [], [], [], [], []
    for n, (sample, values) in enumerate(zip(split.test, pred, strict=True)):
        region = spec.regions[sample.region]
        section = sections[region.section]
        covered = np.kron(sample.lr_mask, np.ones((k, k), dtype=bool)) | sample.hr_mask
        i, j = np.nonzero(covered)
        rows, cols = i + region.origin[0], j + region.origin[1]
        xy = section.to_pixel @ np.vstack([cols, rows, np.ones(len(i))])
        obs.append(
            pd.DataFrame(
                {
                    "region": sample.region,
                    "section": section.id,
                    "hr_row": i,
                    "hr_col": j,
                    "grid_row": rows,
                    "grid_col": cols,
                    "measured": sample.hr_mask[i, j],
                }
            )
        )
        xs.append(values[:, i, j].T)
        if spread is not None:
            spreads.append(spread[n][:, i, j].T)
        truths.append(np.where(sample.hr_mask[i, j][:, None], sample.hr[:, i, j].T, np.nan))
        spatial.append(xy.T)
        spatial_um.append(np.c_[cols * section.pitch_um[1], rows * section.pitch_um[0]])
    frame = pd.concat(obs, ignore_index=True)
    keys = zip(frame.region, frame.hr_row, frame.hr_col, strict=True)
    frame.index = [f"{r}:{a}_{b}" for r, a, b in keys]
    adata = ad.AnnData(
        X=np.concatenate(xs).astype(np.float32),
        obs=frame,
        var=pd.DataFrame(index=list(split.genes)),
        layers={"truth": np.concatenate(truths).astype(np.float32)},
        obsm={"spatial": np.concatenate(spatial), "spatial_um": np.concatenate(spatial_um)},
    )
    if spread is not None:
        adata.layers["spread"] = np.concatenate(spreads).astype(np.float32)
    adata.uns["stsr"] = {
        "dataset": spec.dataset,
        "method": method,
        "seed": seed,
        "fingerprint": spec.fingerprint,
        "k": k,
        "scale": spec.normalisation,
    }
    return adata


def read_prediction(path: Path, split: Split) -> tuple[np.ndarray, np.ndarray | None]:
    """The saved (N, G, H, W) prediction of a cell and its draws' spread (None for a
    deterministic method), checked against the split's test regions."""
    if not path.is_file():
        raise BenchError(f"{path}: no saved prediction; run this cell with 'python -m bench run'")
    with np.load(path, allow_pickle=False) as z:
        pred, regions = z["pred"], [str(r) for r in z["regions"]]
        spread = z["spread"] if "spread" in z.files else None
    if regions != [s.region for s in split.test]:
        raise BenchError(f"{path}: prediction is for other regions than the split's; rerun it")
    return pred, spread


def write_h5ad(adata, out: Path) -> Path:  # adata: anndata.AnnData
    """Write atomically (temporary file in the same folder, then rename)."""
    return atomic_write(out, adata.write_h5ad)
