"""GATGNN, MEGNet, ElemNet and ALIGNN: their cost, and which recipe wins on validation.

``speed``: on 512 random MP crystals (seed 0), how fast each model's default graphs build
and how many bonds per atom they hold, then training and prediction graphs/s and the
memory one training step keeps for the backward pass (batch 64, CGCNN as the anchor),
as ``benchmarks/alignn_bench.py speed`` measures ALIGNN.

``recipes``: on MP formation energies (the first 2,500 crystals of a seed-0 shuffle
that every model can take: a 5 Å radius graph exists and ElemNet knows the elements),
each model trains on 2,000 with this library's shared recipe and with its authors'
(``skcrystal.recipes``), both for ``--epochs`` epochs and picking their best epoch on
the same 500 validation crystals; the table gives that validation MAE. No test crystal
is involved: the winner becomes the model's default. Each fit keeps a checkpoint in
``benchmarks/out/checkpoints/``, so an interrupted run continues; minutes are the epochs'
durations. ``--models ALIGNN`` compares, at a
size the CPU trains (2 + 2 layers of 64, its own "shell" graphs), the shared recipe with
the published one (ALIGNN's default until this comparison; both keep their best
validation epoch), in a section of its own.

    python benchmarks/seed_models.py speed
    python benchmarks/seed_models.py recipes --epochs 30
    python benchmarks/seed_models.py recipes --epochs 30 --models ALIGNN
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch
from alignn_bench import time_network
from report import checkpoint_file, machine, markdown_table, training_seconds, write_section
from sklearn.base import clone

from skcrystal import (
    ALIGNNRegressor,
    CGCNNRegressor,
    CompositionTransformer,
    CrystalGraphTransformer,
    ElemNetRegressor,
    GATGNNRegressor,
    MEGNetRegressor,
)
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.nn.allocation import keep_freed_memory
from skcrystal.nn.cgcnn import CGCNN
from skcrystal.nn.elemnet import ELEMENTS, ElemNet
from skcrystal.nn.gatgnn import GATGNN
from skcrystal.nn.megnet import MEGNet
from skcrystal.recipes import recipe

MEGNET_GRAPHS = MEGNetRegressor().default_graph_builder()

#: name: (network, graph builder, its regressor, the authors' recipe)
MODELS = {
    "CGCNN (anchor)": (CGCNN, CrystalGraphTransformer(), CGCNNRegressor, "cgcnn-authors"),
    "GATGNN": (GATGNN, CrystalGraphTransformer(), GATGNNRegressor, "gatgnn-authors"),
    "MEGNet": (MEGNet, MEGNET_GRAPHS, MEGNetRegressor, "megnet-authors"),
    "ElemNet": (ElemNet, CompositionTransformer(), ElemNetRegressor, "elemnet-authors"),
}

#: ALIGNN at a size the CPU trains.
ALIGNN_CPU = {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 64}


def usable(structures) -> np.ndarray:
    """Crystals every model takes: ElemNet's elements, an atom within 5 Å of every atom."""
    known = set(ELEMENTS)
    return np.array(
        [
            {e.symbol for e in s.composition} <= known
            and all(len(n) for n in s.get_all_neighbors(MEGNET_GRAPHS.cutoff))
            for s in structures
        ]
    )


def mae(predicted: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(predicted - y).mean())


def speed(args: argparse.Namespace) -> None:
    df = load_mp_formation_energy(sample=args.n, random_state=0)
    df = df[usable(df.structure)]
    y = df.e_form.to_numpy()[:, None]
    order = np.random.default_rng(0).permutation(len(df))
    n_batches = min(args.batches, len(df) // args.batch_size)
    chosen = [order[i * args.batch_size : (i + 1) * args.batch_size] for i in range(n_batches)]
    rows = []
    for name, (network, builder, _, _) in MODELS.items():
        if "cache" in builder.get_params():  # time the build, not the cache
            builder = clone(builder).set_params(cache=False)
        start = time.perf_counter()
        graphs = builder.transform(df.structure)
        build_rate = len(graphs) / (time.perf_counter() - start)
        dataset = CrystalGraphDataset(graphs, y)
        batches = [dataset.collate(list(c)) for c in chosen]
        torch.manual_seed(0)
        module = network(graphs.atom_features.n_features, 1, graphs.cutoff)
        rows.append(
            {
                "model": name,
                "parameters": sum(p.numel() for p in module.parameters()),
                "graphs": graphs.neighbor_rule,
                "bonds per atom": graphs.n_edges.sum() / graphs.n_atoms.sum(),
                "graphs built/s": build_rate,
                **time_network(module, batches, args.device),
            }
        )
        print(rows[-1], flush=True)
    write_section(
        "seed_models_speed",
        "GATGNN, MEGNet, ElemNet: cost",
        f"`python benchmarks/seed_models.py speed` on {len(df)} random MP crystals, batch "
        f"{args.batch_size}, {n_batches - 1} timed batches; {machine(args.device)}. "
        "ElemNet's graphs are compositions (no neighbour search); MEGNet's are every atom "
        "within 5 Å.\n\n" + markdown_table(rows),
    )


def recipe_arms(name: str) -> tuple:
    """(label, graph builder, regressor, {arm: parameters}) of one model for ``recipes``."""
    if name == "ALIGNN":
        published = {**recipe("alignn-authors"), "early_stopping": True}  # best epoch kept
        return (
            "ALIGNN 2+2, 64",
            ALIGNNRegressor().default_graph_builder(),
            functools.partial(ALIGNNRegressor, **ALIGNN_CPU),
            {"shared (skcrystal)": {}, "alignn-authors": published},
        )
    key = next(key for key in MODELS if key.split()[0] == name)
    _, builder, regressor, authors = MODELS[key]
    return key, builder, regressor, {"shared (skcrystal)": {}, authors: recipe(authors)}


def recipes(args: argparse.Namespace) -> None:
    df = load_mp_formation_energy(sample=3000, random_state=0)
    df = df[usable(df.structure)].iloc[:2500]
    y = df.e_form.to_numpy()
    train, valid = slice(0, 2000), slice(2000, 2500)
    if "ALIGNN" in args.models and args.device == "cpu":
        keep_freed_memory()
    rows = []
    for name in args.models:
        label, builder, regressor, arms = recipe_arms(name)
        graphs = builder.transform(df.structure)
        for arm, params in arms.items():
            params = {**params, "max_epochs": args.epochs, "n_iter_no_change": args.epochs}
            run = f"seed-models-recipes-{name}-{arm.split()[0]}-{args.epochs}ep"
            reg = regressor(
                **params, random_state=0, device=args.device, checkpoint=checkpoint_file(run)
            )
            reg.fit(graphs[train], y[train], validation_data=(graphs[valid], y[valid]))
            rows.append(
                {
                    "model": label,
                    "recipe": arm,
                    "valid MAE (eV/atom)": mae(reg.predict(graphs[valid]), y[valid]),
                    "best epoch": reg.best_epoch_,
                    "minutes": training_seconds(reg) / 60,
                }
            )
            print(rows[-1], flush=True)
    alignn = [row for row in rows if row["model"].startswith("ALIGNN")]
    others = [row for row in rows if not row["model"].startswith("ALIGNN")]
    common = (
        "MP formation energy, 2,000 training and 500 validation crystals (a seed-0 sample "
        f"every model can take), {args.epochs} epochs for every arm"
    )
    if others:
        write_section(
            "seed_models_recipes",
            "GATGNN, MEGNet, ElemNet: recipes on validation",
            f"`python benchmarks/seed_models.py recipes --epochs {args.epochs}`: {common} "
            "(the authors' recipes name more: 200 for GATGNN, 1,000 for MEGNet, up to 4,000 "
            "for ElemNet; their step decays do not come this early), the best validation "
            f"epoch kept; {machine(args.device)}.\n\n" + markdown_table(others),
        )
    if alignn:
        write_section(
            "alignn_recipes",
            "ALIGNN: recipes on validation",
            f"`python benchmarks/seed_models.py recipes --epochs {args.epochs} --models "
            f"ALIGNN`: {common}, ALIGNN with 2 ALIGNN and 2 GCN layers of 64 on its "
            '"shell" graphs; the published recipe (AdamW, one-cycle to 1e-3 per batch, '
            "weight decay 1e-5) against the shared one (AdamW, cosine from 3e-3, no weight "
            "decay), both with batch 64 and the best validation epoch kept; "
            f"{machine(args.device)}.\n\n" + markdown_table(alignn),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("speed")
    timing.add_argument("--n", type=int, default=512)
    timing.add_argument("--batches", type=int, default=6)
    timing.add_argument("--batch-size", type=int, default=64)
    accuracy = commands.add_parser("recipes")
    accuracy.add_argument("--epochs", type=int, default=30)
    accuracy.add_argument(
        "--models",
        nargs="*",
        default=["GATGNN", "MEGNet", "ElemNet"],
        choices=["CGCNN", "GATGNN", "MEGNet", "ElemNet", "ALIGNN"],
    )
    for command in (timing, accuracy):
        command.add_argument("--device", default="cpu")
        command.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"speed": speed, "recipes": recipes}[args.command](args)


if __name__ == "__main__":
    main()
