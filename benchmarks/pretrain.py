"""Self-supervised pretraining on the unlabelled MP structures: throughput, memory, losses.

Pretrains on the 36,737 structures of the MP set (their targets are never read), less
the structures that repeat an earlier one (:func:`skcrystal.dedup.find_duplicates`,
unless ``--keep-duplicates``), with 5 % of them (seed 0) held out to report the
reconstruction loss on unseen crystals and to keep the best epoch. Prints and writes the
section ``pretrain_<model>`` of docs/benchmarks.md, and with ``--save`` the fitted
pretrainer as a safetensors file that ``CrysXPPRegressor(encoder=...)`` or
``DistilledRegressor(teacher=...)`` accept.

    python benchmarks/pretrain.py --model crysae --epochs 30 --save crysae-mp.safetensors
    python benchmarks/pretrain.py --model crysgnn --epochs 30 --device cuda
    python benchmarks/pretrain.py --model pretrain-gnn --epochs 30 --save pretrain-gnn.safetensors

``--model pretrain-gnn`` is the CrysGNN encoder pretrained by Hu et al.'s attribute
masking instead (``CrysGNNPretrainer(pretraining="attribute_masking")``), the
Pretrain-GNN baseline of CrysGNN's Table 3; it needs no space groups.

Adam's learning rate is the pretrainer's default unless ``--lr`` is given: 3e-3 for
CrysAE; 0.03 for CrysGNN since 2026-12-07 (benchmarks/teacher_recipe.py chose it). The
CrysGNN and Pretrain-GNN runs before that date used ``--lr 0.003``, then the default.

Throughput counts training crystals per second of ``fit`` (validation included); peak
memory is the process's maximum resident set size on CPU, or the largest CUDA
allocation on a GPU.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from report import machine, markdown_table, write_section

from skcrystal import CrystalGraphTransformer
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.dedup import find_duplicates
from skcrystal.hub import save_model


def make_pretrainer(name: str, args: argparse.Namespace):
    common = dict(
        max_epochs=args.epochs,
        n_iter_no_change=args.epochs,
        batch_size=args.batch_size,
        random_state=0,
        verbose=1,
        device=args.device,
    )
    if args.lr is not None:  # else the pretrainer's own default
        common["lr"] = args.lr
    if name == "crysae":
        from skcrystal import CrysAEPretrainer

        return CrysAEPretrainer(**common)
    from skcrystal import CrysGNNPretrainer

    if name == "pretrain-gnn":
        return CrysGNNPretrainer(pretraining="attribute_masking", **common)
    return CrysGNNPretrainer(**common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["crysae", "crysgnn", "pretrain-gnn"], default="crysae")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--lr", type=float, help="Adam's learning rate (default: the pretrainer's default)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, help="only the first N structures (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="processes for parsing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save", help="write the fitted pretrainer to this .safetensors path")
    parser.add_argument("--keep-duplicates", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    df = load_mp_formation_energy(n_jobs=args.jobs, limit=args.limit)
    n_duplicates = 0
    if not args.keep_duplicates:
        duplicates = find_duplicates(df.structure.tolist())
        n_duplicates = len(duplicates)
        df = df.drop(index=df.index[duplicates])
    t0 = time.perf_counter()
    symmetry = args.model == "crysgnn"
    builder = CrystalGraphTransformer(symmetry=symmetry, n_jobs=args.jobs if symmetry else None)
    graphs = builder.transform(df.structure)
    graph_time = time.perf_counter() - t0
    order = np.random.default_rng(0).permutation(len(df))
    n_valid = len(df) // 20
    train, valid = graphs[order[n_valid:]], graphs[order[:n_valid]]

    model = make_pretrainer(args.model, args)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model.fit(train, validation_data=valid)
    fit_time = time.perf_counter() - t0
    if args.device.startswith("cuda"):
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (GPU)"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (RSS)"
    history = model.history
    best = int(np.argmin(history[:, "valid_loss"]))
    epochs_run = len(history)
    row = {
        "model": args.model,
        "crystals train / held out": f"{len(train)} / {len(valid)}",
        "epochs (best)": f"{epochs_run} ({best + 1})",
        "train loss, first → best epoch": (
            f"{history[0, 'train_loss']:.4f} → {history[best, 'train_loss']:.4f}"
        ),
        "held-out loss, first → best": (
            f"{history[0, 'valid_loss']:.4f} → {history[best, 'valid_loss']:.4f}"
        ),
        "crystals/s": round(len(train) * epochs_run / fit_time),
        "s/epoch": round(fit_time / epochs_run, 1),
        "peak memory": peak,
    }
    coverage = ""
    if symmetry:
        coverage = (
            f" Space group found for {model.symmetry_coverage_:.2%} of the training crystals."
        )
    extra = ""
    if hasattr(model, "loss_components"):
        parts = model.loss_components(valid)
        extra = (
            "\n\nHeld-out loss components at the kept epoch: "
            + ", ".join(f"{name} {value:.4f}" for name, value in parts.items())
            + "."
        )
    write_section(
        f"pretrain_{args.model}",
        f"Pretraining: {args.model} on the unlabelled MP structures",
        f"`python benchmarks/pretrain.py --model {args.model} --epochs {args.epochs} "
        f"--batch-size {args.batch_size} --device {args.device}` on {machine(args.device)}."
        f"\n\n{markdown_table([row])}\n\nAdam lr {model.lr}, seed 0; graphs built in "
        f"{graph_time:.0f} s (not counted above); {n_duplicates} duplicate structures "
        f"removed first.{coverage}{extra}",
    )
    if args.save:
        save_model(
            model,
            args.save,
            data=f"{len(train)} unlabelled Materials Project structures (CGCNN set), "
            f"{len(valid)} held out (permutation seed 0), {n_duplicates} duplicates removed",
            command=f"python benchmarks/pretrain.py --model {args.model} --epochs "
            f"{args.epochs} --batch-size {args.batch_size} --save {args.save}",
            epochs=f"{epochs_run}, best {best + 1}",
            held_out_loss=float(history[best, "valid_loss"]),
        )


if __name__ == "__main__":
    main()
