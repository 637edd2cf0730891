"""Building blocks of crystal graph networks: distance expansion, CGCNN convolution, pooling.

Graphs arrive as one disconnected batch: ``atom_features`` (N, F), directed edges
``center -> neighbor`` (E,), their ``distance`` (E,) and ``crystal_index`` (N,) mapping each
atom to its crystal.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class GaussianExpansion(nn.Module):
    r"""Expand distances on Gaussians centred every ``step`` Å from 0 to ``cutoff``.

    .. math:: e_k(d) = \exp\left(-(d - \mu_k)^2 / \sigma^2\right), \quad
              \mu_k = k \cdot \mathrm{step}, \quad \sigma = \mathrm{step}

    as in CGCNN (41 centres for the default 8 Å cutoff and 0.2 Å step).

    Examples
    --------
    >>> expand = GaussianExpansion(cutoff=8.0, step=0.2)
    >>> expand(torch.tensor([0.0, 2.0])).shape
    torch.Size([2, 41])
    """

    def __init__(self, cutoff: float, step: float = 0.2) -> None:
        super().__init__()
        n_centres = round(cutoff / step) + 1
        self.register_buffer("centres", torch.arange(n_centres, dtype=torch.float32) * step)
        self.width = step

    @property
    def n_features(self) -> int:
        return len(self.centres)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        # (E,) -> (E, n_centres)
        return torch.exp(-((distance[:, None] - self.centres) ** 2) / self.width**2)


class BatchNorm1d(nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` that also takes a single row in training mode.

    Torch refuses to normalise one value per channel with batch statistics ("Expected
    more than 1 value per channel when training"), which a mini-batch made of one
    1-atom crystal (bcc Fe, fcc Cu primitive cells) would ask for in the atom batch
    norm. Such a row is normalised with the running statistics instead, as in eval mode,
    and leaves them unchanged; every other input is normalised exactly as by torch. The
    parameters and buffers are torch's, so state dicts load unchanged.

    Examples
    --------
    >>> norm = BatchNorm1d(4).train()
    >>> norm(torch.ones(1, 4)).shape
    torch.Size([1, 4])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and len(x) == 1):
            return super().forward(x)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


class CGCNNConv(nn.Module):
    r"""The gated graph convolution of CGCNN (Xie & Grossman, PRL 120, 145301, 2018, eq. 5).

    .. math::
        z_{ij} = v_i \oplus v_j \oplus u_{ij}, \quad
        v_i' = \mathrm{softplus}\Big(v_i + \mathrm{BN}\big(\textstyle\sum_j
        \sigma(z_{ij} W_f + b_f) \odot \mathrm{softplus}(z_{ij} W_s + b_s)\big)\Big)

    with batch norm also on the edge pre-activations, exactly as the authors' code.
    ``fc_full`` holds :math:`[W_f\,W_s]` so that the authors' weights load unchanged; the
    products with :math:`v_i` and :math:`v_j` are taken once per atom and then gathered
    per edge, which is the same sum as multiplying the concatenation per edge but about
    ``max_neighbors`` times less work. The batch norms are :class:`BatchNorm1d`, so a
    batch with a single atom or edge trains too.
    """

    def __init__(self, atom_fea_len: int, edge_fea_len: int) -> None:
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + edge_fea_len, 2 * atom_fea_len)
        self.bn1 = BatchNorm1d(2 * atom_fea_len)
        self.bn2 = BatchNorm1d(atom_fea_len)

    def forward(
        self,
        atom_fea: torch.Tensor,  # (N, A)
        center: torch.Tensor,  # (E,)
        neighbor: torch.Tensor,  # (E,)
        edge_fea: torch.Tensor,  # (E, G)
    ) -> torch.Tensor:
        a = self.atom_fea_len
        weight = self.fc_full.weight  # (2A, 2A + G)
        from_center = atom_fea @ weight[:, :a].T  # (N, 2A)
        from_neighbor = atom_fea @ weight[:, a : 2 * a].T  # (N, 2A)
        gated = F.linear(edge_fea, weight[:, 2 * a :], self.fc_full.bias)  # (E, 2A)
        # index_select, not fancy indexing: its backward (index_add_) is deterministic on
        # the CPU, where that of ``x[idx]`` (index_put_ with accumulate) is not.
        gated = (
            gated + from_center.index_select(0, center) + from_neighbor.index_select(0, neighbor)
        )
        gate, core = self.bn1(gated).chunk(2, dim=1)
        message = torch.sigmoid(gate) * F.softplus(core)  # (E, A)
        summed = torch.zeros_like(atom_fea).index_add_(0, center, message)
        return F.softplus(atom_fea + self.bn2(summed))


def mean_pool(atom_fea: torch.Tensor, crystal_index: torch.Tensor, n_atoms: torch.Tensor):
    """Average atom vectors per crystal: (N, A) -> (B, A)."""
    summed = atom_fea.new_zeros(len(n_atoms), atom_fea.shape[1]).index_add_(
        0, crystal_index, atom_fea
    )
    return summed / n_atoms[:, None].to(atom_fea.dtype)
