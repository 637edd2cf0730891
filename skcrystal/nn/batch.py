"""``CrystalBatch``: several crystal graphs merged into one disconnected graph."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class CrystalBatch:
    """Tensors of a mini-batch of crystals; ``len()`` is the number of crystals.

    Attributes
    ----------
    atom_features : Tensor (N, F)
        Input feature vector of every atom of every crystal.
    center, neighbor : Tensor (E,) int64
        Directed edges as row indices into ``atom_features``.
    distance : Tensor (E,)
        Edge lengths in Å.
    crystal_index : Tensor (N,) int64
        Crystal (0 .. B-1) each atom belongs to.
    n_atoms : Tensor (B,) int64
        Number of atoms of each crystal.
    vector : Tensor (E, 3) or None
        Cartesian displacement (Å) from each edge's center to the image of its neighbour;
        needed by angle-aware networks (ALIGNN) only.
    space_group : Tensor (B,) int64 or None
        Space group number of each crystal (0 where unknown); needed by CrysGNN only.
    composition : Tensor (B, 118) float32 or None
        Element fractions of each crystal, column ``Z - 1`` for element ``Z``; needed by
        GATGNN's composition attention and by ElemNet.
    sample_weight : Tensor (B,) float32 or None
        Weight of each crystal in the loss (the ``sample_weight`` given to ``fit``,
        divided by its mean); None when the rows are not weighted. Networks ignore it.
    """

    atom_features: torch.Tensor
    center: torch.Tensor
    neighbor: torch.Tensor
    distance: torch.Tensor
    crystal_index: torch.Tensor
    n_atoms: torch.Tensor
    vector: torch.Tensor | None = None
    space_group: torch.Tensor | None = None
    composition: torch.Tensor | None = None
    sample_weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.n_atoms)

    def to(self, device: str | torch.device) -> CrystalBatch:
        """The same batch on ``device`` (how skorch moves inputs)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return CrystalBatch(**{k: v if v is None else v.to(device) for k, v in moved.items()})
