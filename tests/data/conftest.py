"""Shared settings of the data tests: small simulated rooms (cheap to simulate) and one RIR cache."""

from __future__ import annotations

import pytest

FAST = dict(t60_range=(0.2, 0.3), room_dims_max=(6.0, 5.0, 3.0))  # short rooms: cheap to simulate
SMALL_ROOMS = {"t60_range": (0.25, 0.45), "room_dims_max": (6.0, 5.0, 3.0), "distance_range": (0.7, 1.2)}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One RIR cache folder for the pair and DataModule tests (banks are simulated once)."""
    return str(tmp_path_factory.mktemp("rircache"))
