"""Data-parallel CrysGNN pretraining over several processes with torch.distributed.

Start one process per GPU, or several CPU processes (backend ``gloo``), with torchrun:

    torchrun --standalone --nproc_per_node 2 examples/pretrain_distributed.py --limit 2000
    torchrun --standalone --nproc_per_node 2 examples/pretrain_distributed.py --smoke

Rank 0 builds the graphs into an on-disk :class:`~skcrystal.graphs.GraphStore` (``--store``,
default ``OUT/graphs``; an existing store is reused, an interrupted one resumed) while the
other ranks wait; then every rank opens the store and trains on its share, reading only its
own mini-batches from disk, with gradients averaged across ranks
(:func:`skcrystal.distributed.fit_data_parallel`), and checks that all ranks hold the same
weights; rank 0 saves the teacher with :func:`skcrystal.hub.save_model` and writes a JSON
summary. See docs/cluster.md for clusters (SLURM) and GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from torch import distributed as dist

from skcrystal import CrysGNNPretrainer, CrystalGraphTransformer
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.distributed import fit_data_parallel, parameters_agree
from skcrystal.graphs import GraphStore
from skcrystal.hub import save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2000, help="first N MP structures")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="60 structures, 2 epochs")
    parser.add_argument("--out", default="crysgnn-distributed", help="output folder")
    parser.add_argument("--store", help="graph store folder (default: OUT/graphs)")
    args = parser.parse_args()
    limit, epochs = (60, 2) if args.smoke else (args.limit, args.epochs)

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if cuda else "cpu"
    torch.set_num_threads(1)

    store_path = Path(args.store or Path(args.out) / "graphs")
    if rank == 0 and not (store_path.exists() and GraphStore.open(store_path).complete):
        structures = load_mp_formation_energy(limit=limit).structure
        transformer = CrystalGraphTransformer(symmetry=True)
        GraphStore.create(store_path, transformer, structures, chunk_size=10_000)
    dist.barrier()  # the store is complete for every rank
    graphs = GraphStore.open(store_path)
    teacher = CrysGNNPretrainer(batch_size=32, random_state=0, device=device)
    fit_data_parallel(teacher, graphs, max_epochs=epochs)
    agree = parameters_agree(teacher.module_.cpu())
    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_model(teacher, out / "crysgnn.safetensors", data=f"first {limit} MP structures")
        summary = {
            "world_size": dist.get_world_size(),
            "crystals": len(graphs),
            "epoch_losses_rank0": teacher.distributed_losses_.tolist(),
            "identical_parameters_on_all_ranks": agree,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary))
    dist.destroy_process_group()
    if not agree:
        raise SystemExit("ranks ended with different parameters")


if __name__ == "__main__":
    main()
