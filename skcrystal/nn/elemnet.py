"""ElemNet: a deep network on element fractions alone (Jha et al., Sci. Rep. 8, 17593, 2018).

Re-derived from the paper and the reference code (NU-CUCIS/ElemNet@45b801e,
``elemnet/dl_regressors.py``, ``sample/sample-run.config``; ../shared/guide/MODELS.md,
section 4): the fractions of 86 elements go through 17 fully connected ReLU layers
(4 x 1024, 3 x 512, 3 x 256, 3 x 128, 2 x 64, 1 x 32) and a linear output, with dropout
0.2, 0.1, 0.3 and 0.2 after the 1024, 512, 256 and 128 blocks. Unlike the reference code,
which keeps dropout on when it evaluates a regressor, dropout is off in evaluation mode.
"""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Element
from torch import nn

from skcrystal.nn.batch import CrystalBatch

#: The elements ElemNet encodes, in the reference code's order (``elements_tl``): H to Pu
#: without He, Ne, Ar, Po, At, Rn, Fr and Ra, which no training compound contained.
EXCLUDED = ("He", "Ne", "Ar", "Po", "At", "Rn", "Fr", "Ra")
ELEMENTS = tuple(
    Element.from_Z(z).symbol for z in range(1, 95) if Element.from_Z(z).symbol not in EXCLUDED
)
#: Columns of :meth:`~skcrystal.CrystalGraphs.composition` (``Z - 1``) that ElemNet reads.
COLUMNS = np.array([Element(symbol).Z - 1 for symbol in ELEMENTS])

#: The reference architecture: (width, layers, dropout after the block).
BLOCKS = ((1024, 4, 0.2), (512, 3, 0.1), (256, 3, 0.3), (128, 3, 0.2), (64, 2, 0.0), (32, 1, 0.0))


class ElemNet(nn.Module):
    """The 17-layer ElemNet on the 86 element fractions of each crystal.

    Takes ``batch.composition`` only. ``encode`` gives the 32 activations of the last
    hidden layer per crystal, repeated for each of its atoms (the network protocol of
    :mod:`skcrystal.nn.protocol` has atom vectors; ElemNet has crystal vectors only, so
    their mean over a crystal's atoms is the crystal vector itself).

    Parameters
    ----------
    n_atom_features, cutoff
        Accepted for the protocol; unused.
    n_targets : int
        Number of predicted properties.
    blocks : sequence of (width, layers, dropout), default=BLOCKS
        The hidden layers.

    Examples
    --------
    >>> model = ElemNet(n_atom_features=92, n_targets=1, cutoff=0.0)
    >>> composition = torch.zeros(2, 118); composition[:, [7, 25]] = torch.tensor([0.6, 0.4])
    >>> batch = CrystalBatch(
    ...     atom_features=torch.rand(2, 92), center=torch.zeros(0, dtype=torch.long),
    ...     neighbor=torch.zeros(0, dtype=torch.long), distance=torch.zeros(0),
    ...     crystal_index=torch.tensor([0, 1]), n_atoms=torch.tensor([1, 1]),
    ...     composition=composition)
    >>> model.eval()(batch).shape, sum(p.numel() for p in model.parameters())
    (torch.Size([2, 1]), 4631361)
    """

    def __init__(
        self,
        n_atom_features: int,
        n_targets: int,
        cutoff: float,
        blocks: tuple = BLOCKS,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = len(ELEMENTS)
        for block_width, depth, dropout in blocks:
            for _ in range(depth):
                layers += [nn.Linear(width, block_width), nn.ReLU()]
                width = block_width
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, n_targets)
        self.register_buffer("columns", torch.as_tensor(COLUMNS), persistent=False)
        self.node_width = width
        for module in self.modules():  # Xavier, as tf-slim initialises the reference
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, batch: CrystalBatch) -> torch.Tensor:
        """The last hidden layer of each crystal, repeated per atom, (N, 32)."""
        return self.hidden(batch.composition[:, self.columns])[batch.crystal_index]

    def readout(self, nodes: torch.Tensor, batch: CrystalBatch) -> torch.Tensor:
        """Predictions (B, n_targets) from the crystal vectors."""
        first_atom = torch.cumsum(batch.n_atoms, 0) - batch.n_atoms
        return self.out(nodes[first_atom])

    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        return self.out(self.hidden(batch.composition[:, self.columns]))
