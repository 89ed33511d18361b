"""The registration check (:mod:`bench.data.registration`): every committed section is placed on
its image better than any flip of it; a flipped image of each committed platform is caught; and
``bench split`` warns (stderr, exit 0) about a synthetic section whose image file was flipped."""

from __future__ import annotations

import dataclasses
import gzip
import json

import numpy as np
import pandas as pd
import pytest
import synthetic as syn
from PIL import Image
from scipy import ndimage

from bench import cli
from bench.data import cards, registration, splits
from bench.data.histology import thumbnail

COMMITTED = ["her2st", "visium_cytassist_mouse_embryo", "xenium_bone_marrow"]


@pytest.fixture(scope="module")
def sections(root) -> dict[str, dict]:
    out = {}
    for name in COMMITTED:
        card = cards.load_card(name)
        out[name] = splits.read_sections(card, root, splits.card_sections(card))
    return out


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_sections_are_placed_better_than_any_flip(sections, name) -> None:
    for section in sections[name].values():
        found = registration.check(section)
        assert found.suspect is None, found.line()
        assert abs(found.r) >= registration.MIN_R, found.line()


def _moved(rgb: np.ndarray, how: str, step: int) -> np.ndarray:
    if how == "flipped":
        return np.flipud(rgb)
    if how == "turned":  # a quarter turn counter-clockwise, stretched back to the frame
        return registration.turned(rgb.mean(axis=2), 1).astype(np.uint8)
    return ndimage.shift(rgb, (0, step, 0), order=0, mode="nearest")  # one grid step right


@pytest.mark.parametrize("name", COMMITTED)
@pytest.mark.parametrize(
    ("how", "undo"),
    [("flipped", "flipped up-down"), ("turned", "rotated 270 degrees"),
     ("shifted", "shifted one step left")],
)  # fmt: skip
def test_a_flipped_turned_or_shifted_image_is_caught(sections, name, how, undo) -> None:
    section = next(iter(sections[name].values()))
    rgb, factor = thumbnail(section, 4000)
    step = round(float(np.hypot(*section.to_pixel[:, 0])) * factor)
    moved = dataclasses.replace(
        section,
        image=np.ascontiguousarray(_moved(rgb, how, step)),
        image_size=(rgb.shape[1], rgb.shape[0]),
        to_pixel=section.to_pixel * factor,
    )
    assert registration.check(moved).suspect == undo


def _counts_follow_the_image(ds: syn.Dataset) -> None:
    """Rewrite each section's counts so that spot totals follow the image's darkness."""
    rng = np.random.default_rng(0)
    for entry in ds.card["sections"].values():
        grey = np.asarray(Image.open(ds.folder / entry["image"]).convert("L"), dtype=float)
        spots = pd.read_csv(ds.folder / entry["spots"], sep="\t")
        half = syn.PX_PER_STEP // 2
        dark = np.array(
            [
                255 - grey[int(y) - half : int(y) + half, int(x) - half : int(x) + half].mean()
                for x, y in zip(spots["pixel_x"], spots["pixel_y"], strict=True)
            ]
        )
        with gzip.open(ds.folder / entry["counts"], "rt") as fh:
            table = pd.read_csv(fh, sep="\t", index_col=0)
        scale = np.exp((dark - dark.mean()) / (dark.std() + 1e-9))
        table.iloc[:, :] = rng.poisson(np.outer(scale, table.mean(axis=0).to_numpy() + 1.0))
        with gzip.open(ds.folder / entry["counts"], "wt") as fh:
            table.to_csv(fh, sep="\t")


def test_split_warns_about_a_flipped_image(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    monkeypatch.setenv("STSR_CACHE_DIR", str(tmp_path / "cache"))
    ds = syn.legacy_st(tmp_path / "cards", tmp_path / "data")
    _counts_follow_the_image(ds)
    ds.rehash()
    data = ["--data-dir", str(tmp_path / "data")]
    assert cli.main(["split", "--datasets", ds.name, *data]) == 0
    out, err = capsys.readouterr()
    assert "registration B1: r = " in out and "warning" not in err

    image = ds.folder / ds.card["sections"]["B1"]["image"]
    Image.open(image).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(image, quality=90)
    ds.rehash()
    assert cli.main(["split", "--datasets", ds.name, *data]) == 0  # a warning, not a refusal
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"bench: warning: {ds.name} section B1")
    assert "flipped up-down matches the counts better" in lines[0]
    assert "[read].origin / affine" in lines[0]
    spec = json.loads((ds.card_dir / "split-k2.json").read_text())
    assert any(n.startswith("registration B1: r = ") for n in spec["notes"])

    (ds.card_dir / "split-k2.json").unlink()
    assert cli.main(["split", "--datasets", ds.name, *data, "--strict"]) == 2
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "nothing written (--strict)" in lines[0]
    assert not (ds.card_dir / "split-k2.json").exists()
