"""Shared fixtures: the real-data folder beside the repository, and one Ray instance per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One intra-op thread: the suite must not slow to a crawl when the machine's two cores are
# shared (OpenMP threads spinning against another process), and results stay comparable.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the repository)")
    return SHARED_DATA


def start_local_ray():
    """The suite's local Ray instance (two CPUs, no dashboard), unless one is running."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    return ray


@pytest.fixture(scope="session")
def local_ray_starter():
    """:func:`start_local_ray`, for a test that stops the suite's Ray instance and must bring it back."""
    return start_local_ray


@pytest.fixture(scope="session")
def ray_session():
    """One Ray instance for every test marked ``ray`` (ray.init costs ~4 s and 0.5 GB here)."""
    ray = start_local_ray()
    yield ray
    ray.shutdown()
