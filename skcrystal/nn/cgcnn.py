"""The CGCNN property predictor (Xie & Grossman, PRL 120, 145301, 2018)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.layers import CGCNNConv, GaussianExpansion, mean_pool


class CGCNN(nn.Module):
    """Embedding, ``n_conv`` gated convolutions, mean pooling and an MLP head.

    Parameter names follow the authors' code (``embedding``, ``convs.k.fc_full``,
    ``conv_to_fc``, ``fcs``, ``fc_out``), so their checkpoints load with
    ``load_state_dict``. The head applies softplus before and after ``conv_to_fc``, as the
    authors' code does. Follows the network protocol of :mod:`skcrystal.nn.protocol`.

    Parameters
    ----------
    n_atom_features : int
        Length of the input atom feature vectors (92 for the CGCNN table).
    n_targets : int
        Number of predicted properties.
    cutoff : float
        Neighbour cutoff in Å; sets the range of the Gaussian distance expansion.
    gaussian_step : float
        Spacing and width of the Gaussians, Å.
    atom_fea_len, n_conv, h_fea_len, n_h : int
        Width of atom embeddings, number of convolutions, width and depth of the head.

    Examples
    --------
    >>> model = CGCNN(n_atom_features=92, n_targets=1, cutoff=8.0)
    >>> batch = CrystalBatch(
    ...     atom_features=torch.rand(3, 92), center=torch.tensor([0, 1, 2, 2]),
    ...     neighbor=torch.tensor([1, 0, 2, 2]), distance=torch.tensor([2.0, 2.0, 3.0, 3.0]),
    ...     crystal_index=torch.tensor([0, 0, 1]), n_atoms=torch.tensor([2, 1]))
    >>> model(batch).shape
    torch.Size([2, 1])
    """

    def __init__(
        self,
        n_atom_features: int,
        n_targets: int,
        cutoff: float,
        gaussian_step: float = 0.2,
        atom_fea_len: int = 64,
        n_conv: int = 3,
        h_fea_len: int = 128,
        n_h: int = 1,
    ) -> None:
        super().__init__()
        self.expansion = GaussianExpansion(cutoff, gaussian_step)
        self.embedding = nn.Linear(n_atom_features, atom_fea_len)
        self.convs = nn.ModuleList(
            CGCNNConv(atom_fea_len, self.expansion.n_features) for _ in range(n_conv)
        )
        self.conv_to_fc = nn.Linear(atom_fea_len, h_fea_len)
        self.fcs = nn.ModuleList(nn.Linear(h_fea_len, h_fea_len) for _ in range(n_h - 1))
        self.fc_out = nn.Linear(h_fea_len, n_targets)
        self.node_width = atom_fea_len

    def embed_atoms(self, atom_features: torch.Tensor) -> torch.Tensor:
        """Input atom features -> initial atom vectors (N, atom_fea_len)."""
        return self.embedding(atom_features)

    def encode(self, batch: CrystalBatch) -> torch.Tensor:
        """Atom vectors after the last convolution, (N, atom_fea_len)."""
        atom_fea = self.embed_atoms(batch.atom_features)
        edge_fea = self.expansion(batch.distance)
        for conv in self.convs:
            atom_fea = conv(atom_fea, batch.center, batch.neighbor, edge_fea)
        return atom_fea

    def head(self, crystal_fea: torch.Tensor) -> torch.Tensor:
        """Pooled crystal vectors (B, atom_fea_len) -> predictions (B, n_targets)."""
        hidden = F.softplus(self.conv_to_fc(F.softplus(crystal_fea)))
        for fc in self.fcs:
            hidden = F.softplus(fc(hidden))
        return self.fc_out(hidden)

    def readout(self, atom_fea: torch.Tensor, batch: CrystalBatch) -> torch.Tensor:
        """Atom vectors (N, atom_fea_len) -> mean per crystal -> predictions (B, n_targets)."""
        return self.head(mean_pool(atom_fea, batch.crystal_index, batch.n_atoms))

    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        """Predictions (B, n_targets) for a batch of crystals."""
        return self.readout(self.encode(batch), batch)
