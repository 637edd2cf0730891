"""Shared pytest configuration."""

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

# One torch thread: several tests train in 2 joblib workers at once on 2 cores, where
# more threads than cores make torch spin-wait (10x slower); single fits that want both
# cores ask for them.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def benchmark_script():
    """Import a script of ``benchmarks/`` by name (the scripts import each other as
    top-level modules, so their folder is on the path while one is imported)."""
    folder = str(Path(__file__).parent.parent / "benchmarks")

    def load(name: str):
        sys.path.insert(0, folder)
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(folder)

    return load


@pytest.fixture(scope="session")
def data_home() -> Path:
    """The data home with the staged datasets; a missing one fails the test, never skips it."""
    home = Path(os.environ["SKCRYSTAL_DATA"])
    staged = home / "mp_cgcnn_formation_energy.tar.xz"
    assert staged.is_file(), f"{staged} not found: set SKCRYSTAL_DATA to the staged data folder"
    return home


@pytest.fixture(scope="session")
def pymatgen_structures():
    """The test structures pymatgen ships (Si, SiO2, LiFePO4, SrTiO3, ...), by name."""
    import importlib.resources

    from pymatgen.core import Structure

    folder = importlib.resources.files("pymatgen") / "util" / "structures"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".json"))
    assert files, f"no structures found in {folder}"
    return {p.name.removesuffix(".json"): Structure.from_file(str(p)) for p in files}


@pytest.fixture(scope="session")
def mp_subset(data_home):
    """The first 400 crystals of the real MP formation-energy set."""
    from skcrystal.datasets import load_mp_formation_energy

    return load_mp_formation_energy(limit=400)


@pytest.fixture(scope="session")
def atom_init(data_home, tmp_path_factory):
    """The authors' atom_init.json, the table their CGCNN and CrysXPP weights were trained with."""
    import tarfile

    path = tmp_path_factory.mktemp("authors") / "atom_init.json"
    with tarfile.open(data_home / "mp_cgcnn_formation_energy.tar.xz") as tar:
        path.write_bytes(tar.extractfile("mp_cgcnn_formation_energy/atom_init.json").read())
    return path
