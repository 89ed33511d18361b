"""Export a cell's HR prediction as AnnData (``.h5ad``), to open in scanpy or squidpy as is, or
as a SpatialData store (``.zarr``, :func:`to_spatialdata`) with the images, positions and LR spots.

One observation per HR position of a test region that is a real lattice position (on a
checkerboard lattice, only the positions of the section's parity: the others do not exist) and is
measured (``hr_mask``) or lies under an LR spot (the positions a method super-resolves);
variables are the split's genes.

- ``X``: (positions, genes) float32 prediction on the split's scale (``uns["stsr"]["scale"]``);
- ``layers["truth"]``: the measured HR value, 0 where the position was not measured (see
  ``obs["measured"]``; no NaN, so ``sc.pp.pca(adata, layer="truth")`` and friends work);
- ``layers["spread"]`` (stochastic methods): the population std over the K draws per position;
- ``obs``: ``region``, ``library_id`` (= ``section``), ``hr_row``/``hr_col`` (position in the
  region's window), ``grid_row``/``grid_col`` (the section's grid), ``measured`` (bool);
- ``obsm["spatial"]``: (x, y) of the position's centre in the section's full-resolution image
  pixels (scanpy's convention; x = image column); ``obsm["spatial_um"]``: the same centre in
  micrometres (``spatial`` times the pixel size), so both name one point;
- ``uns["spatial"][library_id]``: ``images["hires"]`` (the section's image, long side at most
  2,000 px, RGB uint8) and ``scalefactors`` (``tissue_hires_scalef``, ``spot_diameter_fullres`` =
  the distance between neighbouring positions in full-resolution pixels), so
  ``sc.pl.spatial(adata[adata.obs.library_id == lib], library_id=lib, color=gene)`` draws the
  positions on the image without ``spot_size`` (select one library when a split tests several);
- ``uns["stsr"]``: dataset, method, seed, split fingerprint, k, normalisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.histology import thumbnail
from bench.data.regions import sites
from bench.data.section import Section
from bench.data.splits import Split
from bench.errors import BenchError
from bench.files import atomic_write

HIRES_MAX_PX = 2000


def neighbour_px(section: Section) -> float:
    """Distance between neighbouring lattice positions in full-resolution pixels (a square
    lattice's smaller step; on a checkerboard the nearest of the diagonal and doubled steps)."""
    a, b = section.to_pixel[:, 0], section.to_pixel[:, 1]  # one column step, one row step
    if section.lattice == "checkerboard":
        steps = (2 * a, a + b, a - b, 2 * b)
    else:
        steps = (a, b)
    return float(min(np.hypot(*s) for s in steps))


def um_per_px(section: Section) -> float:
    """The section's pixel size: the reader's, else implied by the lattice pitch and the grid
    to pixel affine (as :func:`bench.data.section.check_section` computes it)."""
    if section.um_per_px is not None:
        return float(section.um_per_px)
    steps = np.hypot(section.to_pixel[0, :2], section.to_pixel[1, :2])
    return float(np.mean(np.array(section.pitch_um)[::-1] / np.maximum(steps, 1e-12)))


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
        shape = sample.hr_mask.shape
        covered = np.kron(sample.lr_mask, np.ones((k, k), dtype=bool)) | sample.hr_mask
        covered &= sites(section, region.origin, shape)  # real lattice positions only
        i, j = np.nonzero(covered)
        rows, cols = i + region.origin[0], j + region.origin[1]
        xy = (section.to_pixel @ np.vstack([cols, rows, np.ones(len(i))])).T
        measured = sample.hr_mask[i, j]
        obs.append(
            pd.DataFrame(
                {
                    "region": sample.region,
                    "section": section.id,
                    "library_id": section.id,
                    "hr_row": i,
                    "hr_col": j,
                    "grid_row": rows,
                    "grid_col": cols,
                    "measured": measured,
                }
            )
        )
        xs.append(values[:, i, j].T)
        if spread is not None:
            spreads.append(spread[n][:, i, j].T)
        truths.append(np.where(measured[:, None], split.truth.hr[n][:, i, j].T, 0.0))
        spatial.append(xy)
        spatial_um.append(xy * um_per_px(section))
    frame = pd.concat(obs, ignore_index=True)
    frame["library_id"] = frame["library_id"].astype("category")
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
    adata.uns["spatial"] = {}
    for sid in frame["library_id"].cat.categories:
        section = sections[sid]
        image, scalef = thumbnail(section, HIRES_MAX_PX)
        adata.uns["spatial"][sid] = {
            "images": {"hires": image},
            "scalefactors": {
                "tissue_hires_scalef": scalef,
                "spot_diameter_fullres": neighbour_px(section),
            },
            "metadata": {"um_per_px": um_per_px(section)},
        }
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
    """Write atomically with the records' permissions (:func:`bench.files.atomic_write`)."""
    return atomic_write(out, adata.write_h5ad)


def to_spatialdata(adata, split: Split, sections: dict[str, Section]):  # -> SpatialData
    """The export as a SpatialData store, aligned to each section's image.

    Per test section ``s`` (coordinate systems as in :mod:`bench.data.stores`: ``"global"`` =
    the section's full-resolution pixels, ``"micrometres"``):

    - image ``s_image``: the ``uns["spatial"]`` thumbnail of :func:`to_anndata`, scaled into
      ``"global"`` by ``1 / tissue_hires_scalef``;
    - circles ``s_hr``: the exported HR positions (``obsm["spatial"]``), radius half the distance
      between neighbouring positions;
    - circles ``s_lr``: the LR spots of the section's test regions, at the centre of their k x k
      block of HR positions, radius ``k`` times the HR radius.

    Tables: ``"prediction"`` (the AnnData of :func:`to_anndata`: ``X`` prediction, layers
    ``truth`` and, for samplers, ``spread``) annotating the ``s_hr`` circles; ``"lr"`` (the LR
    input on the split's scale, LR spots x genes; ``obs`` ``region``, ``lr_row``, ``lr_col``)
    annotating the ``s_lr`` circles. Instance ids count from 0 within each element.
    """
    import anndata as ad
    import pandas as pd
    from spatialdata import SpatialData
    from spatialdata.models import TableModel

    from bench.data.stores import circles, image_element

    spec, k = split.spec, split.spec.k
    images, shapes, lr_obs, lr_x = {}, {}, [], []
    table = adata.copy()
    table.obs["element"] = [f"{lib}_hr" for lib in table.obs["library_id"]]
    table.obs["instance_id"] = table.obs.groupby("library_id", observed=True).cumcount()
    for sid in adata.obs["library_id"].cat.categories:
        section, library = sections[sid], adata.uns["spatial"][sid]
        scalef = float(library["scalefactors"]["tissue_hires_scalef"])
        radius = float(library["scalefactors"]["spot_diameter_fullres"]) / 2
        size = um_per_px(section)
        images[f"{sid}_image"] = image_element(library["images"]["hires"], scalef, size)
        mine = (adata.obs["library_id"] == sid).to_numpy()
        shapes[f"{sid}_hr"] = circles(adata.obsm["spatial"][mine], radius, size)
        centres = []
        for sample in split.test:
            region = spec.regions[sample.region]
            if region.section != sid:
                continue
            a, b = np.nonzero(sample.lr_mask)
            rows = region.origin[0] + a * k + (k - 1) / 2
            cols = region.origin[1] + b * k + (k - 1) / 2
            centres.append((section.to_pixel @ np.vstack([cols, rows, np.ones(len(a))])).T)
            lr_x.append(sample.lr[:, a, b].T)
            lr_obs.append(
                pd.DataFrame(
                    {
                        "region": sample.region,
                        "library_id": sid,
                        "lr_row": a,
                        "lr_col": b,
                        "element": f"{sid}_lr",
                    }  # fmt: skip
                )
            )
        xy = np.concatenate(centres)
        shapes[f"{sid}_lr"] = circles(xy, radius * k, size)
    frame = pd.concat(lr_obs, ignore_index=True)
    frame["instance_id"] = frame.groupby("library_id").cumcount()
    frame.index = [
        f"{r}:lr{a}_{b}" for r, a, b in zip(frame.region, frame.lr_row, frame.lr_col, strict=True)
    ]
    for column in ("element", "library_id"):
        frame[column] = frame[column].astype("category")
        table.obs[column] = table.obs[column].astype("category")
    lr = ad.AnnData(
        X=np.concatenate(lr_x).astype(np.float32),
        obs=frame,
        var=pd.DataFrame(index=adata.var_names),
    )
    lr.uns["stsr"] = dict(adata.uns["stsr"])
    del table.uns["spatial"]  # the images are elements of the store
    hr_elements = [f"{s}_hr" for s in adata.obs["library_id"].cat.categories]
    lr_elements = [f"{s}_lr" for s in adata.obs["library_id"].cat.categories]
    return SpatialData(
        images=images,
        shapes=shapes,
        tables={
            "prediction": TableModel.parse(
                table, region=hr_elements, region_key="element", instance_key="instance_id"
            ),
            "lr": TableModel.parse(
                lr, region=lr_elements, region_key="element", instance_key="instance_id"
            ),
        },
    )
