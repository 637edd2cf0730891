"""Feeding :class:`CrystalGraphs` to torch: a dataset of crystal indices and its collate."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from skcrystal.graphs import CrystalGraphs
from skcrystal.nn.batch import CrystalBatch


class CrystalGraphDataset(Dataset):
    """Crystals of a :class:`CrystalGraphs` with optional targets, standardised on the fly.

    Items are crystal indices; :meth:`collate` turns a list of them into one batch
    ``(inputs, targets)`` where ``inputs`` is a :class:`~skcrystal.nn.batch.CrystalBatch`
    and ``targets`` are ``(y - target_mean) / target_scale`` (or ``None``). Per-crystal
    ``sample_weight`` travels with the crystals into ``inputs.sample_weight``, so it
    follows them through any ``Subset`` split and shuffled batching.
    """

    def __init__(
        self,
        graphs: CrystalGraphs,
        y: np.ndarray | None = None,
        target_mean: np.ndarray | float = 0.0,
        target_scale: np.ndarray | float = 1.0,
        sample_weight: np.ndarray | None = None,
    ) -> None:
        self.graphs = graphs
        self.y = y
        self.sample_weight = sample_weight
        self.target_mean = np.asarray(target_mean, dtype=np.float32)
        self.target_scale = np.asarray(target_scale, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> int:
        return int(index)

    def __getitems__(self, indices: list[int]) -> list[int]:
        return list(indices)

    def collate(self, indices: list[int]) -> tuple[CrystalBatch, torch.Tensor | None]:
        arrays = self.graphs.batch(indices)
        if self.sample_weight is not None:
            arrays["sample_weight"] = self.sample_weight[np.asarray(indices)].astype(np.float32)
        inputs = CrystalBatch(**{name: torch.from_numpy(a) for name, a in arrays.items()})
        if self.y is None:
            return inputs, None
        targets = (self.y[np.asarray(indices)] - self.target_mean) / self.target_scale
        return inputs, torch.from_numpy(targets.astype(np.float32))


def root_dataset(dataset: Dataset) -> Dataset:
    """The dataset under any number of ``Subset`` wrappers."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset
