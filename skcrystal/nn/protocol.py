"""What a torch module must provide to be a skcrystal property network and a distillation
student.

A network class is built with keyword arguments ``n_atom_features`` (length of the atom
feature vectors), ``n_targets`` (number of properties) and ``cutoff`` (the graphs'
neighbour radius, Å), plus its own hyper-parameters; it takes a
:class:`~skcrystal.nn.batch.CrystalBatch` (atom features, bonds ``center <- neighbor``
with lengths and vectors, the crystal of each atom) and has

* ``node_width``: the width of its atom vectors;
* ``encode(batch)``: the atom vectors after its last layer, ``(n_atoms, node_width)``;
  distillation matches these (L2-normalised, projected to the teacher's width when they
  differ) to the teacher's;
* ``readout(nodes, batch)``: the predictions from those atom vectors,
  ``(n_crystals, n_targets)``, in standardised target units;
* ``forward(batch)``: ``readout(encode(batch), batch)``.

:class:`~skcrystal.nn.cgcnn.CGCNN`, its CrysXPP variant and
:class:`~skcrystal.nn.alignn.ALIGNN` follow it;
:class:`~skcrystal.estimators.GraphNetworkRegressor` trains any class that does, and
``DistilledRegressor(student=NetworkClass)`` distils into it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from skcrystal.nn.batch import CrystalBatch

#: Methods and attributes every network must have (checked on the built module).
REQUIRED = ("node_width", "encode", "readout")


@runtime_checkable
class PropertyNetwork(Protocol):
    """The student protocol (see the module docstring).

    Examples
    --------
    >>> from skcrystal.nn.cgcnn import CGCNN
    >>> isinstance(CGCNN(n_atom_features=92, n_targets=1, cutoff=8.0), PropertyNetwork)
    True
    """

    node_width: int

    def encode(self, batch: CrystalBatch) -> torch.Tensor: ...

    def readout(self, nodes: torch.Tensor, batch: CrystalBatch) -> torch.Tensor: ...

    def __call__(self, batch: CrystalBatch) -> torch.Tensor: ...


def check_network(module: torch.nn.Module, name: str) -> None:
    """Refuse a built module that lacks part of the protocol, saying which part."""
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise TypeError(
            f"{name} does not follow skcrystal's network protocol: it has no "
            f"{', '.join(missing)} (see skcrystal.nn.protocol)"
        )
