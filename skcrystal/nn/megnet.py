"""MEGNet: the MatErials Graph Network (Chen et al., Chem. Mater. 31, 3564, 2019).

Re-derived from the paper and the original package (materialsvirtuallab/megnet@f370576,
``megnet/models/megnet.py``, ``megnet/layers/graph/megnet.py``; matgl's PyG twin for
the layer order; ../shared/guide/MODELS.md, section 3), with the original package's
defaults:

* inputs: an element embedding of 16 (a bias-free linear map of the atom features: with
  the "atomic-number" table, exactly a lookup by Z), each bond length on 100 Gaussians
  ``exp(-(d - mu)^2 / 0.5^2)`` centred from 0 to cutoff + 1 Å (the original width;
  matgl's ``exp(-0.5 (d - mu)^2)`` is 2.8 times wider), and a state vector per crystal,
  ``[0, 0]`` as in the original models of the Materials Project;
* each of them through a dense 64-32 layer pair, then three MEGNet blocks: blocks 2 and 3
  start with another 64-32 pair; a block updates every bond from its two atoms, itself
  and the state, every atom from the mean of its updated bonds, itself and the state, and
  the state from the means of the updated bonds and atoms (each update a 64-64-32
  network), and adds its input (skip connection);
* readout: Set2Set (3 steps) over the atoms and over the bonds of each crystal, each on a
  16-wide projection, concatenated with the state, then dense layers of 32 and 16 and a
  linear output. Every dense layer but the output uses softplus2, ``softplus(x) - ln 2``.

Message passing uses torch-geometric's ``scatter`` and ``Set2Set``. Where it differs from
the original package, it does as matgl does: the last layer of each update network is
activated (matgl's ``activate_last=True``; the original's ``MEGNetLayer._mlp`` returns
that layer before its activation, ``megnet/layers/graph/megnet.py``), the weights start
at torch's defaults (the original: Keras glorot-uniform, zero biases, an embedding
uniform in +-0.05), and Set2Set is torch-geometric's LSTM (the original's reads only
``q*``, with hard-sigmoid gates, and never carries its cell state). Given matgl's settings
(Gaussian width ``sqrt(2)``, Set2Set of 2 steps on the 32-wide vectors), this network
computes what matgl 4.1.2's PyG ``MEGNet`` computes: the same outputs and gradients, to
1e-7, with its weights copied in. The original's linear last layers and initialisation
did not change what it learns (docs/seed_models.md, "Learning on real data"). Like both
references it normalises nothing, and on 2,000 crystals it learns about half as fast as
the batch-normalised CGCNN and GATGNN; ``norm="batch"`` (not MEGNet) puts batch norm
between every dense layer of the atom and bond paths and its activation, and then it
learns about as fast as they do.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn.aggr import Set2Set
from torch_geometric.utils import scatter

from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.layers import BatchNorm1d


def softplus2(x: torch.Tensor) -> torch.Tensor:
    """``softplus(x) - ln 2``: zero at zero, MEGNet's activation."""
    return F.softplus(x) - math.log(2.0)


class Dense(nn.Sequential):
    """Linear layers, each followed by softplus2 (with ``norm=True``: by batch norm, then
    softplus2)."""

    def __init__(self, n_in: int, widths: tuple[int, ...], norm: bool = False) -> None:
        layers = []
        for width in widths:
            linear = nn.Linear(n_in, width)
            layers.append(nn.Sequential(linear, BatchNorm1d(width)) if norm else linear)
            n_in = width
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = softplus2(layer(x))
        return x

    def forward_gathered(self, parts: list[tuple[torch.Tensor, torch.Tensor | None]]):
        """``forward(torch.cat([x[rows] for x, rows in parts], dim=1))``, computed faster.

        Each part is a tensor and the rows it contributes (None: all, in order). The first
        layer is linear in the concatenation, so each part is multiplied by its block of
        the weights once per row of ``x`` (per atom, per crystal) before its rows are
        gathered, instead of once per gathered row (per bond): the same values, up to
        rounding, with fewer products and no concatenated copy.
        """
        first = self[0]
        linear = first[0] if isinstance(first, nn.Sequential) else first
        blocks = linear.weight.split([x.shape[1] for x, _ in parts], dim=1)
        h = linear.bias
        for (x, rows), weight in zip(parts, blocks, strict=True):
            product = x @ weight.T
            # index_select: its backward (index_add_) is deterministic on the CPU
            h = h + (product if rows is None else product.index_select(0, rows))
        if isinstance(first, nn.Sequential):
            h = first[1](h)  # the batch norm of norm=True
        x = softplus2(h)
        for layer in list(self)[1:]:
            x = softplus2(layer(x))
        return x


class GaussianBasis(nn.Module):
    r"""Bond lengths on ``n`` Gaussians :math:`\exp(-(d - \mu_k)^2 / w^2)`, ``mu`` evenly
    from ``low`` to ``high``.

    Examples
    --------
    >>> GaussianBasis(0.0, 6.0, 100, 0.5)(torch.tensor([1.0, 2.5])).shape
    torch.Size([2, 100])
    """

    def __init__(self, low: float, high: float, n: int, width: float) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(low, high, n))
        self.width = width

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((distance[:, None] - self.centres) ** 2) / self.width**2)


class MEGNetBlock(nn.Module):
    """One MEGNet block: optional 64-32 pre-dense layers, the bond/atom/state updates, and
    the skip connection."""

    def __init__(self, width: int, hidden: int, pre_dense: bool, norm: bool = False) -> None:
        super().__init__()
        self.pre = (
            # atoms, bonds, state: the state's pair is never normalised
            nn.ModuleList(Dense(width, (hidden, width), norm and i < 2) for i in range(3))
            if pre_dense
            else None
        )
        update = (hidden, hidden, width)
        self.bond_update = Dense(4 * width, update, norm)
        self.atom_update = Dense(3 * width, update, norm)
        self.state_update = Dense(3 * width, update)

    def forward(self, atoms, bonds, state, batch: CrystalBatch):
        inputs = (atoms, bonds, state)
        if self.pre is not None:
            atoms, bonds, state = (dense(x) for dense, x in zip(self.pre, inputs, strict=True))
        bond_crystal = batch.crystal_index[batch.center]
        bonds = self.bond_update.forward_gathered(
            [(atoms, batch.center), (atoms, batch.neighbor), (bonds, None), (state, bond_crystal)]
        )
        n_atoms, n_crystals = len(atoms), len(state)
        bonds_of_atoms = scatter(bonds, batch.center, dim=0, dim_size=n_atoms, reduce="mean")
        atoms = self.atom_update.forward_gathered(
            [(bonds_of_atoms, None), (atoms, None), (state, batch.crystal_index)]
        )
        bonds_of_crystals = scatter(bonds, bond_crystal, dim=0, dim_size=n_crystals, reduce="mean")
        atoms_of_crystals = scatter(
            atoms, batch.crystal_index, dim=0, dim_size=n_crystals, reduce="mean"
        )
        state = self.state_update(torch.cat([bonds_of_crystals, atoms_of_crystals, state], dim=1))
        return atoms + inputs[0], bonds + inputs[1], state + inputs[2]


class MEGNet(nn.Module):
    """Embeddings, ``n_blocks`` MEGNet blocks, Set2Set readout and a 32-16 head.

    Follows the network protocol of :mod:`skcrystal.nn.protocol`: ``encode`` gives the
    atom vectors after the last block (32 wide). MEGNet's readout also needs the bond and
    state vectors of that block: ``encode`` keeps them for the ``readout`` of the same
    batch, and ``readout`` of another batch computes them again.

    Parameters
    ----------
    n_atom_features : int
        Length of the input atom feature vectors (94 for the "atomic-number" table).
    n_targets : int
        Number of predicted properties.
    cutoff : float
        The graphs' radius (Å); the Gaussians span 0 to ``cutoff + 1``.
    n_gaussians : int, default=100
    gaussian_width : float, default=0.5
        Width ``w`` (Å) of the Gaussians.
    embedding : int, default=16
        Width of the element embedding.
    width, hidden : int, default=32, 64
        The original ``n2`` and ``n1``: width of the atom, bond and state vectors, and of
        the hidden layers of each update.
    readout_width : int, default=16
        The original ``n3``: width of the Set2Set inputs and of the last hidden layer.
    n_blocks : int, default=3
    set2set_steps : int, default=3
    n_state : int, default=2
        Length of the state vector (all zeros, as in the original models).
    norm : {None, "batch"}, default=None
        None: MEGNet as published, which normalises nothing. "batch": batch norm between
        every dense layer of the atom and bond paths and its softplus2 (not part of
        MEGNet; it learns about twice as fast on 2,000 crystals, docs/seed_models.md).
        The state and head layers stay as they are: normalised too, they made training
        unstable.

    Examples
    --------
    >>> model = MEGNet(n_atom_features=94, n_targets=1, cutoff=5.0)
    >>> batch = CrystalBatch(
    ...     atom_features=torch.eye(94)[[10, 16, 10]], center=torch.tensor([0, 1, 2, 2]),
    ...     neighbor=torch.tensor([1, 0, 2, 2]), distance=torch.tensor([2.8, 2.8, 4.0, 4.0]),
    ...     crystal_index=torch.tensor([0, 0, 1]), n_atoms=torch.tensor([2, 1]))
    >>> model(batch).shape, model.encode(batch).shape
    (torch.Size([2, 1]), torch.Size([3, 32]))
    """

    def __init__(
        self,
        n_atom_features: int,
        n_targets: int,
        cutoff: float,
        n_gaussians: int = 100,
        gaussian_width: float = 0.5,
        embedding: int = 16,
        width: int = 32,
        hidden: int = 64,
        readout_width: int = 16,
        n_blocks: int = 3,
        set2set_steps: int = 3,
        n_state: int = 2,
        norm: str | None = None,
    ) -> None:
        super().__init__()
        if norm not in (None, "batch"):
            raise ValueError(f"norm must be None or 'batch', got {norm!r}")
        batch_norm = norm == "batch"
        self.expansion = GaussianBasis(0.0, cutoff + 1.0, n_gaussians, gaussian_width)
        self.embedding = nn.Linear(n_atom_features, embedding, bias=False)
        self.atom_dense = Dense(embedding, (hidden, width), batch_norm)
        self.bond_dense = Dense(n_gaussians, (hidden, width), batch_norm)
        self.state_dense = Dense(n_state, (hidden, width))
        self.blocks = nn.ModuleList(
            MEGNetBlock(width, hidden, pre_dense=i > 0, norm=batch_norm) for i in range(n_blocks)
        )
        self.atom_projection = nn.Linear(width, readout_width)
        self.bond_projection = nn.Linear(width, readout_width)
        self.atom_set2set = Set2Set(readout_width, set2set_steps)
        self.bond_set2set = Set2Set(readout_width, set2set_steps)
        self.head = Dense(4 * readout_width + width, (width, readout_width))
        self.out = nn.Linear(readout_width, n_targets)
        self.n_state = n_state
        self.node_width = width
        self._last_block: tuple | None = None

    def _blocks(self, batch: CrystalBatch):
        """Atom, bond and state vectors after the last block."""
        atoms = self.atom_dense(self.embedding(batch.atom_features))
        bonds = self.bond_dense(self.expansion(batch.distance))
        state = self.state_dense(batch.atom_features.new_zeros(len(batch), self.n_state))
        for block in self.blocks:
            atoms, bonds, state = block(atoms, bonds, state, batch)
        return atoms, bonds, state

    def encode(self, batch: CrystalBatch) -> torch.Tensor:
        """Atom vectors after the last block, (N, width)."""
        atoms, bonds, state = self._blocks(batch)
        self._last_block = (batch, bonds, state)
        return atoms

    def readout(self, atoms: torch.Tensor, batch: CrystalBatch) -> torch.Tensor:
        """Set2Set over atoms and bonds, with the state -> predictions (B, n_targets)."""
        last, self._last_block = self._last_block, None
        if last is None or last[0] is not batch:
            last = (batch, *self._blocks(batch)[1:])
        _, bonds, state = last
        n_crystals = len(batch)
        bond_crystal = batch.crystal_index[batch.center]
        crystals = torch.cat(
            [
                self.atom_set2set(
                    self.atom_projection(atoms), batch.crystal_index, dim_size=n_crystals
                ),
                self.bond_set2set(self.bond_projection(bonds), bond_crystal, dim_size=n_crystals),
                state,
            ],
            dim=1,
        )
        return self.out(self.head(crystals))

    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        """Predictions (B, n_targets) for a batch of crystals."""
        return self.readout(self.encode(batch), batch)
