"""The CrysGNN network and its four pretraining losses (Das et al., AAAI 2023).

:class:`CrysGNN` is a deeper CrysAE (five convolutions) whose node embeddings are
L2-normalised; besides CrysAE's connectivity and atom-feature decoders it has a
space-group head ``fc_sg`` on the graph embedding (the mean of the node embeddings).
:class:`CrysGNNLoss` combines the node-level losses (connectivity and atom-feature
reconstruction) with the graph-level ones (space-group classification and a supervised
NT-Xent contrastive loss in which crystals of the same crystal system are positives).

Parameter names are the authors' (``embedding``, ``convs.k``, ``fc_adj``, ``fc1``,
``fc_atom_feature``, ``fc_sg``), so their released teacher loads with
``load_state_dict``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from skcrystal.graphs.symmetry import LAST_SPACE_GROUP_OF_SYSTEM
from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.crysae import CrysAE, CrysAELoss, CrysAEOutput
from skcrystal.nn.layers import mean_pool

__all__ = ["CrysGNN", "CrysGNNLoss", "CrysGNNOutput", "supervised_nt_xent"]

N_SPACE_GROUPS = 230


class CrysGNNOutput(NamedTuple):
    """What :meth:`CrysGNN.forward` returns: CrysAE's outputs plus the graph-level ones.

    ``reconstruction`` holds the node-level outputs and targets
    (:class:`~skcrystal.nn.crysae.CrysAEOutput`); ``space_group_logits`` (B, 230) scores
    the space groups 1-230, ``graph_embedding`` (B, D) is the mean of the L2-normalised
    node embeddings, and ``space_group`` (B,) the true numbers (0 where unknown).
    """

    reconstruction: CrysAEOutput
    space_group_logits: torch.Tensor
    graph_embedding: torch.Tensor
    space_group: torch.Tensor


class CrysGNN(CrysAE):
    """CrysGNN: CGCNN encoder with normalised node embeddings and four decoders.

    Parameters as :class:`~skcrystal.nn.crysae.CrysAE`, with ``n_conv=5`` by default.
    The decoders read the L2-normalised node embeddings (:meth:`node_embeddings`); these
    are what :class:`~skcrystal.estimators.DistilledRegressor` distils into a student.

    Examples
    --------
    >>> model = CrysGNN(n_atom_features=92, cutoff=8.0)
    >>> batch = CrystalBatch(
    ...     atom_features=torch.rand(3, 92), center=torch.tensor([0, 1, 2, 2]),
    ...     neighbor=torch.tensor([1, 0, 2, 2]), distance=torch.tensor([2.0, 2.0, 3.0, 3.0]),
    ...     crystal_index=torch.tensor([0, 0, 1]), n_atoms=torch.tensor([2, 1]),
    ...     space_group=torch.tensor([225, 0]))
    >>> out = model(batch)
    >>> out.space_group_logits.shape, out.graph_embedding.shape
    (torch.Size([2, 230]), torch.Size([2, 64]))
    >>> norms = model.node_embeddings(batch).norm(dim=1)  # unit vectors, up to round-off
    >>> norms.shape, bool(torch.allclose(norms, torch.ones(3)))
    (torch.Size([3]), True)
    """

    def __init__(self, n_atom_features: int, cutoff: float, *, n_conv: int = 5, **kwargs) -> None:
        super().__init__(n_atom_features, cutoff, n_conv=n_conv, **kwargs)
        self.fc_sg = nn.Linear(self.embedding.out_features, N_SPACE_GROUPS)

    def node_embeddings(self, batch: CrystalBatch) -> torch.Tensor:
        """L2-normalised atom vectors after the last convolution, (N, atom_fea_len)."""
        return F.normalize(self.encode(batch), dim=1)

    def embed(self, batch: CrystalBatch) -> torch.Tensor:
        """Graph embeddings: the mean of each crystal's node embeddings, (B, atom_fea_len)."""
        return mean_pool(self.node_embeddings(batch), batch.crystal_index, batch.n_atoms)

    def forward(self, batch: CrystalBatch) -> CrysGNNOutput:
        """Encode the batch and run all four decoders, with their targets."""
        nodes = self.node_embeddings(batch)
        graph = mean_pool(nodes, batch.crystal_index, batch.n_atoms)
        space_group = batch.space_group
        if space_group is None:
            space_group = torch.zeros(len(batch), dtype=torch.int64, device=nodes.device)
        return CrysGNNOutput(
            reconstruction=self.reconstruct(nodes, batch),
            space_group_logits=self.fc_sg(graph),
            graph_embedding=graph,
            space_group=space_group,
        )


def supervised_nt_xent(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """Supervised NT-Xent loss: items with the same label attract, others repel.

    For every ordered positive pair (i, j), ``i != j`` with the same label, the loss is
    ``-log(exp(s_ij) / (exp(s_ij) + sum_k exp(s_ik)))`` over the negatives k of i (other
    labels), with ``s`` the cosine similarity divided by ``temperature``; the result is
    the mean over positive pairs, and 0 (with a gradient) when there is none. This is the
    NT-Xent loss with labels of pytorch-metric-learning, which the CrysGNN authors use.

    Examples
    --------
    >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> bool(supervised_nt_xent(x, torch.tensor([0, 0, 1])) < 0.01)
    True
    >>> bool(supervised_nt_xent(x, torch.tensor([0, 1, 0])) > 5)
    True
    """
    unit = F.normalize(embeddings, dim=1)
    logits = unit @ unit.T / temperature
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    if not positive.any():
        return logits.sum() * 0.0
    # log-sum-exp of each anchor's negatives (-inf where it has none)
    negatives = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=1)
    anchor, other = positive.nonzero(as_tuple=True)
    pos = logits[anchor, other]
    denominator = torch.logaddexp(pos, negatives[anchor])
    return (denominator - pos).mean()


def crystal_system_tensor(space_group: torch.Tensor) -> torch.Tensor:
    """Crystal system index (0-6) of each space group number; -1 for 0."""
    bounds = torch.as_tensor(LAST_SPACE_GROUP_OF_SYSTEM, device=space_group.device)
    systems = torch.searchsorted(bounds, space_group, right=False)
    return torch.where(space_group > 0, systems, -1)


class CrysGNNLoss(nn.Module):
    """The CrysGNN pretraining loss: two node-level and two graph-level terms.

    ``connectivity_weight * CE_connectivity + feature_weight * BCE_features +
    contrastive_weight * NT-Xent(crystal system) + space_group_weight * CE_space_group``,
    each term a mean over the crystals of the batch (the node-level terms as in
    :class:`~skcrystal.nn.crysae.CrysAELoss`, with class weight ``no_edge_weight`` on "no
    edge"). Crystals whose space group is unknown (0) take part in the node-level terms
    only. The defaults are the authors' (0.25 each, temperature 0.07).

    Parameters
    ----------
    connectivity_weight, feature_weight, contrastive_weight, space_group_weight : float
    temperature : float, default=0.07
    no_edge_weight : float, default=0.1
    """

    def __init__(
        self,
        connectivity_weight: float = 0.25,
        feature_weight: float = 0.25,
        contrastive_weight: float = 0.25,
        space_group_weight: float = 0.25,
        temperature: float = 0.07,
        no_edge_weight: float = 0.1,
    ) -> None:
        super().__init__()
        weights = (connectivity_weight, feature_weight, contrastive_weight, space_group_weight)
        if min(weights) < 0:
            raise ValueError(f"loss weights must be non-negative, got {weights}")
        self.weights = dict(
            zip(("connectivity", "features", "contrastive", "space_group"), weights, strict=True)
        )
        self.temperature = temperature
        self.node_loss = CrysAELoss(no_edge_weight=no_edge_weight)

    def components(self, out: CrysGNNOutput) -> dict[str, torch.Tensor]:
        """The four batch losses (scalars) by name."""
        connectivity, features = self.node_loss.components(out.reconstruction)
        known = out.space_group > 0
        if known.any():
            space_group = F.cross_entropy(out.space_group_logits[known], out.space_group[known] - 1)
            contrastive = supervised_nt_xent(
                out.graph_embedding[known],
                crystal_system_tensor(out.space_group[known]),
                self.temperature,
            )
        else:
            space_group = contrastive = out.space_group_logits.sum() * 0.0
        return {
            "connectivity": connectivity.mean(),
            "features": features.mean(),
            "contrastive": contrastive,
            "space_group": space_group,
        }

    def forward(self, out: CrysGNNOutput) -> torch.Tensor:
        """The weighted sum of the four terms, a scalar."""
        parts = self.components(out)
        return sum(self.weights[name] * value for name, value in parts.items())
