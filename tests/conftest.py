"""Shared fixtures: the real data directory (../shared/data or $STSR_DATA_DIR), a built split."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    env = os.environ.get("STSR_DATA_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session", autouse=True)
def _private_split_cache(tmp_path_factory):
    """Tests (and the CLI they start) build splits into a fresh cache, never the user's."""
    os.environ["STSR_CACHE_DIR"] = str(tmp_path_factory.mktemp("split-cache"))


@pytest.fixture(scope="session")
def root() -> Path:
    path = data_root()
    assert (path / "her2st").is_dir(), f"test data expected at {path}; set STSR_DATA_DIR"
    return path


@pytest.fixture(scope="session")
def her2st(root):
    from bench.data.cards import load_card
    from bench.data.splits import build

    return build(load_card("her2st"), root, 2)


@pytest.fixture
def register_method():
    """``register_method(name, module, cls, **fixed)``: a method registered for one test."""
    from methods import registry

    undo = []
    yield lambda *args, **fixed: undo.append(registry.register(*args, **fixed))
    for step in reversed(undo):
        step()


# What takes a test out of the inner loop (``make test-fast``), by module: grids and training
# runs, real data beyond one small section (slow), child processes, Ray, an MLflow server.
# ``make test`` (CI) runs everything. Kept here, in one place, so modules edited elsewhere
# need no marker lines.
MARKS = {
    "test_cli": ("slow",),
    "test_resume": ("slow", "subprocess"),
    "test_verify": ("slow",),
    "test_locks": ("slow", "subprocess"),
    "test_deadline": ("slow", "subprocess"),
    "test_memory_cap": ("slow", "subprocess"),
    "test_disk": ("slow", "subprocess"),
    "test_executors": ("slow", "ray"),
    "test_ray_loopback": ("slow", "ray"),
    "test_redaction": ("slow",),
    "test_tracking_server": ("slow", "mlflow_server", "subprocess"),
    "test_map_figures": ("slow",),
    "test_bad_data": ("slow", "subprocess"),
    "test_datasets": ("slow",),
    "test_splits": ("slow",),
    "test_reader_h5ad": ("slow",),
    "test_reader_spaceranger": ("slow",),
    "test_reader_transcripts": ("slow",),
    "test_user_cards": ("slow",),
    "test_contract_all": ("slow",),
    "test_plugins": ("slow", "subprocess"),
    "test_registration": ("slow",),
    "test_interrupt": ("slow", "subprocess"),
    "test_ray_lost_worker": ("slow", "ray"),
    "test_baselines_diffusion": ("slow",),
    "test_diffst_method": ("slow",),
    "test_diffst_network": ("slow",),
    "test_diffusion_variants": ("slow",),
}


def pytest_collection_modifyitems(items):
    for item in items:
        for name in MARKS.get(item.path.stem, ()):
            item.add_marker(getattr(pytest.mark, name))
