"""The networks of CrysXPP (Das et al., npj Comput. Mater. 8, 43 (2022)).

:class:`CrysAE` is the crystal graph autoencoder pretrained without labels: a CGCNN
encoder and two decoders, one for the connectivity of every atom pair and one for the
input atom features. :class:`MaskedCGCNN` is the CrysXPP property predictor: a CGCNN whose
input atom features are multiplied by a learnable feature-selector ``mask``.

Parameter names are those of the authors' code (``embedding``, ``convs.k.fc_full``,
``fc_adj``, ``fc1``, ``fc_atom_feature``; ``mask`` and the CGCNN names), so their
``model_pretrain.pth`` and ``model_best.pth.tar`` load with ``load_state_dict``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.cgcnn import CGCNN
from skcrystal.nn.layers import CGCNNConv, GaussianExpansion, mean_pool

__all__ = ["CrysAE", "CrysAELoss", "CrysAEOutput", "MaskedCGCNN", "connectivity_pairs"]


class CrysAEOutput(NamedTuple):
    """What :meth:`CrysAE.forward` returns: both reconstructions and their targets.

    Attributes
    ----------
    feature_logits : Tensor (N, F)
        Reconstructed atom features, as logits (before a sigmoid).
    feature_target : Tensor (N, F)
        The input atom features.
    pair_logits : Tensor (P, n_classes)
        Connectivity class scores of the decoded atom pairs.
    pair_target : Tensor (P,) int64
        True class of each pair: how many times the second atom is among the first one's
        neighbours, capped at ``n_classes - 1``.
    pair_weight : Tensor (P,)
        Sampling weight of each pair (1, or the inverse sampling rate of sampled no-edge
        pairs), so that weighted sums over the pairs estimate sums over all pairs.
    pair_crystal : Tensor (P,) int64
        Crystal (0 .. B-1) of each pair.
    crystal_index : Tensor (N,) int64
        Crystal of each atom.
    n_atoms : Tensor (B,) int64
        Atoms per crystal.
    """

    feature_logits: torch.Tensor
    feature_target: torch.Tensor
    pair_logits: torch.Tensor
    pair_target: torch.Tensor
    pair_weight: torch.Tensor
    pair_crystal: torch.Tensor
    crystal_index: torch.Tensor
    n_atoms: torch.Tensor


def _starts(lengths: torch.Tensor) -> torch.Tensor:
    """Exclusive cumulative sum: where each of consecutive blocks of ``lengths`` starts."""
    return torch.cumsum(lengths, 0) - lengths


def connectivity_pairs(
    center: torch.Tensor,
    neighbor: torch.Tensor,
    n_atoms: torch.Tensor,
    n_classes: int = 6,
    max_pairs: int | None = 1024,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """Atom pairs to decode and their connectivity classes, for a batch of crystals.

    The class of the ordered pair (i, j) of one crystal is the number of directed edges
    ``i -> j`` (periodic images make several possible, and ``i == j`` too), capped at
    ``n_classes - 1``: the adjacency targets of CrysAE. Every pair with at least one edge
    is returned. Of the pairs without an edge (class 0), a crystal with at most
    ``max_pairs`` of them returns all; a larger one returns ``max_pairs`` drawn uniformly
    with replacement, each with weight ``n_no_edge / max_pairs``, so that weighted sums
    over the returned pairs are unbiased estimates of the sums over all ``n_atoms**2``
    pairs. The work per crystal is so bounded by ``max_pairs + n_edges`` instead of
    growing with ``n_atoms**2``.

    Parameters
    ----------
    center, neighbor : Tensor (E,) int64
        Directed edges, as row indices into the atoms of the batch.
    n_atoms : Tensor (B,) int64
        Atoms per crystal; the atoms of crystal b are consecutive rows.
    n_classes : int, default=6
    max_pairs : int or None, default=1024
        No-edge pairs decoded at most per crystal; None decodes all pairs.
    generator : torch.Generator, optional
        Source of the random draws (default: the global torch generator).

    Returns
    -------
    first, second : Tensor (P,) int64
        Atom rows of each pair.
    target : Tensor (P,) int64
        Connectivity class.
    weight : Tensor (P,) float32
        Sampling weight.
    crystal : Tensor (P,) int64
        Crystal of each pair.

    Examples
    --------
    >>> first, second, target, weight, crystal = connectivity_pairs(
    ...     torch.tensor([0, 0, 0, 1]), torch.tensor([1, 1, 0, 0]), torch.tensor([2]))
    >>> [(int(i), int(j), int(c)) for i, j, c in zip(first, second, target)]
    [(0, 0, 1), (0, 1, 2), (1, 0, 1), (1, 1, 0)]
    """
    device = n_atoms.device
    n_atoms = n_atoms.long()
    n_crystals = len(n_atoms)
    atom_start = _starts(n_atoms)
    n_pairs = n_atoms * n_atoms
    pair_start = _starts(n_pairs)
    crystal_of_atom = torch.repeat_interleave(torch.arange(n_crystals, device=device), n_atoms)

    # Pairs with edges: ids in the batch-wide pair numbering, multiplicity = class.
    crystal = crystal_of_atom[center]
    first_local = center - atom_start[crystal]
    second_local = neighbor - atom_start[crystal]
    edge_ids = pair_start[crystal] + first_local * n_atoms[crystal] + second_local
    edge_ids, counts = torch.unique(edge_ids, sorted=True, return_counts=True)
    edge_target = counts.clamp(max=n_classes - 1)
    edge_crystal = torch.searchsorted(pair_start, edge_ids, right=True) - 1
    n_free = n_pairs - torch.bincount(edge_crystal, minlength=n_crystals)

    # Pairs without edges, by rank among the batch's no-edge pairs.
    if max_pairs is None:
        exhaustive = torch.ones(n_crystals, dtype=torch.bool, device=device)
    else:
        exhaustive = n_free <= max_pairs
    n_draw = torch.where(exhaustive, n_free, torch.full_like(n_free, max_pairs or 0))
    draw_crystal = torch.repeat_interleave(torch.arange(n_crystals, device=device), n_draw)
    position = torch.arange(len(draw_crystal), device=device) - _starts(n_draw)[draw_crystal]
    free = n_free[draw_crystal]
    uniform = torch.rand(len(draw_crystal), generator=generator, device=device)
    sampled = torch.minimum((uniform * free).long(), free - 1)
    rank = _starts(n_free)[draw_crystal] + torch.where(exhaustive[draw_crystal], position, sampled)
    # The m-th edge pair (sorted) has edge_ids[m] - m no-edge pairs before it, so the
    # no-edge pair of rank r has as many edge pairs before it as values <= r there.
    before = edge_ids - torch.arange(len(edge_ids), device=device)
    free_ids = rank + torch.searchsorted(before, rank, right=True)
    rate = torch.where(exhaustive, 1.0, n_free.float() / float(max_pairs or 1))
    free_weight = rate[draw_crystal]

    ids = torch.cat([edge_ids, free_ids])
    order = torch.argsort(ids)  # pairs in (crystal, i, j) order: reproducible batches
    ids = ids[order]
    crystal = torch.searchsorted(pair_start, ids, right=True) - 1
    local = ids - pair_start[crystal]
    first = atom_start[crystal] + torch.div(local, n_atoms[crystal], rounding_mode="floor")
    second = atom_start[crystal] + local % n_atoms[crystal]
    target = torch.cat([edge_target, torch.zeros_like(free_ids)])[order]
    weight = torch.cat([torch.ones(len(edge_ids), device=device), free_weight])[order]
    return first, second, target, weight, crystal


class CrysAE(nn.Module):
    """Crystal graph autoencoder of CrysXPP: CGCNN encoder, connectivity and atom decoders.

    Encoder: a linear embedding of the input atom features (no bias, as in the authors'
    weights) and ``n_conv`` CGCNN convolutions. Decoders, from the encoded atom vectors
    :math:`h`:

    - connectivity: for an ordered atom pair (i, j) of one crystal, class scores
      ``fc1(fc_adj(h_i, h_j))`` (a bilinear layer then a linear one) over ``n_classes``
      classes, the number of times j is among i's neighbours (0 = no edge, capped at
      ``n_classes - 1``);
    - atom features: ``fc_atom_feature(h_i)``, logits of the input features.

    The authors decode all ``n_atoms**2`` pairs of each crystal. Here, to bound time and
    memory on large cells, each crystal decodes all its pairs with an edge and at most
    ``max_pairs`` of those without (sampled, and weighted to keep the loss unbiased; see
    :func:`connectivity_pairs`). Crystals with at most ``max_pairs`` no-edge pairs
    (about 32 atoms for the default) are decoded exactly as the authors do. In eval mode
    the draws come from a generator seeded afresh on every call, so that a validation
    loss is the same at every epoch.

    Parameters
    ----------
    n_atom_features : int
        Length of the input atom feature vectors (92 for the CGCNN table).
    cutoff : float
        Neighbour cutoff in Å; sets the range of the Gaussian distance expansion.
    gaussian_step : float, default=0.2
    atom_fea_len : int, default=64
    n_conv : int, default=3
    n_classes : int, default=6
        Connectivity classes: 0, 1, ..., ``n_classes - 1`` or more edges.
    max_pairs : int or None, default=1024
        No-edge pairs decoded at most per crystal in :meth:`forward`; None decodes all.

    Examples
    --------
    >>> model = CrysAE(n_atom_features=92, cutoff=8.0)
    >>> batch = CrystalBatch(
    ...     atom_features=torch.rand(3, 92), center=torch.tensor([0, 1, 2, 2]),
    ...     neighbor=torch.tensor([1, 0, 2, 2]), distance=torch.tensor([2.0, 2.0, 3.0, 3.0]),
    ...     crystal_index=torch.tensor([0, 0, 1]), n_atoms=torch.tensor([2, 1]))
    >>> model.embed(batch).shape
    torch.Size([2, 64])
    >>> out = model(batch)
    >>> out.pair_logits.shape, out.pair_target.tolist()
    (torch.Size([5, 6]), [0, 1, 1, 0, 2])
    """

    def __init__(
        self,
        n_atom_features: int,
        cutoff: float,
        gaussian_step: float = 0.2,
        atom_fea_len: int = 64,
        n_conv: int = 3,
        n_classes: int = 6,
        max_pairs: int | None = 1024,
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        if max_pairs is not None and max_pairs < 1:
            raise ValueError(f"max_pairs must be a positive int or None, got {max_pairs}")
        self.n_classes = n_classes
        self.max_pairs = max_pairs
        self.expansion = GaussianExpansion(cutoff, gaussian_step)
        self.embedding = nn.Linear(n_atom_features, atom_fea_len, bias=False)
        self.convs = nn.ModuleList(
            CGCNNConv(atom_fea_len, self.expansion.n_features) for _ in range(n_conv)
        )
        self.fc_adj = nn.Bilinear(atom_fea_len, atom_fea_len, n_classes)
        self.fc1 = nn.Linear(n_classes, n_classes)
        self.fc_atom_feature = nn.Linear(atom_fea_len, n_atom_features)

    def encode(self, batch: CrystalBatch) -> torch.Tensor:
        """Atom vectors after the last convolution, (N, atom_fea_len)."""
        atom_fea = self.embedding(batch.atom_features)
        edge_fea = self.expansion(batch.distance)
        for conv in self.convs:
            atom_fea = conv(atom_fea, batch.center, batch.neighbor, edge_fea)
        return atom_fea

    def embed(self, batch: CrystalBatch) -> torch.Tensor:
        """Crystal embeddings: the encoded atom vectors averaged per crystal, (B, atom_fea_len)."""
        return mean_pool(self.encode(batch), batch.crystal_index, batch.n_atoms)

    def decode_connectivity(
        self, atom_fea: torch.Tensor, first: torch.Tensor, second: torch.Tensor
    ) -> torch.Tensor:
        """Connectivity class scores (logits) of the pairs (first[p], second[p]), (P, n_classes).

        ``fc1(fc_adj(h[first], h[second]))``, computed by projecting every atom vector
        once through the bilinear weight and taking one dot product per pair and class: the
        same numbers as ``nn.Bilinear`` for a fraction of the time (on the CPU
        ``nn.Bilinear`` is about 15 times slower here).
        """
        n_classes, width = self.fc_adj.out_features, self.fc_adj.in1_features
        # projected[n, k, b] = sum_a h[n, a] W[k, a, b]
        weight = self.fc_adj.weight.permute(1, 0, 2).reshape(width, n_classes * width)
        projected = (atom_fea @ weight).view(-1, n_classes, width)
        # index_select: a deterministic backward on the CPU, unlike fancy indexing.
        left = projected.index_select(0, first)  # (P, K, A)
        right = atom_fea.index_select(0, second)  # (P, A)
        scores = (left * right[:, None, :]).sum(dim=2) + self.fc_adj.bias
        return self.fc1(scores)

    def decode_atom_features(self, atom_fea: torch.Tensor) -> torch.Tensor:
        """Logits of the input atom features, (N, n_atom_features)."""
        return self.fc_atom_feature(atom_fea)

    def forward(self, batch: CrystalBatch) -> CrysAEOutput:
        """Encode the batch and decode connectivity and atom features, with their targets."""
        return self.reconstruct(self.encode(batch), batch)

    def reconstruct(self, atom_fea: torch.Tensor, batch: CrystalBatch) -> CrysAEOutput:
        """Decode connectivity and atom features from the atom vectors ``atom_fea``."""
        generator = None
        if not self.training:
            generator = torch.Generator(device=atom_fea.device).manual_seed(0)
        first, second, target, weight, crystal = connectivity_pairs(
            batch.center, batch.neighbor, batch.n_atoms, self.n_classes, self.max_pairs, generator
        )
        return CrysAEOutput(
            feature_logits=self.decode_atom_features(atom_fea),
            feature_target=batch.atom_features,
            pair_logits=self.decode_connectivity(atom_fea, first, second),
            pair_target=target,
            pair_weight=weight,
            pair_crystal=crystal,
            crystal_index=batch.crystal_index,
            n_atoms=batch.n_atoms,
        )


def _per_crystal_mean(values: torch.Tensor, crystal: torch.Tensor, weight: torch.Tensor, n: int):
    """Weighted mean of ``values`` within each crystal, (n,)."""
    total = values.new_zeros(n).index_add_(0, crystal, values * weight)
    norm = values.new_zeros(n).index_add_(0, crystal, weight)
    return total / norm.clamp_min(torch.finfo(values.dtype).tiny)


class CrysAELoss(nn.Module):
    """Reconstruction loss of CrysAE, as in the authors' pretraining script.

    For each crystal,
    ``connectivity_weight * CE + (1 - connectivity_weight) * feature loss``, averaged over
    the crystals of the batch:

    - ``CE``: cross-entropy of the connectivity classes over the crystal's atom pairs,
      a weighted mean with class weight ``no_edge_weight`` for class 0 ("no edge") and 1
      for the others (most pairs have no edge), and the sampling weights of the pairs;
    - feature loss: mean over the crystal's atoms and feature columns of the
      binary cross-entropy between the decoded logits and the input features
      (``feature_loss="bce"``, the default), or of the squared error between the decoder
      outputs and the input (``"mse"``).

    Binary cross-entropy with logits is the default, as in the authors' code, because
    the CGCNN features are 0/1 one-hot codes (occupancy-weighted sums of them, in [0, 1],
    for disordered sites): each column is a Bernoulli target, and BCE keeps a useful
    gradient where a squared error on a sigmoid saturates. ``"mse"``, the squared error
    between the raw decoder outputs and the input, is for feature tables with values
    outside [0, 1], for which BCE is not defined.

    Parameters
    ----------
    connectivity_weight : float, default=0.9
        Weight of the connectivity term; the feature term gets ``1 - connectivity_weight``.
    no_edge_weight : float, default=0.1
        Class weight of the "no edge" class in the cross-entropy.
    feature_loss : {"bce", "mse"}, default="bce"
    """

    def __init__(
        self,
        connectivity_weight: float = 0.9,
        no_edge_weight: float = 0.1,
        feature_loss: str = "bce",
    ) -> None:
        super().__init__()
        if not 0 <= connectivity_weight <= 1:
            raise ValueError(f"connectivity_weight must be in [0, 1], got {connectivity_weight}")
        if feature_loss not in ("bce", "mse"):
            raise ValueError(f"feature_loss must be 'bce' or 'mse', got {feature_loss!r}")
        self.connectivity_weight = connectivity_weight
        self.no_edge_weight = no_edge_weight
        self.feature_loss = feature_loss

    def components(self, out: CrysAEOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-crystal connectivity and feature losses, each (B,)."""
        n = len(out.n_atoms)
        nll = F.cross_entropy(out.pair_logits, out.pair_target, reduction="none")
        class_weight = torch.where(out.pair_target == 0, self.no_edge_weight, 1.0)
        connectivity = _per_crystal_mean(nll, out.pair_crystal, class_weight * out.pair_weight, n)
        if self.feature_loss == "bce":
            error = F.binary_cross_entropy_with_logits(
                out.feature_logits, out.feature_target, reduction="none"
            )
        else:
            error = (out.feature_logits - out.feature_target) ** 2
        per_atom = error.mean(dim=1)
        features = _per_crystal_mean(per_atom, out.crystal_index, torch.ones_like(per_atom), n)
        return connectivity, features

    def forward(self, out: CrysAEOutput) -> torch.Tensor:
        """The batch loss, a scalar."""
        connectivity, features = self.components(out)
        w = self.connectivity_weight
        return (w * connectivity + (1 - w) * features).mean()


class MaskedCGCNN(CGCNN):
    """CGCNN with the CrysXPP feature selector: input atom features times a learnable ``mask``.

    ``mask`` (one entry per atom feature column) starts at 1, so that the network starts
    as a plain CGCNN; an L1 penalty on it during training (see
    :class:`~skcrystal.estimators.CrysXPPRegressor`) shrinks the entries of the columns the
    property does not need. Parameters as :class:`~skcrystal.nn.cgcnn.CGCNN`.

    Examples
    --------
    >>> model = MaskedCGCNN(n_atom_features=92, n_targets=1, cutoff=8.0)
    >>> model.mask.shape, bool((model.mask == 1).all())
    (torch.Size([92]), True)
    """

    def __init__(self, n_atom_features: int, n_targets: int, cutoff: float, **kwargs) -> None:
        super().__init__(n_atom_features, n_targets, cutoff, **kwargs)
        self.mask = nn.Parameter(torch.ones(n_atom_features))

    def embed_atoms(self, atom_features: torch.Tensor) -> torch.Tensor:
        """Masked input atom features -> initial atom vectors (N, atom_fea_len)."""
        return self.embedding(atom_features * self.mask)
