"""Shared pytest configuration."""

import os
from pathlib import Path

import pytest

# The staged real datasets: $SKCRYSTAL_DATA if set, else <repo root>/../shared/data.
# Set here, at import, so that every test and doctest sees the same data home.
os.environ.setdefault(
    "SKCRYSTAL_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def data_home() -> Path:
    """The data home with the staged datasets; a missing one fails the test, never skips it."""
    home = Path(os.environ["SKCRYSTAL_DATA"])
    staged = home / "mp_cgcnn_formation_energy.tar.xz"
    assert staged.is_file(), f"{staged} not found: set SKCRYSTAL_DATA to the staged data folder"
    return home
