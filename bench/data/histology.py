"""Cut the image crops that cover samples' HR grids, at a fixed number of pixels per position."""

from __future__ import annotations

import numpy as np

from bench.data.section import Section
from bench.errors import BenchError, one_line


def _open(section: Section, px: int):  # -> PIL.Image.Image
    """The section's image, decoded at the coarsest JPEG draft scale that keeps ``px``."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # full-resolution slides exceed PIL's bomb guard by design
    if isinstance(section.image, np.ndarray):
        im = Image.fromarray(np.ascontiguousarray(section.image))
    else:
        try:
            im = Image.open(section.image)
            step = float(np.hypot(*section.to_pixel[:, 0]))  # coordinate px per column step
            reduce = max(1, int(step * im.size[0] / section.image_size[0] // px))
            if im.format == "JPEG" and reduce > 1:  # decode at 1/2, 1/4 or 1/8 scale if we can
                im.draft(im.mode, (im.size[0] // reduce, im.size[1] // reduce))
            im.load()
        except Exception as err:  # noqa: BLE001 - PIL raises OSError, struct.error, SyntaxError...
            raise BenchError(
                f"{section.image}: not a readable image ({one_line(err)}); a truncated or "
                "corrupt file: re-fetch the dataset"
            ) from None
    mode = "L" if im.mode in ("L", "I;16", "I", "F") else "RGB"
    if im.mode in ("I;16", "I", "F"):  # 16-bit morphology images: stretch to 8 bits
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(arr / max(arr.max(), 1.0) * 255, 0, 255).astype(np.uint8)
        im = Image.fromarray(arr)
    im = im.convert(mode)
    if mode == "L":  # fluorescence (e.g. DAPI) is often very dark: stretch to its 99.9th pct
        arr = np.asarray(im)
        top = float(np.percentile(arr, 99.9))
        if 0 < top < 255:
            im = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8))
    return im


def crop_grids(
    section: Section, origins: list[tuple[int, int]], shape: tuple[int, int], px: int
) -> list[np.ndarray]:
    """The image under each HR grid of ``shape`` placed at ``origins``, ``px`` pixels per position.

    HR position ``(i, j)`` of a grid with origin ``(r0, c0)`` is grid ``(row, col) = (r0 + i,
    c0 + j)`` and covers output rows ``[i px, (i + 1) px)`` and columns ``[j px, (j + 1) px)``,
    centred on the spot centre. One-channel images (fluorescence such as DAPI) are stretched so
    the whole image's 99.9th percentile maps to 255 (no information from any sample's target is
    used). Grid-to-pixel mapping: ``section.to_pixel`` (rescaled to the
    stored image's size); bilinear resampling; area outside the slide is white. The image is
    decoded once for all origins.

    Returns
    -------
    one (C, H px, W px) uint8 array per origin, C = 3 for RGB images, 1 for greyscale (e.g. DAPI).
    """
    from PIL import Image

    h, w = shape
    with _open(section, px) as im:
        sx, sy = im.size[0] / section.image_size[0], im.size[1] / section.image_size[1]
        fill = 255 if im.mode == "L" else (255, 255, 255)
        a = section.to_pixel
        out = []
        for origin in origins:
            # PIL maps output pixel centres (+0.5) to input coordinates; output coordinate u is
            # grid column origin - 0.5 + u / px, and likewise for rows
            c0, r0 = origin[1] - 0.5, origin[0] - 0.5
            coeffs = (
                sx * a[0, 0] / px,
                sx * a[0, 1] / px,
                sx * (a[0, 0] * c0 + a[0, 1] * r0 + a[0, 2]),
                sy * a[1, 0] / px,
                sy * a[1, 1] / px,
                sy * (a[1, 0] * c0 + a[1, 1] * r0 + a[1, 2]),
            )
            crop = im.transform(
                (w * px, h * px),
                Image.Transform.AFFINE,
                coeffs,
                Image.Resampling.BILINEAR,
                fillcolor=fill,
            )
            arr = np.asarray(crop, dtype=np.uint8)
            out.append(
                arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
            )
    return out


def thumbnail(section: Section, max_px: int = 2000) -> tuple[np.ndarray, float]:
    """The section's image as an (H, W, 3) uint8 RGB array whose long side is at most ``max_px``,
    and its scale factor (thumbnail pixels per coordinate-space pixel, scanpy's
    ``tissue_hires_scalef``). One-channel images are stretched as in :func:`crop_grids`."""
    from PIL import Image

    w, h = section.image_size
    factor = min(1.0, max_px / max(w, h))
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    step = float(np.hypot(*section.to_pixel[:, 0]))  # open at a draft keeping ~this many px
    with _open(section, max(1, int(np.ceil(step * factor)))) as im:
        rgb = im.convert("RGB").resize(size, Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8), size[0] / w
