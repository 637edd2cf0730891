"""Parity of our CGCNN with the authors' pre-trained formation-energy model.

Loads txie-93/cgcnn ``pre-trained/formation-energy-per-atom.pth.tar`` with
``CGCNNRegressor.from_cgcnn_checkpoint`` and predicts all 36,737 Materials Project crystals
of ``load_mp_formation_energy``, once with the authors' ``atom_init.json`` (the table the
checkpoint was trained with) and once with our rebuilt ``"cgcnn"`` table, then breaks the
error down by the elements whose feature rows differ between the two tables. Writes the
``parity_cgcnn`` section of docs/benchmarks.md.

Run: ``python benchmarks/parity_cgcnn.py`` (needs ``SKCRYSTAL_DATA``, or the data home, with
``mp_cgcnn_formation_energy.tar.xz`` and ``reference_weights/cgcnn_original``). Parsing the
CIFs takes a few minutes the first time; the loader caches them.
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Element

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import machine, markdown_table, write_section
from skcrystal import CGCNNRegressor
from skcrystal.datasets import get_data_home, load_mp_formation_energy
from skcrystal.graphs import AtomFeatureTable, cgcnn_atom_features

RECORDED_MAE = 0.0397  # best_mae_error stored in the checkpoint (the authors' validation set)
ATOM_INIT = "mp_cgcnn_formation_energy/atom_init.json"


def authors_atom_init(folder: Path) -> Path:
    """Extract the authors' atom_init.json from the staged tarball into ``folder``."""
    with tarfile.open(get_data_home() / "mp_cgcnn_formation_energy.tar.xz") as tar:
        data = tar.extractfile(ATOM_INIT).read()
    path = folder / "atom_init.json"
    path.write_bytes(data)
    return path


def differing_elements(authors: AtomFeatureTable, ours: AtomFeatureTable) -> set[int]:
    """Atomic numbers known to the authors' table whose rows differ in ours."""
    known = np.flatnonzero(authors.known)
    return {int(z) for z in known if not np.array_equal(authors.values[z], ours.values[z])}


def main() -> None:
    torch.set_num_threads(1)
    checkpoint = (
        get_data_home() / "reference_weights/cgcnn_original/formation-energy-per-atom.pth.tar"
    )
    start = time.perf_counter()
    data = load_mp_formation_energy(n_jobs=-1)
    print(f"loaded {len(data)} crystals in {time.perf_counter() - start:.0f} s", flush=True)
    structures, y = data["structure"].tolist(), data["e_form"].to_numpy()

    rows, errors = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tables = {
            "authors' atom_init.json": authors_atom_init(Path(tmp)),
            "ours (`cgcnn`)": "cgcnn",
        }
        for label, atom_features in tables.items():
            reg = CGCNNRegressor.from_cgcnn_checkpoint(checkpoint, atom_features=atom_features)
            start = time.perf_counter()
            graphs = reg.graph_builder_.transform(structures)  # 2nd table: graphs cached
            built = time.perf_counter() - start
            start = time.perf_counter()
            pred = reg.predict(graphs)
            predicted = time.perf_counter() - start
            errors[label] = np.abs(pred - y)
            rows.append(
                {
                    "atom features": label,
                    "n": len(y),
                    "MAE (eV/atom)": float(errors[label].mean()),
                    "RMSE (eV/atom)": float(np.sqrt(np.mean((pred - y) ** 2))),
                    "MAE of mean predictor": float(np.abs(y - y.mean()).mean()),
                    "recorded MAE": RECORDED_MAE,
                    "graphs built/s": f"{len(y) / built:.0f}" if not rows else "(reused)",
                    "graphs predicted/s": f"{len(y) / predicted:.0f}",
                }
            )
            print(rows[-1], flush=True)
        authors = AtomFeatureTable.from_json(tables["authors' atom_init.json"])
    differ = differing_elements(authors, cgcnn_atom_features())

    # Per-element analysis: crystals containing an element whose row differs vs the rest.
    present = [{el.Z for el in s.composition.elements} for s in structures]
    has_differing = np.array([bool(zs & differ) for zs in present])
    err_authors, err_ours = errors["authors' atom_init.json"], errors["ours (`cgcnn`)"]

    def breakdown(label: str, mask: np.ndarray) -> dict:
        return {
            "crystals": label,
            "n": int(mask.sum()),
            "MAE, authors' table": float(err_authors[mask].mean()),
            "MAE, our table": float(err_ours[mask].mean()),
        }

    groups = [
        breakdown("containing an element with a differing row", has_differing),
        breakdown("all others", ~has_differing),
    ]
    for z in sorted(differ):
        mask = np.array([z in zs for zs in present])
        if mask.any():
            groups.append(breakdown(f"containing {Element.from_Z(z).symbol}", mask))

    symbols = ", ".join(Element.from_Z(z).symbol for z in sorted(differ))
    body = f"""
`python benchmarks/parity_cgcnn.py`, on {machine()}.

The authors' pre-trained formation-energy CGCNN (txie-93/cgcnn
`pre-trained/formation-energy-per-atom.pth.tar`, 4 convolutions, loaded with
`CGCNNRegressor.from_cgcnn_checkpoint`) predicts the {len(y):,} Materials Project crystals of
`load_mp_formation_energy`. **The checkpoint was trained on an overlapping MP set**, so this
is a sanity check of the re-implementation, not a fair benchmark; "recorded MAE" is the
`best_mae_error` stored in the checkpoint (the authors' validation split). Graph building
(8 Å, 12 neighbours, one process) and prediction (batches of 128) are timed separately;
the second row reuses the graphs built for the first.

{markdown_table(rows)}

Our `cgcnn` atom feature table is rebuilt from element data and differs from the authors'
`atom_init.json` for {len(differ)} elements:
{symbols}.
Mean absolute error (eV/atom) of the crystals containing them (elements absent from the set
are not listed), with each table:

{markdown_table(groups)}
"""
    write_section("parity_cgcnn", "CGCNN parity with the authors' pre-trained weights", body)


if __name__ == "__main__":
    main()
