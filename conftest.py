"""pytest set-up shared by tests/ and the doctests in skcrystal/.

The staged real datasets are found through one setting, ``$SKCRYSTAL_DATA``; unset, it
defaults to ``<repo>/../shared/data``. A missing data home fails the whole run: tests on
real data never skip.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault(
    "SKCRYSTAL_DATA", str(Path(__file__).resolve().parent.parent / "shared" / "data")
)


def pytest_sessionstart(session: pytest.Session) -> None:
    staged = Path(os.environ["SKCRYSTAL_DATA"]) / "mp_cgcnn_formation_energy.tar.xz"
    if not staged.is_file():
        raise pytest.UsageError(
            f"{staged} not found: set SKCRYSTAL_DATA to the folder with the staged datasets"
        )
