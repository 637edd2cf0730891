"""Distillation teachers: what their embeddings know (probes), and what distilling them gives.

``probe``: for each teacher and dataset, :func:`skcrystal.teachers.probe_teacher` with
5 shuffled folds (seed 0) on every crystal of the dataset (``--max-crystals`` caps it, a
seed-0 sample): ridge and gradient boosting on the mean node embedding, against the
teacher's untrained twin and the mean predictor. Writes the ``teachers_probe`` section of
docs/benchmarks.md.

``distill``: for each dataset, training fraction and seed, a seeded permutation of the
dataset gives ``fraction`` training crystals, 10 % validation crystals and the rest as
test. ``CGCNNRegressor()`` (plain) and ``DistilledRegressor(teacher=T)`` for each teacher
arm ``T[:transfer][@alpha]`` (``transfer`` "nodes" unless named, ``alpha`` 0.5 unless
given: ``chgnet:features@0`` is CHGNet's atom vectors as input features alone) train at
their defaults, and ``finetune:MODEL`` continues training a saved model (``FINE_TUNING``),
all with
``validation_data`` = the validation crystals (early stopping and the best epoch chosen
there); test MAE is only reported. The same seeds and
rows for every arm. Results go to ``benchmarks/results/teachers.jsonl`` (runs already
there are skipped), the table to the ``teachers_distill`` section.

    python benchmarks/teachers.py probe --teachers crysgnn-mp chgnet
    python benchmarks/teachers.py distill --datasets elastic-logG --fractions 0.2 --seeds 0
    python benchmarks/teachers.py distill --teachers chgnet chgnet@0.9   # alpha 0.5 and 0.9
    python benchmarks/teachers.py distill --teachers chgnet:features@0 chgnet:nodes+crystal
    python benchmarks/teachers.py distill --datasets mp-hse-gap \
        --teachers finetune:crysxpp-mp-band-gap      # the bundled PBE-gap model, on HSE
    python benchmarks/teachers.py distill --datasets mp-gap --fractions 0.05 --max-test 5000
    python benchmarks/teachers.py report

Records of arms ``chgnet-l2:...`` in the results file are runs from before 2026-12-06,
when the CHGNet teacher gave L2-normalised vectors (its features arms are now unnormalised).
Records of arms ``crysgnn-mp-0.1...`` are runs of the bundled teacher of skcrystal 0.1
(sha256 ``d5fb3a33...``, in the git history), replaced on 2026-12-07 by the teacher of
benchmarks/teacher_recipe.py; ``crysgnn-mp`` arms since then are the new one (run as
``out/crysgnn-pool.safetensors`` before it was bundled).

Datasets are those of benchmarks/recipes.py (the 60/20/20 split there is not used:
the rows are pooled).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from recipes import DATASETS, UNITS
from report import machine, markdown_table, write_section

from skcrystal import CGCNNRegressor, DistilledRegressor
from skcrystal.hub import load_model
from skcrystal.teachers import get_teacher, probe_teacher

RESULTS = Path(__file__).parent / "results" / "teachers.jsonl"

#: How a ``finetune:MODEL`` arm continues training a saved model (``warm_start``: its
#: weights and target scaling kept) on the training crystals: the shared recipe's epochs
#: and patience at a third of its learning rate, best validation epoch restored.
FINE_TUNING = dict(
    warm_start=True, lr=1e-3, lr_schedule="cosine", max_epochs="auto", n_iter_no_change="auto"
)


def pooled(name: str) -> tuple[list, np.ndarray]:
    """Every crystal and target of a dataset of benchmarks/recipes.py."""
    parts = DATASETS[name]()
    structures = [s for part in ("train", "valid", "test") for s in parts[part][0]]
    y = np.concatenate([parts[part][1] for part in ("train", "valid", "test")])
    return structures, y


def probe(args) -> None:
    rows = []
    for dataset in args.datasets:
        structures, y = pooled(dataset)
        if len(y) > args.max_crystals:
            keep = np.sort(np.random.default_rng(0).permutation(len(y))[: args.max_crystals])
            structures, y = [structures[i] for i in keep], y[keep]
        for teacher in args.teachers:
            start = time.perf_counter()
            table = probe_teacher(teacher, structures, y, cv=5, random_state=0)
            minutes = (time.perf_counter() - start) / 60
            for row in table.itertuples():
                if row.embedding == "none" and teacher != args.teachers[0]:
                    continue  # the mean predictor is the same for every teacher
                rows.append(
                    {
                        "dataset": dataset,
                        "crystals": len(y),
                        "teacher": teacher if row.embedding != "none" else "",
                        "embedding": row.embedding,
                        "probe": row.probe,
                        "MAE (5-fold)": row.mae,
                        "± (folds)": row.mae_std,
                        "unit": UNITS[dataset],
                        "minutes": minutes if row.embedding == "teacher" else "",
                    }
                )
            print(table, flush=True)
    body = (
        f"`python benchmarks/teachers.py probe --teachers {' '.join(args.teachers)} "
        f"--datasets {' '.join(args.datasets)}`; {machine()}.\n\n"
        "Each crystal's embedding is the mean of the teacher's node embeddings; ridge "
        "(penalty chosen inside each training fold) and histogram gradient boosting are "
        'fitted on it in 5 shuffled folds (seed 0). "untrained twin": the same network '
        "with fresh weights (seed 0): what the architecture and input features alone give. "
        "Minutes: embedding and probing, per teacher and dataset.\n\n" + markdown_table(rows)
    )
    write_section("teachers_probe", "Teachers: what their embeddings know", body)


class CachedTeacher:
    """A teacher whose atom vectors of each crystal object are computed once per run.

    Every arm, fraction and seed of a dataset reads the same Structure objects, so a
    structure teacher (CHGNet) embeds each crystal once instead of once per fit and per
    prediction; the vectors are those the teacher gives (it is deterministic in eval
    mode). Graph-only calls (``crystals=None``) go to the teacher itself.
    """

    def __init__(self, teacher) -> None:
        self.teacher = teacher
        self.name = teacher.name
        self.graph_builder = teacher.graph_builder
        self._rows: dict[int, np.ndarray] = {}

    def node_embeddings(self, crystals, graphs) -> np.ndarray:
        if crystals is None:
            return self.teacher.node_embeddings(crystals, graphs)
        items = list(crystals)
        missing = [i for i, item in enumerate(items) if id(item) not in self._rows]
        if missing:
            nodes = self.teacher.node_embeddings([items[i] for i in missing], graphs[missing])
            ptr = np.concatenate([[0], np.cumsum(graphs.n_atoms[missing])])
            for k, i in enumerate(missing):
                self._rows[id(items[i])] = nodes[ptr[k] : ptr[k + 1]]
        return np.concatenate([self._rows[id(item)] for item in items])

    def untrained(self, random_state: int = 0):
        return self.teacher.untrained(random_state)


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = round(fraction * n), round(0.1 * n)
    return order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]


def done_runs() -> set[tuple]:
    if not RESULTS.exists():
        return set()
    runs = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return {(r["dataset"], r["fraction"], r["seed"], r["arm"]) for r in runs}


def distill(args) -> None:
    done = done_runs()
    for dataset in args.datasets:
        structures, y = pooled(dataset)  # the same objects for every arm: cached vectors
        teachers = {}
        for fraction in args.fractions:
            for seed in args.seeds:
                train, valid, test = split(len(y), fraction, seed)
                test = test[: args.max_test]  # a random subset: the split is a permutation
                X_train, X_valid, X_test = (
                    [structures[i] for i in rows] for rows in (train, valid, test)
                )
                for arm in ["plain", *args.teachers]:
                    if (dataset, fraction, seed, arm) in done:
                        continue
                    params = dict(random_state=seed, device=args.device)
                    if arm == "plain":
                        reg = CGCNNRegressor(**params)
                    elif arm.startswith("finetune:"):  # a saved model trained further
                        reg = load_model(arm.partition(":")[2], device=args.device)
                        reg.set_params(**FINE_TUNING, random_state=seed)
                    else:  # "teacher[:transfer][@alpha]"
                        spec, _, alpha = arm.partition("@")
                        teacher, _, transfer = spec.partition(":")
                        if teacher not in teachers:
                            teachers[teacher] = CachedTeacher(get_teacher(teacher))
                        reg = DistilledRegressor(
                            teacher=teachers[teacher],
                            alpha=float(alpha or 0.5),
                            transfer=transfer or "nodes",
                            **params,
                        )
                    start = time.perf_counter()
                    reg.fit(X_train, y[train], validation_data=(X_valid, y[valid]))
                    minutes = (time.perf_counter() - start) / 60
                    mae = float(np.abs(reg.predict(X_test) - y[test]).mean())
                    record = {
                        "dataset": dataset,
                        "fraction": fraction,
                        "seed": seed,
                        "arm": arm,
                        "n_train": len(train),
                        "n_test": len(test),
                        "test_mae": mae,
                        "valid_mae": float(np.min(reg.history_[:, "valid_mae"])),
                        "epochs": len(reg.history_),
                        "minutes": minutes,
                        "threads": torch.get_num_threads(),
                    }
                    print(record, flush=True)
                    RESULTS.parent.mkdir(exist_ok=True)
                    with RESULTS.open("a") as out:
                        out.write(json.dumps(record) + "\n")
    report(args)


def report(args) -> None:
    if not RESULTS.exists():
        raise SystemExit(f"no runs in {RESULTS}")
    runs = pd.DataFrame([json.loads(x) for x in RESULTS.read_text().splitlines() if x.strip()])
    rows = []
    for (dataset, fraction), cell in runs.groupby(["dataset", "fraction"], sort=False):
        plain = cell[cell.arm == "plain"].set_index("seed").test_mae
        for arm, group in cell.groupby("arm", sort=False):
            by_seed = group.set_index("seed").test_mae
            paired = by_seed.index.intersection(plain.index)
            gain = 1 - by_seed[paired].mean() / plain[paired].mean() if len(paired) else None
            rows.append(
                {
                    "dataset": dataset,
                    "train fraction": fraction,
                    "n train": int(group.n_train.iloc[0]),
                    "arm": arm,
                    "seeds": ", ".join(map(str, sorted(by_seed.index))),
                    "test MAE": by_seed.mean(),
                    "unit": UNITS[dataset],
                    "valid MAE": group.valid_mae.mean(),
                    "gain vs plain (same seeds)": "" if arm == "plain" else f"{gain:+.1%}",
                    "epochs": group.epochs.mean(),
                    "fit min": group.minutes.mean(),
                }
            )
    body = (
        "`python benchmarks/teachers.py distill ...` (runs in "
        "`benchmarks/results/teachers.jsonl`, commands in the script's docstring); "
        f"{machine()}.\n\nPlain `CGCNNRegressor()` against `DistilledRegressor(teacher=...)` "
        '(CGCNN student; arm `teacher[:transfer][@alpha]`, transfer "nodes" and alpha 0.5 '
        "unless named), both at their defaults; `finetune:MODEL`: a saved model trained "
        "further on the training crystals (`FINE_TUNING` in the script); per seed a "
        "permutation gives the training fraction, 10 % validation (early stopping, best "
        "epoch) and the rest as test. "
        "Gain: 1 - distilled / plain test MAE, averaged over the same seeds. Arms "
        "`chgnet-l2:...` are runs of the CHGNet teacher as it was before 2026-12-06, when it "
        "gave L2-normalised atom vectors (they cannot be rerun by that name); `chgnet:...` "
        "features arms since then get CHGNet's vectors unnormalised. Arms `crysgnn-mp-0.1` "
        "are runs of skcrystal 0.1's bundled teacher, replaced on 2026-12-07 (`crysgnn-mp` "
        "arms since then are the new one). Runs from "
        "2026-12-06 on reuse each crystal's teacher vectors within a run (`CachedTeacher`), "
        "so their fit minutes leave out most of the teacher's time.\n\n" + markdown_table(rows)
    )
    write_section("teachers_distill", "Teachers: distillation against plain training", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["probe", "distill", "report"])
    parser.add_argument("--teachers", nargs="+", default=["crysgnn-mp", "chgnet"])
    parser.add_argument(
        "--datasets", nargs="+", default=["elastic-logG", "elastic-logK", "dielectric-n"]
    )
    parser.add_argument("--max-crystals", type=int, default=5000)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--max-test",
        type=int,
        default=None,
        help="test on the first N test crystals of each split only (a random subset)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"probe": probe, "distill": distill, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
