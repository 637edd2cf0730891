"""Attribute masking: the node-level self-supervision of "Pretrain-GNN" on crystals.

Hu et al. (ICLR 2020; snap-stanford/pretrain-gnns@8b20528, ``chem/util.py``
``MaskAtom``, ``chem/pretrain_masking.py``) hide the attributes of 15 % of each
molecule's atoms, ``int(0.15 * n_atoms + 1)`` of them, behind a mask token and train the
network to predict them from the atoms' final vectors; CrysGNN's Table 3 uses it as a
baseline. On crystals (../shared/guide/MODELS.md, section 6) the encoder is CrysGNN's
five-convolution CGCNN, the mask token a learned atom feature vector, and the attributes
to predict the masked atoms' own feature vectors (CrysAE's atom-feature decoder, binary
cross-entropy): they say which element sits there, and, unlike a single element label,
are defined for disordered sites too (occupancy-weighted).

Hu et al.'s other task, context prediction, is not offered: it contrasts a K-hop
neighbourhood (K = 5) with the ring between 4 and 7 hops around it, and in a periodic
crystal graph of 12 to 14 neighbours per atom, four hops already reach every atom of a
typical 27-atom cell (MODELS.md, section 6), so the ring holds the same atoms as the
neighbourhood; making it meaningful needs hops counted over periodic images
(supercells), a different task.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.crysgnn import CrysGNN


class MaskedAtomsOutput(NamedTuple):
    """What :meth:`AtomMaskingCrysGNN.forward` returns: the decoder's logits for the
    masked atoms' feature vectors, those vectors, and the crystal of each masked atom."""

    feature_logits: torch.Tensor  # (M, F)
    feature_target: torch.Tensor  # (M, F)
    crystal_index: torch.Tensor  # (M,)
    n_crystals: int


def choose_masked_atoms(
    crystal_index: torch.Tensor,
    n_atoms: torch.Tensor,
    rate: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A boolean mask of ``int(rate * n + 1)`` atoms drawn at random in each crystal of
    ``n`` atoms (all of them when that is more than ``n``).

    Examples
    --------
    >>> crystal = torch.tensor([0] * 10 + [1] * 3)
    >>> masked = choose_masked_atoms(crystal, torch.tensor([10, 3]), 0.15)
    >>> int(masked[:10].sum()), int(masked[10:].sum())
    (2, 1)
    """
    keys = torch.rand(len(crystal_index), generator=generator, device=crystal_index.device)
    order = torch.argsort(crystal_index * 2.0 + keys)  # by crystal, at random within it
    first = torch.cumsum(n_atoms, 0) - n_atoms
    rank = torch.empty_like(crystal_index)
    rank[order] = torch.arange(len(order), device=order.device) - first[crystal_index[order]]
    per_crystal = (rate * n_atoms + 1).long()
    return rank < per_crystal[crystal_index]


class AtomMaskingCrysGNN(CrysGNN):
    """CrysGNN's encoder trained by attribute masking (see the module docstring).

    In training, each forward pass hides a fresh random choice of atoms; in evaluation
    the choice is fixed (seed 0), so that validation losses compare across epochs. The
    node embeddings (:meth:`node_embeddings`) are those of the unmasked crystal, as for
    a CrysGNN teacher.

    Parameters
    ----------
    n_atom_features, cutoff, **kwargs
        As :class:`~skcrystal.nn.crysgnn.CrysGNN`.
    mask_rate : float, default=0.15

    Examples
    --------
    >>> model = AtomMaskingCrysGNN(n_atom_features=92, cutoff=8.0)
    >>> batch = CrystalBatch(
    ...     atom_features=torch.rand(3, 92), center=torch.tensor([0, 1, 2, 2]),
    ...     neighbor=torch.tensor([1, 0, 2, 2]), distance=torch.tensor([2.0, 2.0, 3.0, 3.0]),
    ...     crystal_index=torch.tensor([0, 0, 1]), n_atoms=torch.tensor([2, 1]))
    >>> out = model(batch)  # one atom of each crystal hidden
    >>> out.feature_logits.shape, out.crystal_index.tolist()
    (torch.Size([2, 92]), [0, 1])
    """

    def __init__(self, n_atom_features: int, cutoff: float, *, mask_rate: float = 0.15, **kwargs):
        super().__init__(n_atom_features, cutoff, **kwargs)
        self.mask_rate = mask_rate
        self.mask_token = nn.Parameter(torch.zeros(n_atom_features))

    def forward(self, batch: CrystalBatch) -> MaskedAtomsOutput:
        """Hide some atoms' features, encode, and decode the hidden features."""
        generator = None
        if not self.training:
            generator = torch.Generator(device=batch.atom_features.device).manual_seed(0)
        masked = choose_masked_atoms(batch.crystal_index, batch.n_atoms, self.mask_rate, generator)
        features = torch.where(masked[:, None], self.mask_token, batch.atom_features)
        nodes = self.node_embeddings(dataclasses.replace(batch, atom_features=features))
        return MaskedAtomsOutput(
            feature_logits=self.decode_atom_features(nodes[masked]),
            feature_target=batch.atom_features[masked],
            crystal_index=batch.crystal_index[masked],
            n_crystals=len(batch),
        )


class MaskedAtomLoss(nn.Module):
    """Binary cross-entropy of the masked atoms' features: the mean over each crystal's
    masked atoms and features, then over crystals (each crystal weighs alike)."""

    def components(self, out: MaskedAtomsOutput) -> dict[str, torch.Tensor]:
        """The batch loss by name, for :meth:`CrysGNNPretrainer.loss_components`."""
        error = F.binary_cross_entropy_with_logits(
            out.feature_logits, out.feature_target, reduction="none"
        ).mean(dim=1)
        total = error.new_zeros(out.n_crystals).index_add_(0, out.crystal_index, error)
        count = error.new_zeros(out.n_crystals).index_add_(
            0, out.crystal_index, torch.ones_like(error)
        )
        return {"masked_features": (total / count).mean()}

    def forward(self, out: MaskedAtomsOutput) -> torch.Tensor:
        return self.components(out)["masked_features"]
