"""Line graphs of batched crystal graphs: every pair of bonds that meet at an atom.

Built per mini-batch from the bond list, with vectorised index arithmetic and no loop over
crystals or atoms, on whatever device the bonds are: a batch of 64 Materials Project
crystals has about 300K bond pairs, too many to store for a whole dataset.

Bonds are directed as messages flow, ``source -> target`` (in skcrystal's graphs: from
``neighbor`` to ``center``). The line graph links bond ``e1 = a -> b`` to every bond
``e2 = b -> c`` leaving the atom it arrives at, ``c = a`` included (the reverse bond, at
cosine 1): DGL's ``line_graph(backtracking=True)``, which ALIGNN uses.
"""

from __future__ import annotations

import torch


def bond_pairs(
    source: torch.Tensor, target: torch.Tensor, n_atoms: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs of bonds ``(e1, e2)`` with ``target[e1] == source[e2]``.

    Parameters
    ----------
    source, target : Tensor (E,) int64
        Atom each bond leaves and arrives at.
    n_atoms : int
        Number of atoms of the batch.

    Returns
    -------
    first, second : Tensor (T,) int64
        Bond indices ``e1`` and ``e2`` of every pair, ``T = sum_b indeg(b) * outdeg(b)``;
        sorted by ``e2``.

    Examples
    --------
    >>> source, target = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2])
    >>> first, second = bond_pairs(source, target, n_atoms=3)
    >>> list(zip(first.tolist(), second.tolist()))  # e.g. (0, 2): 0->1 then 1->2
    [(1, 0), (0, 1), (0, 2)]
    """
    by_target = torch.argsort(target, stable=True)
    arriving = torch.bincount(target, minlength=n_atoms)
    start = torch.cumsum(arriving, 0) - arriving  # first bond arriving at each atom
    per_second = arriving[source]  # bonds arriving where each bond leaves
    second = torch.repeat_interleave(torch.arange(len(source), device=source.device), per_second)
    offset = torch.arange(len(second), device=source.device)
    offset = offset - (torch.cumsum(per_second, 0) - per_second)[second]
    first = by_target[start[source][second] + offset]
    return first, second


def bond_angle_cosines(
    vector: torch.Tensor, first: torch.Tensor, second: torch.Tensor
) -> torch.Tensor:
    """Cosine of the angle at the shared atom ``b`` between ``b -> a`` and ``b -> c``.

    ``vector`` is skcrystal's bond vector, from the target atom to the source's image
    (``center -> neighbor``), so for ``e1 = a -> b`` it points from ``b`` to ``a`` and for
    ``e2 = b -> c`` from ``c`` to ``b``. Clamped to [-1, 1].

    Examples
    --------
    >>> vector = torch.tensor([[1.0, 0.0, 0.0], [0.0, -2.0, 0.0]])  # b->a, and c->b
    >>> bond_angle_cosines(vector, torch.tensor([0]), torch.tensor([1])).tolist()  # 90 deg
    [0.0]
    """
    to_a = vector.index_select(0, first)
    to_c = -vector.index_select(0, second)
    cosine = (to_a * to_c).sum(dim=1) / (to_a.norm(dim=1) * to_c.norm(dim=1))
    return cosine.clamp(-1.0, 1.0)
