"""CHGNet (Deng et al., Nat. Mach. Intell. 2023) as a distillation teacher.

CHGNet is a universal interatomic potential trained on the Materials Project Trajectory
dataset (about 1.5 million DFT calculations of 146K MP compounds). Its atom vectors after
the interaction blocks (64 wide, before the last atom convolution: what CHGNet's own
``return_atom_feas`` gives) describe each atom's chemical environment; this module hands
them to :class:`~skcrystal.estimators.DistilledRegressor` as CHGNet computes them (their
lengths, about 17 to 36, vary with the atom and its environment). The distiller
L2-normalises them for its embedding loss and appends them unchanged with
``transfer="features"``: normalised input features did worse on the validation crystals
of the elastic moduli (docs/crysgnn.md).

Needs the optional extra: ``pip install "skcrystal[chgnet]"`` (the ``chgnet`` wheel ships
its weights; BSD licence).

**Leakage.** CHGNet was trained on MP relaxations, so the energies of MP crystals are not
a fair test of what it passes on: band gaps, moduli, HSE gaps and data from outside the
Materials Project are.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

from skcrystal.estimators.base import seeded
from skcrystal.graphs import CrystalGraphs
from skcrystal.graphs.build import describe
from skcrystal.graphs.inputs import as_item_list, to_structure


def _import_chgnet():
    try:
        from chgnet.model import CHGNet
    except ImportError as err:
        raise ImportError(
            'the "chgnet" teacher needs the chgnet package: pip install "skcrystal[chgnet]"'
        ) from err
    return CHGNet


class CHGNetTeacher:
    """CHGNet's atom vectors of each structure, as a teacher.

    Parameters
    ----------
    model_name : str, default="0.3.0"
        Which of the weights in the ``chgnet`` wheel (``CHGNet.load(model_name=...)``).
    batch_size : int, default=32
        Structures per CHGNet forward pass.
    device : str, default="cpu"

    Notes
    -----
    The structures themselves are embedded, so the student must be fitted on crystals
    (Structures, files, ASE Atoms), not on prebuilt ``CrystalGraphs``. A structure CHGNet
    cannot take is refused with a ValueError naming it: a disordered one (partially
    occupied sites), or one with an atom that has no neighbour within CHGNet's 6 Å.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CrystalGraphTransformer
    >>> nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
    ...                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> teacher = CHGNetTeacher()
    >>> teacher.node_embeddings([nacl], CrystalGraphTransformer().transform([nacl])).shape
    (8, 64)
    """

    name = "chgnet"
    graph_builder = None  # CHGNet reads the structures: any student graph will do

    def __init__(self, model_name: str = "0.3.0", batch_size: int = 32, device: str = "cpu"):
        self.model_name = model_name
        self.batch_size = batch_size
        self.device = device
        self._network = None
        self._from_wheel = True  # the network is the wheel's named weights, reloaded at will

    def _model(self):
        if self._network is None:
            chgnet = _import_chgnet()
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its parameter count
                self._network = chgnet.load(
                    model_name=self.model_name, use_device=self.device, verbose=False
                )
        return self._network

    def node_embeddings(self, crystals: Any, graphs: CrystalGraphs) -> np.ndarray:
        """CHGNet's atom vectors of each of ``crystals``, in site order, as it gives them.

        Raises
        ------
        ValueError
            When ``crystals`` is None (only graphs given), for a structure CHGNet cannot
            take (naming it), or when a structure's sites are not the atoms of its graph.
        """
        if crystals is None or isinstance(crystals, CrystalGraphs):
            raise ValueError(
                "the chgnet teacher embeds the structures themselves: fit on the crystals "
                "(Structures, files, ASE Atoms), not on CrystalGraphs"
            )
        model = self._model()
        converted = [
            self._convert(model, to_structure(item, i), i)
            for i, item in enumerate(as_item_list(crystals))
        ]
        with torch.no_grad():
            predictions = model.predict_graph(
                converted, task="e", return_atom_feas=True, batch_size=self.batch_size
            )
        if isinstance(predictions, dict):
            predictions = [predictions]
        nodes = [p["atom_fea"] for p in predictions]
        sizes = np.diff(graphs.node_ptr)
        for i, (vectors, size) in enumerate(zip(nodes, sizes, strict=True)):
            if len(vectors) != size:
                raise ValueError(
                    f"X[{i}]: CHGNet sees {len(vectors)} atoms, its graph {size}; give the "
                    "teacher the crystals the graphs were built from"
                )
        return np.concatenate(nodes).astype(np.float32)

    @staticmethod
    def _convert(model, structure, index: int):
        """CHGNet's graph of one structure, or a ValueError naming it."""
        if not structure.is_ordered:
            raise ValueError(
                f"{describe(structure, index)}: CHGNet takes ordered structures only, and "
                "this one has partially occupied sites; order it first (for example with "
                "pymatgen's OrderDisorderedStructureTransformation) or use the crysgnn teacher"
            )
        try:
            return model.graph_converter(structure, graph_id=str(index))
        except (ValueError, RuntimeError) as err:
            reason = " ".join(str(err).split())
            raise ValueError(f"{describe(structure, index)}: CHGNet refused it: {reason}") from None

    def untrained(self, random_state: int = 0) -> CHGNetTeacher:
        """CHGNet's architecture with freshly initialised weights (seeded)."""
        chgnet = _import_chgnet()
        twin = CHGNetTeacher(self.model_name, self.batch_size, self.device)
        with seeded(random_state, self.device), contextlib.redirect_stdout(io.StringIO()):
            twin._network = chgnet().to(self.device)
        twin._network.eval()
        twin._from_wheel = False
        return twin

    def __getstate__(self) -> dict:
        """Pickle the wheel's weights by name (reloaded when needed), an untrained twin's
        network with it."""
        state = self.__dict__.copy()
        if self._from_wheel:
            state["_network"] = None
        return state

    def __repr__(self) -> str:
        return f"CHGNetTeacher(model_name={self.model_name!r})"
