"""Data-parallel pretraining over several processes or machines with ``torch.distributed``.

Each process (rank) trains the same network on its own share of the crystals; PyTorch's
``DistributedDataParallel`` averages the gradients after every step, so all ranks hold
identical weights throughout. Start the processes with ``torchrun`` (one per GPU, or
several CPU processes with the ``gloo`` backend) and call
:func:`fit_data_parallel` in each; see docs/cluster.md and
``examples/pretrain_distributed.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from skcrystal.estimators.base import seeded
from skcrystal.estimators.data import CrystalGraphDataset

__all__ = ["fit_data_parallel", "parameters_agree"]


def fit_data_parallel(pretrainer: Any, X: Any, *, max_epochs: int | None = None) -> Any:
    """Pretrain ``pretrainer`` on ``X`` in step with the other ranks of the process group.

    Every rank calls this with the same ``X`` (structures or
    :class:`~skcrystal.CrystalGraphs`) and the same parameters; each trains on a disjoint
    ``1 / world_size`` share of the crystals per epoch (reshuffled every epoch), with
    gradients averaged across ranks, so that every rank ends with the same weights. The
    pretrainer's ``batch_size`` is per rank; its optimizer, learning rate and loss are
    used as set. At the end the batch-norm running statistics are averaged over the
    ranks. No validation split or early stopping is run: evaluate the result with
    ``score`` afterwards. The network is initialised from ``random_state`` and rank 0's
    weights are broadcast to all ranks before the first step.

    Parameters
    ----------
    pretrainer : CrysAEPretrainer or CrysGNNPretrainer
        Unfitted (or to be refitted). ``device`` is used as given: on GPUs, set
        ``device=f"cuda:{local_rank}"`` per rank.
    X : sequence of crystals or CrystalGraphs
    max_epochs : int, optional
        Defaults to the pretrainer's ``max_epochs`` ("auto" resolved from ``len(X)``).

    Returns
    -------
    pretrainer
        Fitted, with ``module_`` in eval mode and ``distributed_losses_``, the mean
        training loss of each epoch on this rank.

    Raises
    ------
    RuntimeError
        If no process group is initialised (``torch.distributed.init_process_group``).
    ValueError
        If the pretrainer has a learning-rate schedule or warm-up, or a ``checkpoint``
        (neither is run here).
    """
    if pretrainer.lr_schedule != "constant" or pretrainer.warmup_epochs:
        raise ValueError(
            f"fit_data_parallel trains at a constant learning rate; the pretrainer has "
            f"lr_schedule={pretrainer.lr_schedule!r}, warmup_epochs={pretrainer.warmup_epochs}"
            ": set lr_schedule='constant' and warmup_epochs=0"
        )
    if pretrainer.checkpoint is not None:
        raise ValueError(
            "fit_data_parallel writes no training checkpoint; set checkpoint=None (the "
            "estimators' checkpoint resumes their own fit)"
        )
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "fit_data_parallel needs an initialised process group: start the processes "
            "with torchrun and call torch.distributed.init_process_group first"
        )
    graphs = pretrainer._training_graphs(X)
    if max_epochs is None:
        pretrainer._resolve_recipe(len(graphs))
        max_epochs = pretrainer.max_epochs_
    seed = 0 if pretrainer.random_state is None else int(pretrainer.random_state)
    with seeded(seed, pretrainer.device):
        pretrainer.initialize()
    module = DistributedDataParallel(pretrainer.module_)
    dataset = CrystalGraphDataset(graphs)
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
    loader = DataLoader(
        dataset, batch_size=pretrainer.batch_size, sampler=sampler, collate_fn=dataset.collate
    )
    optimizer = pretrainer.optimizer_
    losses = []
    module.train()
    with seeded(seed + dist.get_rank(), pretrainer.device):  # pair sampling differs per rank
        for epoch in range(max_epochs):
            sampler.set_epoch(epoch)
            total, count = 0.0, 0
            for inputs, _ in loader:
                loss = pretrainer.criterion_(module(inputs.to(pretrainer.device)))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, count = total + float(loss.detach()) * len(inputs), count + len(inputs)
            losses.append(total / max(count, 1))
    _average_buffers(pretrainer.module_)
    pretrainer.module_.eval()
    pretrainer.distributed_losses_ = np.asarray(losses)
    return pretrainer


def _average_buffers(module: torch.nn.Module) -> None:
    """Average the batch-norm running statistics over the ranks (each saw other batches).

    DDP copies rank 0's buffers to the others before each forward pass, but the last
    pass leaves each rank with statistics of its own batch; the average of the ranks'
    estimates replaces them everywhere (integer counters are taken from rank 0).
    """
    world = dist.get_world_size()
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(world)
        else:
            dist.broadcast(buffer, src=0)


def parameters_agree(module: torch.nn.Module) -> bool:
    """Whether every rank holds exactly the same parameters and buffers as rank 0."""
    ok = torch.tensor(1, dtype=torch.int64)
    for tensor in (*module.parameters(), *module.buffers()):
        reference = tensor.detach().clone()
        dist.broadcast(reference, src=0)
        ok &= torch.tensor(int(torch.equal(reference, tensor.detach())), dtype=torch.int64)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok)
