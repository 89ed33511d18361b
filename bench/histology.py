"""Cut the image crop that covers a sample's HR grid, at a fixed number of pixels per position."""

from __future__ import annotations

import numpy as np

from bench.section import Section


def crop_grid(
    section: Section, origin: tuple[int, int], shape: tuple[int, int], px: int
) -> np.ndarray:
    """The image under an HR grid, resampled to ``px`` pixels per HR position.

    HR position ``(i, j)`` is lattice ``(row, col) = (origin[0] + i, origin[1] + j)`` and covers
    output rows ``[i px, (i + 1) px)`` and columns ``[j px, (j + 1) px)``, centred on the spot
    centre. Lattice-to-pixel mapping: ``section.to_pixel``; bilinear resampling; area outside the
    slide is white.

    Returns
    -------
    (C, H px, W px) uint8, C = 3 for RGB images, 1 for greyscale (e.g. DAPI).
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # full-resolution slides exceed PIL's bomb guard by design
    h, w = shape
    with Image.open(section.image_path) as im:
        step = float(np.hypot(*section.to_pixel[:, 0]))  # image pixels per lattice step
        reduce = max(1, int(step // px))  # decode JPEGs at 1/2, 1/4 or 1/8 scale when we can
        if im.format == "JPEG" and reduce > 1:
            im.draft(im.mode, (im.size[0] // reduce, im.size[1] // reduce))
        im.load()
        sx, sy = im.size[0] / section.image_size[0], im.size[1] / section.image_size[1]
        mode = "L" if im.mode in ("L", "I;16", "I") else "RGB"
        im = im.convert(mode)
        # PIL maps continuous output coordinates (pixel centres at +0.5) to input ones; output
        # coordinate u is lattice column origin - 0.5 + u / px, and likewise for rows
        a = section.to_pixel
        c0 = origin[1] - 0.5
        r0 = origin[0] - 0.5
        coeffs = (
            sx * a[0, 0] / px,
            sx * a[0, 1] / px,
            sx * (a[0, 0] * c0 + a[0, 1] * r0 + a[0, 2]),
            sy * a[1, 0] / px,
            sy * a[1, 1] / px,
            sy * (a[1, 0] * c0 + a[1, 1] * r0 + a[1, 2]),
        )
        fill = 255 if mode == "L" else (255, 255, 255)
        out = im.transform(
            (w * px, h * px),
            Image.Transform.AFFINE,
            coeffs,
            Image.Resampling.BILINEAR,
            fillcolor=fill,
        )
    arr = np.asarray(out, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
