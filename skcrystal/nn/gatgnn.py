"""GATGNN: the global-attention graph neural network (Louis et al., PCCP 22, 18141, 2020).

Re-derived from the paper and the reference code's maths (superlouis/GATGNN@3d3bad9,
``gatgnn/model.py``; ../shared/guide/MODELS.md, section 2):

* atoms: a linear embedding of the atom features (no activation); bonds: a linear
  embedding of CGCNN's Gaussian distance expansion, then LeakyReLU(0.2);
* augmented graph-attention (AGAT) layers: every head maps ``[atom ‖ bond]`` of both ends
  of a bond with one shared matrix, scores the pair, normalises the scores over the bonds
  of each atom (softmax) and sums the neighbours' vectors with these weights; the heads
  are averaged; batch norm and softplus follow each layer;
* composition attention: a weight per atom from its vector and its crystal's element
  fractions, normalised over the crystal's atoms; the weighted sum of the atom vectors
  goes through two softplus layers and a linear output.

It reads the CGCNN graph as it is (12 nearest neighbours within 8 Å, 41 Gaussians). The
reference's cluster-attention variants (GI M-2/3/4: spectral clustering of the atom
positions, written for CUDA only) are not implemented.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter, softmax

from skcrystal.graphs.container import COMPOSITION_WIDTH
from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.layers import BatchNorm1d, GaussianExpansion


class AGATConv(MessagePassing):
    r"""GATGNN's augmented graph-attention layer (``GAT_Crystal`` of the reference code).

    For a bond from neighbour :math:`j` to atom :math:`i` with vector :math:`e_{ij}` and
    head :math:`h`:

    .. math::
        \tilde x_i &= \mathrm{softplus}([x_i \| e_{ij}] W), \quad
        \tilde x_j = \mathrm{softplus}([x_j \| e_{ij}] W)\\
        s_{ij} &= \mathrm{softplus}\Big(\mathrm{BN}\big(\mathrm{softplus}
                  (a_h \cdot [\tilde x_i \| \tilde x_j])\big)\Big), \quad
        \alpha_{ij} = \mathrm{softmax}_{j \in N(i)}(s_{ij})\\
        x_i' &= \frac{1}{H} \sum_h \sum_{j} \alpha_{ij}^h \tilde x_j^h + b

    ``W`` is shared by all heads' halves (one matrix of ``heads * width`` columns), the
    batch norm is over the ``heads`` scores of all bonds. Not GATv2 (which scores
    ``a . LeakyReLU(W [x_i ‖ x_j ‖ e])``).

    Examples
    --------
    >>> conv = AGATConv(width=8, heads=2)
    >>> x, e = torch.rand(3, 8), torch.rand(4, 8)
    >>> center, neighbor = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 0, 0])
    >>> conv(x, center, neighbor, e).shape
    torch.Size([3, 8])
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.width, self.heads = width, heads
        self.weight = nn.Linear(2 * width, heads * width, bias=False)
        self.attention = nn.Parameter(torch.empty(1, heads, 2 * width))
        self.score_norm = BatchNorm1d(heads)
        self.bias = nn.Parameter(torch.zeros(width))
        nn.init.xavier_uniform_(self.weight.weight)
        nn.init.xavier_uniform_(self.attention)

    def forward(
        self,
        atoms: torch.Tensor,
        center: torch.Tensor,
        neighbor: torch.Tensor,
        bonds: torch.Tensor,
    ) -> torch.Tensor:
        # [x ‖ e] W = x W_x + e W_e: the atoms' half once per atom, the bonds' once per
        # bond (shared by both ends), instead of two (E, 2 width) products per bond.
        atom_weight, bond_weight = self.weight.weight.split(self.width, dim=1)
        edge_index = torch.stack([neighbor, center])  # source j -> target i
        out = self.propagate(edge_index, x=atoms @ atom_weight.T, bonds=bonds @ bond_weight.T)
        return out + self.bias

    def message(self, x_i, x_j, bonds, index, ptr, size_i):
        shape = (-1, self.heads, self.width)
        center = F.softplus(x_i + bonds).view(shape)
        neighbor = F.softplus(x_j + bonds).view(shape)
        attend_center, attend_neighbor = self.attention.split(self.width, dim=-1)
        score = (center * attend_center).sum(dim=-1) + (neighbor * attend_neighbor).sum(dim=-1)
        score = F.softplus(self.score_norm(F.softplus(score)))
        alpha = softmax(score, index, ptr, size_i)  # over the bonds of each atom
        # the heads' mean per bond before the sum over bonds (both linear): (E, width)
        return (alpha[..., None] * neighbor).mean(dim=1)


class CompositionAttention(nn.Module):
    """Per-atom weights from ``[atom vector ‖ element fractions of its crystal]``,
    softmax-normalised over the atoms of each crystal (GATGNN's "GI M-1")."""

    def __init__(self, width: int, hidden: int = 32) -> None:
        super().__init__()
        self.hidden = nn.Linear(width + COMPOSITION_WIDTH, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, atoms: torch.Tensor, batch: CrystalBatch) -> torch.Tensor:
        """Weights (N, 1) that sum to 1 over each crystal's atoms."""
        composition = batch.composition[batch.crystal_index]
        score = self.score(F.softplus(self.hidden(torch.cat([atoms, composition], dim=-1))))
        return softmax(score, batch.crystal_index, num_nodes=len(atoms))


class GATGNN(nn.Module):
    """Embeddings, ``n_layers`` AGAT layers, composition attention, a 2-layer head.

    Follows the network protocol of :mod:`skcrystal.nn.protocol`: ``encode`` gives the
    atom vectors after the last AGAT layer (its batch norm and softplus), before the
    composition attention weighs them, which is where distillation matches them
    (MODELS.md section 5: 64 wide, as the CrysGNN teacher's).

    Parameters
    ----------
    n_atom_features : int
        Length of the input atom feature vectors (92 for the CGCNN table).
    n_targets : int
        Number of predicted properties.
    cutoff : float
        Neighbour cutoff in Å; sets the range of the Gaussian distance expansion.
    gaussian_step : float, default=0.2
        Spacing and width of the Gaussians, Å.
    width : int, default=64
        Width of the atom and bond vectors.
    n_layers : int, default=3
        AGAT layers.
    heads : int, default=4
        Attention heads per layer.

    Examples
    --------
    >>> model = GATGNN(n_atom_features=92, n_targets=1, cutoff=8.0)
    >>> composition = torch.zeros(2, 118); composition[:, 0] = 1.0
    >>> batch = CrystalBatch(
    ...     atom_features=torch.rand(3, 92), center=torch.tensor([0, 1, 2, 2]),
    ...     neighbor=torch.tensor([1, 0, 2, 2]), distance=torch.tensor([2.0, 2.0, 3.0, 3.0]),
    ...     crystal_index=torch.tensor([0, 0, 1]), n_atoms=torch.tensor([2, 1]),
    ...     composition=composition)
    >>> model(batch).shape, model.encode(batch).shape
    (torch.Size([2, 1]), torch.Size([3, 64]))
    """

    def __init__(
        self,
        n_atom_features: int,
        n_targets: int,
        cutoff: float,
        gaussian_step: float = 0.2,
        width: int = 64,
        n_layers: int = 3,
        heads: int = 4,
    ) -> None:
        super().__init__()
        self.expansion = GaussianExpansion(cutoff, gaussian_step)
        self.embed_atoms = nn.Linear(n_atom_features, width)
        self.embed_bonds = nn.Linear(self.expansion.n_features, width)
        self.layers = nn.ModuleList(AGATConv(width, heads) for _ in range(n_layers))
        self.norms = nn.ModuleList(BatchNorm1d(width) for _ in range(n_layers))
        self.attention = CompositionAttention(width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
        self.out = nn.Linear(width, n_targets)
        self.node_width = width

    def encode(self, batch: CrystalBatch) -> torch.Tensor:
        """Atom vectors after the last AGAT layer, (N, width)."""
        atoms = self.embed_atoms(batch.atom_features)
        bonds = F.leaky_relu(self.embed_bonds(self.expansion(batch.distance)), 0.2)
        for layer, norm in zip(self.layers, self.norms, strict=True):
            atoms = F.softplus(norm(layer(atoms, batch.center, batch.neighbor, bonds)))
        return atoms

    def readout(self, atoms: torch.Tensor, batch: CrystalBatch) -> torch.Tensor:
        """Composition-attention-weighted sum per crystal -> predictions (B, n_targets)."""
        weighted = atoms * self.attention(atoms, batch)
        crystals = scatter(weighted, batch.crystal_index, dim=0, dim_size=len(batch), reduce="sum")
        for layer in self.hidden:
            crystals = F.softplus(layer(crystals))
        return self.out(crystals)

    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        """Predictions (B, n_targets) for a batch of crystals."""
        return self.readout(self.encode(batch), batch)
