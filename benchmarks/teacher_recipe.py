"""Pretrain a CrysGNN teacher on every unlabelled structure here, its recipe chosen by a probe.

The pool: the structures of every dataset in the data home (its properties never read
for training): the 36,737 MP crystals of CGCNN/CrysXPP, the 3,191 of the elasticity set,
the matminer legacy sets (dielectric, piezoelectric, FLLA), Carbon-24's validation and
test parts, the JARVIS sample and OBELiX's 321 CIFs (disordered ones included: they
train the node-level tasks), less every structure that repeats an earlier one
(:func:`skcrystal.dedup.find_duplicates`). A seed-0 permutation holds 5 % out; its MP
crystals are the **probe crystals**.

Each arm ``lr=<Adam lr>,graph=<0|1>`` (``graph=0``: the two graph-level losses, space
group and contrastive, weighted 0 and the node-level ones 0.5 each) pretrains
``CrysGNNPretrainer`` on the first ``--subset`` training crystals of the pool (the same
for every arm) for ``--epochs`` epochs. After every epoch a ridge probe
(:func:`probe_score`) predicts MP formation energy and Fermi energy from the probe
crystals' mean node embeddings in 5 folds. Neither is a target of the distillation table
(benchmarks/teachers.py), so the recipe and the epoch are chosen on validation crystals
and targets only. Both come from the same MP snapshot as the structures
(:func:`skcrystal.datasets.load_mp_properties`). The epoch with the lowest probe error
(the sum of the two MAEs relative to the mean predictor) is kept. ``--final N`` then
pretrains the arm with the best kept score on all training crystals for N epochs, its
best-probe epoch kept, and ``--save`` writes it.

Results go to ``benchmarks/results/teacher_recipe.jsonl``, the table to the
``teacher_recipe`` section of docs/benchmarks.md; ``--save`` writes the kept teacher.

    python benchmarks/teacher_recipe.py --subset 8000 --epochs 5 \\
        --arms lr=0.003,graph=1 lr=0.03,graph=1 lr=0.003,graph=0 lr=0.03,graph=0 \\
        --final 10 --save crysgnn-pool.safetensors
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from recipes import carbon24
from report import machine, markdown_table, write_section
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback

from skcrystal import CrysGNNPretrainer, CrystalGraphTransformer
from skcrystal.datasets import (
    get_data_home,
    load_cgcnn_folder,
    load_matminer_legacy,
    load_mp_elasticity,
    load_mp_properties,
    load_obelix,
)
from skcrystal.dedup import find_duplicates
from skcrystal.hub import save_model
from skcrystal.teachers import RIDGE_PENALTIES

RESULTS = Path(__file__).parent / "results" / "teacher_recipe.jsonl"
PROBE_TARGETS = ("e_form", "efermi")


def unlabelled_pool(jobs: int) -> pd.DataFrame:
    """Every structure of the data home: columns ``structure``, ``source`` and, for the MP
    crystals, the probe targets (NaN elsewhere); duplicates of an earlier row removed."""
    mp = load_mp_properties(n_jobs=jobs)
    parts = [mp.assign(source="mp")[["structure", "source", *PROBE_TARGETS]]]
    parts.append(load_mp_elasticity(n_jobs=jobs).assign(source="elasticity"))
    for name in ("dielectric_constant", "piezoelectric_tensor", "flla_2015"):
        parts.append(load_matminer_legacy(name).assign(source=name))
    carbon = carbon24()
    parts.append(carbon.assign(source="carbon24_" + carbon.part))
    jarvis = get_data_home() / "jarvis_alignn_sample" / "jarvis_optb88vdw_gap_sample50.tar.xz"
    parts.append(load_cgcnn_folder(jarvis).assign(source="jarvis_sample"))
    parts.append(load_obelix().dropna(subset=["structure"]).assign(source="obelix"))
    pool = pd.concat(
        [part[[c for c in ("structure", "source", *PROBE_TARGETS) if c in part]] for part in parts],
        ignore_index=True,
    )
    duplicates = find_duplicates(pool.structure.tolist())
    return pool.drop(index=pool.index[duplicates]).reset_index(drop=True)


def probe_score(embeddings: np.ndarray, targets: pd.DataFrame) -> dict[str, float]:
    """Ridge (penalty chosen in each training fold) on the embeddings, 5 shuffled folds
    (seed 0): MAE per target and relative to the mean predictor, summed as ``score``."""
    folds = KFold(5, shuffle=True, random_state=0)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_PENALTIES))
    scores, score = {}, 0.0
    for column in targets:
        known = targets[column].notna().to_numpy()
        features, y = embeddings[known], targets[column].to_numpy()[known]
        mae, baseline = (
            -cross_val_score(model, features, y, cv=folds, scoring="neg_mean_absolute_error").mean()
            for model in (ridge, DummyRegressor())
        )
        scores[column] = float(mae)
        score += mae / baseline
    return {**scores, "score": float(score)}


class ProbeEachEpoch(Callback):
    """After each epoch, probe the embeddings of held-out crystals; keep the best weights."""

    def __init__(self, graphs, targets: pd.DataFrame) -> None:
        self.graphs = graphs
        self.targets = targets

    def initialize(self):
        self.best_score_, self.best_epoch_, self.best_state_ = np.inf, 0, None
        return self

    def on_train_begin(self, net, **kwargs) -> None:
        """The probe on the initial weights (seed 0): the untrained network's score."""
        self.untrained_ = probe_score(net.transform(self.graphs), self.targets)

    def on_epoch_end(self, net, **kwargs) -> None:
        scores = probe_score(net.transform(self.graphs), self.targets)
        for name, value in scores.items():
            net.history.record(f"probe_{name}", value)
        if scores["score"] < self.best_score_:
            self.best_score_, self.best_epoch_ = scores["score"], len(net.history)
            self.best_state_ = copy.deepcopy(net.module_.state_dict())


def parse_arm(arm: str) -> dict:
    settings = dict(item.split("=") for item in arm.split(","))
    return {"lr": float(settings["lr"]), "graph": bool(int(settings["graph"]))}


def pretrainer(arm: dict, epochs: int, batch_size: int, probe: ProbeEachEpoch):
    graph_weight, node_weight = (0.25, 0.25) if arm["graph"] else (0.0, 0.5)
    return CrysGNNPretrainer(
        max_epochs=epochs,
        n_iter_no_change=epochs,
        restore_best=False,
        batch_size=batch_size,
        lr=arm["lr"],
        random_state=0,
        verbose=1,
        callbacks=[("probe", probe)],
        criterion__connectivity_weight=node_weight,
        criterion__feature_weight=node_weight,
        criterion__contrastive_weight=graph_weight,
        criterion__space_group_weight=graph_weight,
    )


def run_arm(arm: str, epochs: int, data: dict, args) -> tuple[dict, CrysGNNPretrainer]:
    """Pretrain one arm on ``data["train"]``, probing each epoch; the record and the model
    with the weights of its best-probe epoch."""
    probe = ProbeEachEpoch(data["probe_graphs"], data["probe_targets"])
    model = pretrainer(parse_arm(arm), epochs, args.batch_size, probe)
    start = time.perf_counter()
    model.fit(data["graphs"][data["train"]], validation_data=data["graphs"][data["held_out"]])
    seconds = time.perf_counter() - start
    model.module_.load_state_dict(probe.best_state_)
    history = model.history
    record = {
        "arm": arm,
        "pool": data["pool"],
        "n_train": len(data["train"]),
        "n_held_out": len(data["held_out"]),
        "n_probe": len(data["probe_targets"]),
        "epochs": len(history),
        "kept_epoch": probe.best_epoch_,
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
        "valid_loss": history[:, "valid_loss"],
        **{f"probe_{k}": history[:, f"probe_{k}"] for k in (*PROBE_TARGETS, "score")},
        "untrained": probe.untrained_,
    }
    with RESULTS.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)
    return record, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=["lr=0.003,graph=1", "lr=0.03,graph=1"])
    parser.add_argument("--subset", type=int, default=8000, help="training crystals per arm")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per arm")
    parser.add_argument(
        "--final", type=int, default=0, help="then this many epochs of the best arm on all"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="processes for parsing")
    parser.add_argument("--save", help="write the final teacher to this .safetensors path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    pool = unlabelled_pool(args.jobs)
    graphs = CrystalGraphTransformer(symmetry=True, n_jobs=args.jobs).transform(pool.structure)
    print(
        f"pool of {len(pool)} ({pool.source.value_counts().to_dict()}) in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    order = np.random.default_rng(0).permutation(len(pool))
    held_out, train = order[: len(pool) // 20], order[len(pool) // 20 :]
    probe_rows = held_out[(pool.source.to_numpy()[held_out] == "mp")]
    data = {
        "pool": len(pool),
        "graphs": graphs,
        "held_out": held_out,
        "probe_graphs": graphs[probe_rows],
        "probe_targets": pool.loc[probe_rows, list(PROBE_TARGETS)].reset_index(drop=True),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    scores = {}
    for arm in args.arms:
        record, _ = run_arm(
            arm, args.epochs, {**data, "train": np.sort(train[: args.subset])}, args
        )
        scores[arm] = min(record["probe_score"])
    if args.final:
        arm = min(scores, key=scores.get)
        record, model = run_arm(arm, args.final, {**data, "train": np.sort(train)}, args)
        if args.save:
            save_model(
                model,
                args.save,
                data=f"{len(train)} unlabelled structures of every dataset in the data home "
                f"(deduplicated pool of {len(pool)}), {len(held_out)} held out (seed 0)",
                command="python benchmarks/teacher_recipe.py " + " ".join(sys.argv[1:]),
                recipe=f"{arm}, chosen by the probe among {', '.join(args.arms)}",
                epochs=f"{record['epochs']}, kept {record['kept_epoch']} (best probe)",
                probe_score=min(record["probe_score"]),
            )
    report()


def report() -> None:
    rows = []
    for line in RESULTS.read_text().splitlines():
        r = json.loads(line)
        best = r["kept_epoch"] - 1
        rows.append(
            {
                "arm": r["arm"],
                "crystals (train / probe)": f"{r['n_train']} / {r['n_probe']}",
                "epochs (kept)": f"{r['epochs']} ({r['kept_epoch']})",
                "e_form MAE (untrained)": f"{r['probe_e_form'][best]:.3f} "
                f"({r['untrained']['e_form']:.3f})",
                "E_Fermi MAE (untrained)": f"{r['probe_efermi'][best]:.3f} "
                f"({r['untrained']['efermi']:.3f})",
                "score (untrained)": f"{r['probe_score'][best]:.3f} "
                f"({r['untrained']['score']:.3f})",
                "s/epoch": round(r["seconds"] / r["epochs"]),
            }
        )
    write_section(
        "teacher_recipe",
        "Teachers: choosing the CrysGNN pretraining recipe by a probe",
        f"`python benchmarks/teacher_recipe.py` (see its docstring); {machine()}.\n\n"
        "Ridge probe, 5 folds, on the mean node embeddings of the held-out MP crystals of "
        "the pool: MAE of formation energy (eV/atom) and Fermi energy (eV) at the kept "
        "epoch; score = the sum of the two MAEs relative to the mean predictor (lower is "
        "better; the untrained network's in brackets).\n\n" + markdown_table(rows),
    )


if __name__ == "__main__":
    main()
