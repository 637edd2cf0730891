"""Test MAE on the Materials Project set with the fixed 20/10/70 split of CGCNN/CrysXPP.

The 36,737 MP crystals are permuted with seed 0: the first 20 % train, the next 10 %
validate (early stopping keeps the epoch with the lowest validation MAE; nothing else is
chosen), the remaining 70 % test. Target scaling is fitted on the training rows only.

    python benchmarks/accuracy_mp.py --target e_form --epochs 120
    python benchmarks/accuracy_mp.py --target gap_pbe --epochs 120
    python benchmarks/accuracy_mp.py --model crysxpp --encoder crysae.safetensors

``--model crysxpp`` needs a pretrained CrysAE (``--encoder``, a file written by
``benchmarks/pretrain.py``); CrysAE pretraining sees structures only, never targets.
``--model crysgnn`` fine-tunes a CrysGNN encoder end to end (``CrysGNNRegressor``; the
bundled ``crysgnn-mp`` unless ``--encoder`` names another); ``--model pretrain-gnn`` does
the same with an encoder pretrained by attribute masking (``--encoder``, written by
``benchmarks/pretrain.py --model pretrain-gnn``). ``benchmarks/crysgnn_table3.py``
collects these into CrysGNN's Table 3.

Writes the section ``accuracy_<target>_<model>`` of docs/benchmarks.md. ``--save`` also
writes the fitted model as a safetensors file (see :mod:`skcrystal.hub`). Each fit saves
its training state every epoch in ``benchmarks/out/checkpoints/``: the same command, run
again after an interruption, continues each fit from its last epoch (the estimators'
``checkpoint``); fit times are the epochs' durations over all the runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report import checkpoint_file, machine, markdown_table, training_seconds, write_section
from skorch.callbacks import LRScheduler

from skcrystal import (
    CGCNNRegressor,
    CrysGNNRegressor,
    CrystalGraphTransformer,
    CrysXPPRegressor,
    DistilledRegressor,
)
from skcrystal.datasets import benchmark_split, load_mp_band_gap, load_mp_formation_energy
from skcrystal.explain import mask_uniformity
from skcrystal.hub import save_model

# MAE at 20 % training data in the CrysXPP paper (Das et al. 2022, Table 2), eV/atom
PUBLISHED = {("e_form", "cgcnn"): 0.127, ("e_form", "crysxpp"): 0.086}
# Training time per fit is reported too: the distillation overhead target is 1.3x.


def split(n: int, seed: int = 0, train_fraction: float = 0.2):
    """Indices of the train / 10 % validation / rest test split (20/10/70 by default).

    The library's :func:`skcrystal.datasets.benchmark_split`, which ``mp_split`` and the
    loaders' ``split=`` give to users of the bundled models.
    """
    return benchmark_split(n, seed=seed, train_fraction=train_fraction)


def checkpoint_path(args: argparse.Namespace, params: dict) -> Path:
    """The file where one fit of this command keeps its training state."""
    parts = [args.target, args.model, *(f"{k}{v}" for k, v in sorted(params.items()))]
    if args.encoder:
        parts.append(Path(args.encoder).stem)
    if args.teacher:
        parts.append(Path(args.teacher).stem)
    parts += [f"{args.train_fraction}", f"lr{args.lr}", f"bs{args.batch_size}"]
    parts += [args.atom_features and Path(args.atom_features).stem, args.nonnegative, args.tag]
    name = "-".join(str(p) for p in parts if p)
    return checkpoint_file(f"accuracy-{name}-{args.epochs}ep")


def make_model(name: str, args: argparse.Namespace, **params):
    common = dict(
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        n_iter_no_change=args.epochs,
        random_state=0,
        verbose=1,
        device=args.device,
        nonnegative=args.nonnegative,
        optimizer=torch.optim.Adam,  # the recipe of the bundled models (per-epoch cosine)
        lr_schedule=LRScheduler("CosineAnnealingLR", T_max=args.epochs),
        checkpoint=None if args.limit else checkpoint_path(args, params),
    )
    if name == "cgcnn":
        return CGCNNRegressor(**common)
    if name == "crysxpp":
        if not args.encoder:
            raise SystemExit("--model crysxpp needs --encoder (a pretrained CrysAE file)")
        return CrysXPPRegressor(encoder=args.encoder, **params, **common)
    if name == "crysgnn":
        return CrysGNNRegressor(encoder=args.encoder or "crysgnn-mp", **common)
    if name == "pretrain-gnn":
        if not args.encoder:
            raise SystemExit("--model pretrain-gnn needs --encoder (an attribute-masking file)")
        return CrysGNNRegressor(encoder=args.encoder, **common)
    if name.startswith("distilled-"):
        student = name.removeprefix("distilled-")
        student_params = {}
        if student == "crysxpp":
            if not args.encoder:
                raise SystemExit(f"--model {name} needs --encoder (a pretrained CrysAE file)")
            student_params = {"encoder": args.encoder, "l1": args.l1[0]}
        return DistilledRegressor(
            teacher=args.teacher,
            student=student,
            student_params=student_params,
            alpha=params.get("alpha", args.alpha[0]),
            **common,
        )
    raise ValueError(f"unknown model {name!r}")


def candidates(args: argparse.Namespace) -> list[dict]:
    """Hyper-parameter settings to choose from on the validation crystals."""
    if args.model == "crysxpp":
        return [{"l1": value} for value in args.l1]
    if args.model.startswith("distilled-"):
        return [{"alpha": value} for value in args.alpha]
    return [{}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["e_form", "gap_pbe"], default="e_form")
    parser.add_argument(
        "--model",
        choices=[
            "cgcnn",
            "crysxpp",
            "distilled-cgcnn",
            "distilled-crysxpp",
            "crysgnn",
            "pretrain-gnn",
        ],
        default="cgcnn",
    )
    parser.add_argument("--teacher", help="CrysGNN teacher for distilled-* (default: bundled)")
    parser.add_argument(
        "--alpha", type=float, nargs="+", default=[0.5], help="distillation weights to choose from"
    )
    parser.add_argument(
        "--encoder", help="pretrained encoder (.safetensors): CrysAE for crysxpp, CrysGNN otherwise"
    )
    parser.add_argument(
        "--l1", type=float, nargs="+", default=[0.01], help="crysxpp mask penalties to choose from"
    )
    parser.add_argument("--train-fraction", type=float, default=0.2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=2, help="processes for parsing")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", help="write the fitted model to this .safetensors path")
    parser.add_argument(
        "--nonnegative",
        choices=["clip", "softplus"],
        default=False,
        help="non-negative predictions (band gaps): clipped at 0, or a softplus output",
    )
    parser.add_argument(
        "--atom-features",
        help="atom feature table of the graphs (a name or an atom_init.json path; default "
        "'cgcnn'); when given, it is named in the section's name",
    )
    parser.add_argument("--tag", help="suffix of the docs section, to keep runs apart")
    parser.add_argument(
        "--limit", type=int, help="only the first N crystals: a smoke run, no docs section"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load = load_mp_formation_energy if args.target == "e_form" else load_mp_band_gap
    df = load(n_jobs=args.jobs, limit=args.limit)
    y = df[args.target].to_numpy()
    t0 = time.perf_counter()
    builder = CrystalGraphTransformer(atom_features=args.atom_features or "cgcnn")
    graphs = builder.transform(df.structure)
    graph_time = time.perf_counter() - t0
    train, valid, test = split(len(df), train_fraction=args.train_fraction)

    fitted = []
    for params in candidates(args):
        model = make_model(args.model, args, **params)
        model.fit(graphs[train], y[train], validation_data=(graphs[valid], y[valid]))
        fit_time = training_seconds(model)
        fitted.append((float(np.min(model.history[:, "valid_mae"])), fit_time, params, model))
    _, fit_time, chosen, model = min(fitted, key=lambda f: f[0])
    test_mae = float(np.abs(model.predict(graphs[test]) - y[test]).mean())
    extra = {}
    if args.nonnegative == "clip":  # the same network without the clip: a plain model
        unclipped = model.set_params(nonnegative=False).predict(graphs[test])
        model.set_params(nonnegative="clip")
        extra["test MAE unclipped"] = float(np.abs(unclipped - y[test]).mean())
        extra["test predictions < 0"] = f"{(unclipped < 0).mean():.1%}"
    if args.model == "crysxpp":
        extra["mask uniformity"] = mask_uniformity(model.feature_importances_)
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
        "published": PUBLISHED.get((args.target, args.model), "—")
        if args.train_fraction == 0.2
        else "—",
        "fit time (s)": round(fit_time),
        **extra,
    }
    settings = (
        f"Adam lr {args.lr} with cosine decay over {args.epochs} epochs, batch "
        f"{args.batch_size}, default model size, seed 0; graphs built in {graph_time:.0f} s."
    )
    if args.encoder and args.model.endswith(("crysxpp", "crysgnn", "pretrain-gnn")):
        settings += f" Encoder: `{Path(args.encoder).name}`."
    if args.model.startswith("distilled-"):
        teacher = Path(args.teacher).name if args.teacher else "bundled crysgnn-mp"
        settings += f" Teacher: `{teacher}`, its embeddings took {model.teacher_time_:.1f} s."
    if args.nonnegative:
        settings += f" Non-negative output: `{args.nonnegative}`."
    if len(fitted) > 1:
        tried = ", ".join(
            f"{p} → {v:.4g}" for v, _, p, _ in sorted(fitted, key=lambda f: str(f[2]))
        )
        settings += f" Chosen on the best validation MAE: {chosen} (tried: {tried})."
    name = args.model if args.train_fraction == 0.2 else f"{args.model}_{args.train_fraction}"
    if args.atom_features:
        name += f"_{Path(args.atom_features).stem}"
        settings += f" Atom features: `{Path(args.atom_features).name}`."
    if args.nonnegative:
        name += f"_{args.nonnegative}"
    if args.tag:
        name += f"_{args.tag}"
    split_text = f"{args.train_fraction:.0%}/10%/rest split, seed 0"
    shown = [Path(a).name if "/" in a else a for a in sys.argv[1:]]
    command = " ".join(["python benchmarks/accuracy_mp.py", *shown])
    if args.save:
        save_model(
            model,
            args.save,
            data=f"Materials Project (CGCNN set), target {args.target}",
            split=f"{split_text} (train/valid/test), permutation seed 0",
            chosen=chosen,
            test_mae=test_mae,
            command=command,
        )
    if args.limit:
        print(markdown_table([row]))
        return
    write_section(
        f"accuracy_{args.target}_{name}",
        f"Accuracy: MP {args.target}, {name.replace('_', ', ')} ({split_text})",
        f"`{command}` on {machine(args.device)}.\n\n{markdown_table([row])}\n\n{settings}",
    )


if __name__ == "__main__":
    main()
