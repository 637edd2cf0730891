"""Test MAE on the Materials Project set with the fixed 20/10/70 split of CGCNN/CrysXPP.

The 36,737 MP crystals are permuted with seed 0: the first 20 % train, the next 10 %
validate (early stopping keeps the epoch with the lowest validation MAE; nothing else is
chosen), the remaining 70 % test. Target scaling is fitted on the training rows only.

    python benchmarks/accuracy_mp.py --target e_form --epochs 120
    python benchmarks/accuracy_mp.py --target gap_pbe --epochs 120

Writes the section ``accuracy_<target>_<model>`` of docs/benchmarks.md. ``--save`` also
writes the fitted model as a safetensors file (see :mod:`skcrystal.hub`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from report import machine, markdown_table, write_section
from skorch.callbacks import LRScheduler

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.datasets import load_mp_band_gap, load_mp_formation_energy
from skcrystal.hub import save_model

PUBLISHED = {("e_form", "cgcnn"): 0.127}  # CGCNN at 20 % training data (CrysXPP paper, Table)


def split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the 20 % train / 10 % validation / 70 % test split."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = int(0.2 * n), int(0.1 * n)
    return order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]


def make_model(name: str, args: argparse.Namespace):
    common = dict(
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        n_iter_no_change=args.epochs,
        random_state=0,
        verbose=1,
        callbacks=[("lr_schedule", LRScheduler("CosineAnnealingLR", T_max=args.epochs))],
    )
    if name == "cgcnn":
        return CGCNNRegressor(**common)
    raise ValueError(f"unknown model {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["e_form", "gap_pbe"], default="e_form")
    parser.add_argument("--model", choices=["cgcnn"], default="cgcnn")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", help="write the fitted model to this .safetensors path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load = load_mp_formation_energy if args.target == "e_form" else load_mp_band_gap
    df = load(n_jobs=2)
    y = df[args.target].to_numpy()
    t0 = time.perf_counter()
    graphs = CrystalGraphTransformer(n_jobs=2).transform(df.structure)
    graph_time = time.perf_counter() - t0
    train, valid, test = split(len(df))

    model = make_model(args.model, args)
    t0 = time.perf_counter()
    model.fit(graphs[train], y[train], validation_data=(graphs[valid], y[valid]))
    fit_time = time.perf_counter() - t0
    test_mae = float(np.abs(model.predict(graphs[test]) - y[test]).mean())
    baseline = float(np.abs(y[test] - y[train].mean()).mean())
    history = model.history
    best = int(np.argmin(history[:, "valid_mae"]))
    row = {
        "model": args.model,
        "target": args.target,
        "train / valid / test": f"{len(train)} / {len(valid)} / {len(test)}",
        "test MAE": test_mae,
        "valid MAE (best epoch)": float(history[best, "valid_mae"]),
        "best epoch / run": f"{best + 1} / {len(history)}",
        "mean-predictor MAE": baseline,
        "published": PUBLISHED.get((args.target, args.model), "—"),
        "fit time (s)": round(fit_time),
    }
    settings = (
        f"Adam lr {args.lr} with cosine decay over {args.epochs} epochs, batch "
        f"{args.batch_size}, default model size, seed 0; graphs built in {graph_time:.0f} s."
    )
    write_section(
        f"accuracy_{args.target}_{args.model}",
        f"Accuracy: MP {args.target}, {args.model} (20/10/70 split, seed 0)",
        f"`python benchmarks/accuracy_mp.py --target {args.target} --model {args.model} "
        f"--epochs {args.epochs}` on {machine()}.\n\n{markdown_table([row])}\n\n{settings}",
    )
    if args.save:
        save_model(
            model,
            args.save,
            data=f"Materials Project (CGCNN set), target {args.target}",
            split="20/10/70 train/valid/test, permutation seed 0",
            test_mae=test_mae,
            command=f"python benchmarks/accuracy_mp.py --target {args.target} "
            f"--epochs {args.epochs} --save {args.save}",
        )


if __name__ == "__main__":
    main()
