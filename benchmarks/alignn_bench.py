"""ALIGNN: cost (graphs, line graphs, throughput, memory) and accuracy on the MP split.

``speed`` (section ``alignn_speed``): on ``--n`` random MP crystals (seed 0), the graphs of
both neighbour rules (build rate, bonds per atom, bytes), and for ALIGNN at the published
size (4+4 layers, width 256), at 2+2 and at a CPU size (2+2, width 64), with CGCNN's
default as the anchor: training and prediction throughput in crystal graphs per second
over batches of 64 (forward, MSE, backward, AdamW step; prediction in eval mode without
gradients), bond pairs per batch, and the memory of a training batch: the tensors
autograd keeps for the backward pass (summed through ``saved_tensors_hooks``, exact on
any device) and, on CUDA, ``torch.cuda.max_memory_allocated``. ``--all-graphs`` also
builds the graphs of all 36,737 crystals with bond vectors and reports their memory.

On the CPU, freed memory is kept for reuse (:func:`skcrystal.nn.allocation.keep_freed_memory`)
unless ``--plain-malloc``; the speed table has one row without it, measured first.

``--reference`` adds the anchor of the reference package at each size: ``alignn``
2026.8.11's pure-PyTorch ``ALIGNNAtomWisePure`` (its DGL models cannot be installed beside
torch 2.13), as a property model (no forces, no penalties), fed the same bonds, bond
vectors and per-batch line graphs (:class:`ReferenceALIGNN`). It normalises with layer
norm where the published ALIGNN (and skcrystal's) uses batch norm; the layers are
otherwise the same. Install it without its dependencies, which skcrystal already has or
the model does not import: ``pip install --no-deps alignn==2026.8.11 pydantic-settings``.

``accuracy`` (section ``alignn_<target>_<tag>``): the fixed 20/10/70 split of
``benchmarks/accuracy_mp.py`` (seed 0), the 10 % validation crystals choose the epoch.
A run gets ``--budget`` minutes: one timed epoch on a tenth of the training crystals
sizes ``max_epochs`` so that the schedule ends within the budget. ``--recipe default``
trains with ``ALIGNNRegressor``'s defaults (the library's shared recipe), ``--recipe
published`` with the ALIGNN paper's (``recipe("alignn-authors")``, keeping the best
validation epoch); ``--lr`` overrides the peak rate of either. ``--distil`` trains
``DistilledRegressor(student="alignn")`` with the same network and recipe. A run
of fixed ``--epochs`` keeps its training state in ``benchmarks/out/checkpoints/`` after
every epoch, and the same command continues it after an interruption (a CPU run of many
epochs spans several sessions); its fit time sums the epochs of all the runs.

    python benchmarks/alignn_bench.py speed --n 512 --all-graphs --reference
    python benchmarks/alignn_bench.py accuracy --target e_form --layers 2 2 --hidden 64 --budget 25
    python benchmarks/alignn_bench.py accuracy --target e_form --device cuda --epochs 300
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time

import numpy as np
import torch
from report import checkpoint_file, machine, markdown_table, training_seconds, write_section

from skcrystal import ALIGNNRegressor, CrystalGraphTransformer, DistilledRegressor
from skcrystal.datasets import (
    benchmark_split,
    load_mp_band_gap,
    load_mp_formation_energy,
)
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.nn.alignn import ALIGNN
from skcrystal.nn.allocation import keep_freed_memory
from skcrystal.nn.cgcnn import CGCNN
from skcrystal.nn.line_graph import bond_pairs
from skcrystal.recipes import recipe

SIZES = {
    "ALIGNN 4+4, 256 (published)": dict(alignn_layers=4, gcn_layers=4, hidden_features=256),
    "ALIGNN 2+2, 256": dict(alignn_layers=2, gcn_layers=2, hidden_features=256),
    "ALIGNN 2+2, 64": dict(alignn_layers=2, gcn_layers=2, hidden_features=64),
}
# Today's CGCNN on the same split (docs/benchmarks.md, accuracy_e_form_cgcnn / gap_pbe).
CGCNN_TEST_MAE = {"e_form": 0.07345, "gap_pbe": 0.4083}


class ReferenceALIGNN(torch.nn.Module):
    """The reference package's pure-PyTorch ALIGNN on skcrystal's batches.

    Edges run ``source -> target`` (skcrystal's ``neighbor -> center``), so the reference's
    bond vector ``r`` (from its source to its target) is minus skcrystal's; the line graph
    is skcrystal's :func:`~skcrystal.nn.line_graph.bond_pairs`, built in each forward pass
    as skcrystal's ALIGNN builds it.
    """

    def __init__(self, alignn_layers: int, gcn_layers: int, hidden_features: int) -> None:
        super().__init__()
        from alignn.models.alignn_atomwise_pure import (
            ALIGNNAtomWisePure,
            ALIGNNAtomWisePureConfig,
        )

        config = ALIGNNAtomWisePureConfig(
            name="alignn_atomwise_pure",
            alignn_layers=alignn_layers,
            gcn_layers=gcn_layers,
            hidden_features=hidden_features,
            atom_input_features=92,
            calculate_gradient=False,
            gradwise_weight=0.0,
            energy_mult_natoms=False,
            use_penalty=False,
            use_zbl=False,
        )
        self.network = ALIGNNAtomWisePure(config)

    def forward(self, batch) -> torch.Tensor:
        from alignn.torch_graph_builder import TorchGraph

        n_atoms = len(batch.atom_features)
        first, second = bond_pairs(batch.neighbor, batch.center, n_atoms)
        graph = TorchGraph(  # bonds per crystal are read for stresses only: not given
            num_nodes=n_atoms,
            src=batch.neighbor,
            dst=batch.center,
            ndata={"atom_features": batch.atom_features},
            edata={"r": -batch.vector},
            batch_num_nodes=batch.n_atoms,
        )
        line_graph = TorchGraph(num_nodes=len(batch.center), src=first, dst=second)
        return self.network((graph, line_graph, None))["out"][:, None]


def saved_bytes(step) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``step()`` runs
    (each storage counted once, however many operations save it)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(storages.values())


def time_network(module, batches, device: str) -> dict:
    """Training and prediction graphs/s of ``module`` over the batches, and batch memory."""
    module.to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    inputs = [(b.to(device), y.to(device)) for b, y in batches]

    def train_step(batch, y):
        loss = torch.nn.functional.mse_loss(module(batch), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    warmup, *timed = inputs  # the first batch warms up; the others are timed, each once
    module.train()
    train_step(*warmup)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    n_graphs = sum(len(b) for b, _ in timed)
    sync()
    start = time.perf_counter()
    for batch, y in timed:
        train_step(batch, y)
    sync()
    train_rate = n_graphs / (time.perf_counter() - start)
    peak_cuda = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    memory = max(saved_bytes(lambda b=b, y=y: train_step(b, y)) for b, y in timed[:2])
    module.eval()
    with torch.no_grad():
        module(warmup[0])
        sync()
        start = time.perf_counter()
        for batch, _ in timed:
            module(batch)
        sync()
    predict_rate = n_graphs / (time.perf_counter() - start)
    return {
        "train graphs/s": train_rate,
        "predict graphs/s": predict_rate,
        "saved for backward per batch (MB)": memory / 2**20,
        "CUDA peak (MB)": "—" if peak_cuda is None else round(peak_cuda / 2**20),
    }


def speed(args: argparse.Namespace) -> None:
    df = load_mp_formation_energy(sample=args.n, random_state=0)
    y = df.e_form.to_numpy()[:, None]
    graph_rows, graphs = [], {}
    for rule in ("nearest", "shell"):
        builder = CrystalGraphTransformer(neighbor_rule=rule, cache=False)
        start = time.perf_counter()
        graphs[rule] = builder.transform(df.structure)
        elapsed = time.perf_counter() - start
        g = graphs[rule]
        graph_rows.append(
            {
                "neighbor_rule": rule,
                "structures/s": len(g) / elapsed,
                "bonds per atom": g.n_edges.sum() / g.n_atoms.sum(),
                "bytes per crystal": g.nbytes / len(g),
            }
        )
    shell = graphs["shell"]
    n_batches = min(args.batches, len(shell) // args.batch_size)
    order = np.random.default_rng(0).permutation(len(shell))
    chosen = [order[i * args.batch_size : (i + 1) * args.batch_size] for i in range(n_batches)]
    dataset = {rule: CrystalGraphDataset(g, y) for rule, g in graphs.items()}
    batches = {rule: [dataset[rule].collate(list(c)) for c in chosen] for rule in graphs}
    pairs = [
        len(bond_pairs(b.neighbor, b.center, len(b.atom_features))[0]) for b, _ in batches["shell"]
    ]
    rows = []
    networks = {}
    if not args.plain_malloc:  # first, before keep_freed_memory(): what it changes
        networks["ALIGNN 2+2, 64, plain malloc"] = (
            "shell",
            lambda: ALIGNN(92, 1, 8.0, **SIZES["ALIGNN 2+2, 64"]),
        )
    networks["CGCNN default (anchor)"] = ("nearest", lambda: CGCNN(92, 1, 8.0))
    for name, size in SIZES.items():
        networks[name] = ("shell", lambda size=size: ALIGNN(92, 1, 8.0, **size))
        if args.reference:
            reference = name.replace("ALIGNN", "reference alignn_atomwise_pure")
            networks[reference] = ("shell", lambda size=size: ReferenceALIGNN(**size))
    for name, (rule, build) in networks.items():
        if args.skip_published and "published" in name and not args.device.startswith("cuda"):
            continue
        if not args.plain_malloc and "plain malloc" not in name:
            keep_freed_memory()
        torch.manual_seed(0)
        module = build()
        result = time_network(module, batches[rule], args.device)
        rows.append(
            {
                "network": name,
                "parameters": sum(p.numel() for p in module.parameters()),
                "graphs": rule,
                **result,
            }
        )
        print(rows[-1], flush=True)
    memory = ""
    if args.all_graphs:
        every = load_mp_formation_energy(n_jobs=args.jobs)
        start = time.perf_counter()
        all_graphs = CrystalGraphTransformer(cache=False).transform(every.structure)
        memory = (
            f'\n\nAll {len(all_graphs):,} MP crystals, "nearest" graphs with bond vectors: '
            f"{all_graphs.nbytes / 1e6:.1f} MB ({all_graphs.n_edges.sum():,} edges, built in "
            f"{time.perf_counter() - start:.0f} s on one process)."
        )
    atoms = np.mean([len(b.atom_features) for b, _ in batches["shell"]])
    malloc = "" if args.plain_malloc else ", freed CPU memory kept for reuse"
    bonds = np.mean([len(b.center) for b, _ in batches["shell"]])
    body = (
        f"`python benchmarks/alignn_bench.py {' '.join(sys.argv[1:])}` on {machine(args.device)}, "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB.\n\n"
        f"Graphs of {len(df)} random MP crystals (seed 0):\n\n{markdown_table(graph_rows)}\n\n"
        f"Networks on {n_batches} batches of {args.batch_size} of them (the first warms up, the "
        f"others are timed once each{malloc}; "
        f'a batch has {atoms:.0f} atoms, {bonds:.0f} bonds of the "shell" rule and '
        f"{np.mean(pairs):,.0f} bond pairs on average, at most {max(pairs):,}):\n\n"
        f"{markdown_table(rows)}{memory}"
    )
    write_section(f"alignn_speed_{args.device.split(':')[0]}", "ALIGNN: cost", body)


def describe_recipe(reg) -> str:
    """The optimisation settings of a fitted regressor, in words."""
    schedule = {"onecycle": "one-cycle to", "cosine": "cosine decay from"}.get(
        reg.lr_schedule, f"{reg.lr_schedule} schedule at"
    )
    return (
        f"{reg.optimizer.__name__}, {schedule} lr {reg.lr} per batch, weight decay "
        f"{reg.weight_decay}, batch {reg.batch_size}"
    )


def accuracy(args: argparse.Namespace) -> None:
    load = load_mp_formation_energy if args.target == "e_form" else load_mp_band_gap
    df = load(n_jobs=args.jobs)
    y = df[args.target].to_numpy()
    graphs = CrystalGraphTransformer(neighbor_rule=args.neighbor_rule).transform(df.structure)
    train, valid, test = benchmark_split(len(df), seed=0, train_fraction=0.2)
    size = dict(
        alignn_layers=args.layers[0], gcn_layers=args.layers[1], hidden_features=args.hidden
    )

    tag = f"{'distilled_' if args.distil else ''}{args.layers[0]}{args.layers[1]}_{args.hidden}"
    if args.neighbor_rule != "shell":
        tag += f"_{args.neighbor_rule}"

    training = {}
    if args.recipe == "published":
        training = {**recipe("alignn-authors"), "early_stopping": True}  # best epoch kept
    if args.lr is not None:
        training["lr"] = args.lr

    def model(max_epochs: int, checkpoint=None):
        common = dict(
            training,
            checkpoint=checkpoint,
            max_epochs=max_epochs,
            n_iter_no_change=max_epochs,
            random_state=0,
            device=args.device,
            verbose=1,
        )
        if args.distil:
            return DistilledRegressor(student="alignn", student_params=size, **common)
        return ALIGNNRegressor(**size, **common)

    epochs = args.epochs
    if epochs is None:  # as many as fit the budget
        probe = train[: len(train) // 10]
        start = time.perf_counter()
        model(1).set_params(early_stopping=False).fit(graphs[probe], y[probe])
        per_epoch = (time.perf_counter() - start) * 10 * (1 + 0.4 * len(valid) / len(train))
        epochs = max(1, math.floor(args.budget * 60 / per_epoch))
        print(f"about {per_epoch:.0f} s per epoch: {epochs} epochs", flush=True)
    # a run of fixed epochs keeps its training state, so that a stopped run continues
    checkpoint = None
    if args.epochs is not None:
        lr = "" if args.lr is None else f"-lr{args.lr}"
        checkpoint = checkpoint_file(f"alignn-{args.target}-{tag}-{args.recipe}{lr}-{epochs}ep")
    reg = model(epochs, checkpoint)
    reg.fit(graphs[train], y[train], validation_data=(graphs[valid], y[valid]))
    fit_time = training_seconds(reg)
    start = time.perf_counter()
    predicted = reg.predict(graphs[test])
    predict_time = time.perf_counter() - start
    name = "distilled ALIGNN" if args.distil else "ALIGNN"
    row = {
        "model": f"{name} {args.layers[0]}+{args.layers[1]}, {args.hidden}",
        "graphs": f'"{args.neighbor_rule}"',
        "train / valid / test": f"{len(train)} / {len(valid)} / {len(test)}",
        "epochs (best)": f"{reg.n_epochs_} ({reg.best_epoch_})",
        "test MAE": float(np.abs(predicted - y[test]).mean()),
        "valid MAE (best epoch)": float(np.min(reg.history_[:, "valid_mae"])),
        "CGCNN test MAE (100 epochs)": CGCNN_TEST_MAE[args.target],
        "mean-predictor MAE": float(np.abs(y[test] - y[train].mean()).mean()),
        "fit (s)": round(fit_time),
        "test graphs/s": round(len(test) / predict_time),
    }
    body = (
        f"`python benchmarks/alignn_bench.py {' '.join(sys.argv[1:])}` on {machine(args.device)}."
        f"\n\n{markdown_table([row])}\n\n{describe_recipe(reg)}, {epochs} epochs"
        + (f" (what fits {args.budget} min here)" if args.epochs is None else "")
        + ", seed 0; the validation crystals chose the epoch. "
        + ("Teacher: the bundled crysgnn-mp, alpha 0.5. " if args.distil else "")
    )
    write_section(f"alignn_{args.target}_{tag}", f"ALIGNN: MP {args.target} ({name})", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "accuracy"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="processes for parsing")
    parser.add_argument("--n", type=int, default=512, help="speed: crystals")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=6, help="speed: 1 warm-up, rest timed")
    parser.add_argument("--skip-published", action="store_true", help="speed: not the 4+4 on CPU")
    parser.add_argument("--all-graphs", action="store_true")
    parser.add_argument(
        "--reference", action="store_true", help="speed: also the alignn package's pure model"
    )
    parser.add_argument("--target", choices=["e_form", "gap_pbe"], default="e_form")
    parser.add_argument("--layers", type=int, nargs=2, default=[4, 4])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--recipe", choices=["default", "published"], default="default")
    parser.add_argument("--lr", type=float, help="accuracy: peak lr (default: the recipe's)")
    parser.add_argument("--epochs", type=int, help="accuracy: epochs (default: the budget's)")
    parser.add_argument("--budget", type=float, default=30, help="accuracy: minutes")
    parser.add_argument("--distil", action="store_true")
    parser.add_argument(
        "--neighbor-rule", choices=["shell", "nearest"], default="shell", help="accuracy: graphs"
    )
    parser.add_argument(
        "--plain-malloc", action="store_true", help="without keep_freed_memory() (CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "accuracy" and not args.plain_malloc:
        keep_freed_memory()
    (speed if args.mode == "speed" else accuracy)(args)


if __name__ == "__main__":
    main()
