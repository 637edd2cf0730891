"""ALIGNN: the Atomistic Line Graph Neural Network (Choudhary & DeCost, npj Comput. Mater. 7,
185, 2021).

Edge-gated graph convolutions on the crystal graph (atoms, bonds) and on its line graph
(bonds, bond pairs with their angle), re-derived from the paper and the reference code's
maths (usnistgov/alignn, ``models/alignn.py``; ../shared/guide/MODELS.md, section 1):

* inputs: atom feature vectors, bond lengths on 80 radial basis functions over 0 to the
  cutoff, bond-angle cosines on 40 over [-1, 1], each with ``gamma = 1 / spacing``;
* an ALIGNN layer updates atoms and bonds on the crystal graph, then bonds and angles on
  the line graph (the reference code's order; the paper's equations give the opposite);
* GCN layers update atoms and bonds on the crystal graph only; atoms are averaged per
  crystal and a linear layer predicts.

Message passing uses torch-geometric's ``MessagePassing`` (``flow="source_to_target"``,
edge_index ``[neighbor; center]``); the line graph is built per mini-batch by
:mod:`skcrystal.nn.line_graph`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.layers import BatchNorm1d, mean_pool
from skcrystal.nn.line_graph import bond_angle_cosines, bond_pairs


class RadialBasis(nn.Module):
    r"""Expand values on ``bins`` Gaussians centred evenly on ``[low, high]``.

    .. math:: \phi_k(x) = \exp\left(-\gamma (x - \mu_k)^2\right), \quad
              \gamma = 1 / (\mu_{k+1} - \mu_k)

    ALIGNN's expansion (its ``RBFExpansion``): ``gamma`` is the inverse spacing, not the
    inverse squared spacing.

    Examples
    --------
    >>> basis = RadialBasis(0.0, 8.0, 80)
    >>> basis(torch.tensor([0.0, 2.5])).shape, round(basis.gamma, 3)
    (torch.Size([2, 80]), 9.875)
    """

    def __init__(self, low: float, high: float, bins: int) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(low, high, bins))
        self.gamma = (bins - 1) / (high - low)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.gamma * (values[:, None] - self.centres) ** 2)


class MLPLayer(nn.Sequential):
    """Linear, batch norm, SiLU."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(nn.Linear(n_in, n_out), BatchNorm1d(n_out), nn.SiLU())


class EdgeGatedGraphConv(MessagePassing):
    r"""Edge-gated graph convolution (ALIGNN, eqs. 2-6; Bresson & Laurent 2017).

    For an edge ``u -> v`` (source ``u``, aggregated at ``v``):

    .. math::
        m_{uv} &= W_s h_u + W_d h_v + W_e e_{uv}, \quad \sigma_{uv} = \mathrm{sigmoid}(m_{uv})\\
        h_v' &= h_v + \mathrm{SiLU}\Big(\mathrm{BN}\big(U h_v + \textstyle\sum_u
                \sigma_{uv} \odot V h_u / (\sum_u \sigma_{uv} + 10^{-6})\big)\Big)\\
        e_{uv}' &= e_{uv} + \mathrm{SiLU}(\mathrm{BN}(m_{uv}))

    Parameter names follow the reference code (``src_gate`` = :math:`W_s`, ``dst_gate``,
    ``edge_gate``, ``src_update`` = :math:`U`, ``dst_update`` = :math:`V`).

    Examples
    --------
    >>> conv = EdgeGatedGraphConv(8)
    >>> x, e = conv(torch.rand(3, 8), torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.rand(3, 8))
    >>> x.shape, e.shape
    (torch.Size([3, 8]), torch.Size([3, 8]))
    """

    def __init__(self, width: int) -> None:
        super().__init__(aggr="sum")
        self.src_gate = nn.Linear(width, width)
        self.dst_gate = nn.Linear(width, width)
        self.edge_gate = nn.Linear(width, width)
        self.bn_edges = BatchNorm1d(width)
        self.src_update = nn.Linear(width, width)
        self.dst_update = nn.Linear(width, width)
        self.bn_nodes = BatchNorm1d(width)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        source, target = edge_index
        # Linear maps per node, then gathered per edge (index_select: a deterministic
        # backward on the CPU).
        gate = self.src_gate(x).index_select(0, source) + self.dst_gate(x).index_select(0, target)
        gate = gate + self.edge_gate(edge_attr)
        sigma = torch.sigmoid(gate)
        summed = self.propagate(edge_index, x=self.dst_update(x), sigma=sigma)
        norm = scatter(sigma, target, dim=0, dim_size=len(x), reduce="sum")
        nodes = self.src_update(x) + summed / (norm + 1e-6)
        return x + F.silu(self.bn_nodes(nodes)), edge_attr + F.silu(self.bn_edges(gate))

    def message(self, x_j: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * x_j


class ALIGNNConv(nn.Module):
    """One ALIGNN layer: the crystal graph's update, then the line graph's."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.node_update = EdgeGatedGraphConv(width)
        self.edge_update = EdgeGatedGraphConv(width)

    def forward(self, x, bonds, edge_index, angles, pair_index):
        x, bonds = self.node_update(x, edge_index, bonds)
        bonds, angles = self.edge_update(bonds, pair_index, angles)
        return x, bonds, angles


class ALIGNN(nn.Module):
    """ALIGNN property predictor on :class:`~skcrystal.nn.batch.CrystalBatch` inputs.

    Follows the student protocol (:mod:`skcrystal.nn.protocol`): :meth:`encode` gives the
    atom vectors after the last layer, :meth:`readout` averages them per crystal and
    applies the linear head.

    Parameters
    ----------
    n_atom_features : int
        Length of the input atom feature vectors (92 for the CGCNN table).
    n_targets : int
        Number of predicted properties.
    cutoff : float
        Neighbour cutoff in Å: the bond-length basis spans 0 to it (8 Å in the reference).
    alignn_layers, gcn_layers : int
        Layers on crystal and line graph, and on the crystal graph only (4 and 4).
    hidden_features : int
        Width of atom, bond and angle vectors (256).
    embedding_features : int
        Width of the first bond and angle embeddings (64).
    edge_input_features, triplet_input_features : int
        Basis functions for bond lengths (80) and angle cosines (40).

    Examples
    --------
    >>> model = ALIGNN(92, 1, cutoff=8.0, alignn_layers=1, gcn_layers=1, hidden_features=16)
    >>> batch = CrystalBatch(
    ...     atom_features=torch.rand(3, 92), center=torch.tensor([0, 1, 1, 2]),
    ...     neighbor=torch.tensor([1, 0, 2, 1]), distance=torch.tensor([2.0, 2.0, 3.0, 3.0]),
    ...     vector=torch.tensor([[2.0, 0, 0], [-2.0, 0, 0], [0, 3.0, 0], [0, -3.0, 0]]),
    ...     crystal_index=torch.tensor([0, 0, 0]), n_atoms=torch.tensor([3]))
    >>> model(batch).shape, model.encode(batch).shape
    (torch.Size([1, 1]), torch.Size([3, 16]))
    """

    def __init__(
        self,
        n_atom_features: int,
        n_targets: int,
        cutoff: float,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        hidden_features: int = 256,
        embedding_features: int = 64,
        edge_input_features: int = 80,
        triplet_input_features: int = 40,
    ) -> None:
        super().__init__()
        self.atom_embedding = MLPLayer(n_atom_features, hidden_features)
        self.edge_embedding = nn.Sequential(
            RadialBasis(0.0, cutoff, edge_input_features),
            MLPLayer(edge_input_features, embedding_features),
            MLPLayer(embedding_features, hidden_features),
        )
        self.angle_embedding = nn.Sequential(
            RadialBasis(-1.0, 1.0, triplet_input_features),
            MLPLayer(triplet_input_features, embedding_features),
            MLPLayer(embedding_features, hidden_features),
        )
        self.alignn_layers = nn.ModuleList(
            ALIGNNConv(hidden_features) for _ in range(alignn_layers)
        )
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(hidden_features) for _ in range(gcn_layers)
        )
        self.fc = nn.Linear(hidden_features, n_targets)
        self.node_width = hidden_features

    def encode(self, batch: CrystalBatch) -> torch.Tensor:
        """Atom vectors after the last layer, (N, hidden_features)."""
        if batch.vector is None:
            raise ValueError("ALIGNN needs bond vectors: the batch has no 'vector'")
        edge_index = torch.stack([batch.neighbor, batch.center])
        x = self.atom_embedding(batch.atom_features)
        bonds = self.edge_embedding(batch.distance)
        if len(self.alignn_layers):
            first, second = bond_pairs(batch.neighbor, batch.center, len(x))
            angles = self.angle_embedding(bond_angle_cosines(batch.vector, first, second))
            pair_index = torch.stack([first, second])
            for layer in self.alignn_layers:
                x, bonds, angles = layer(x, bonds, edge_index, angles, pair_index)
        for layer in self.gcn_layers:
            x, bonds = layer(x, edge_index, bonds)
        return x

    def readout(self, nodes: torch.Tensor, batch: CrystalBatch) -> torch.Tensor:
        """Mean of the atom vectors per crystal, then the linear head: (B, n_targets)."""
        return self.fc(mean_pool(nodes, batch.crystal_index, batch.n_atoms))

    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        """Predictions (B, n_targets) for a batch of crystals."""
        return self.readout(self.encode(batch), batch)
