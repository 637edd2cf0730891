"""Distillation teachers: what their embeddings know (probes), and what distilling them gives.

``probe``: for each teacher and dataset, :func:`skcrystal.teachers.probe_teacher` with
5 shuffled folds (seed 0) on every crystal of each dataset of ``PROBE_DATASETS`` (every
target of the data home; ``MAX_CRYSTALS`` caps it, a seed-0 sample): ridge and gradient
boosting on the mean node embedding, against the teacher's untrained twin and the mean
predictor. A crystal the teacher refuses (CHGNet: a disordered one) is recorded as the
dataset's refusal. Records go to ``benchmarks/results/teachers_probe.jsonl`` (pairs of
dataset and teacher already there are skipped), the table to the ``teachers_probe``
section of docs/benchmarks.md.

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
    python benchmarks/teachers.py probe --datasets mp-hse-gap elastic-poisson
    python benchmarks/teachers.py distill --datasets elastic-logG --fractions 0.2 --seeds 0
    python benchmarks/teachers.py distill --teachers chgnet chgnet@0.9   # alpha 0.5 and 0.9
    python benchmarks/teachers.py distill --teachers chgnet:features@0 chgnet:nodes+crystal
    python benchmarks/teachers.py distill --datasets mp-hse-gap \
        --teachers finetune:crysxpp-mp-band-gap      # the bundled PBE-gap model, on HSE
    python benchmarks/teachers.py distill --datasets mp-gap --fractions 0.05 --max-test 5000
    python benchmarks/teachers.py overhead --teachers crysgnn-mp chgnet \
        crysgnn-mp:features@0 chgnet:features@0
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
import functools
import json
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from recipes import DATASETS, UNITS
from report import machine, markdown_table, write_section

from skcrystal import CGCNNRegressor, CrystalGraphTransformer, DistilledRegressor
from skcrystal.datasets import load_mp_multifidelity_gaps, load_mp_properties
from skcrystal.hub import load_model
from skcrystal.recipes import auto_max_epochs
from skcrystal.teachers import get_teacher, probe_teacher

RESULTS = Path(__file__).parent / "results" / "teachers.jsonl"
PROBE_RESULTS = RESULTS.with_name("teachers_probe.jsonl")

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


@functools.cache
def _mp_sample() -> pd.DataFrame:
    """A seed-0 sample of ``MAX_CRYSTALS`` crystals of :func:`load_mp_properties`, loaded
    once: the four MP targets probe the same Structure objects (vectors cached by object)."""
    return load_mp_properties(sample=MAX_CRYSTALS, random_state=0)


def _mp_properties(column: str):
    """One target of :func:`_mp_sample` (crystals without it left out)."""

    def load() -> tuple[list, np.ndarray]:
        table = _mp_sample().dropna(subset=[column])
        return list(table.structure), table[column].to_numpy(float)

    return load


def _gap(fidelity: str):
    """Every crystal of :func:`load_mp_multifidelity_gaps` with a gap at ``fidelity``."""

    def load() -> tuple[list, np.ndarray]:
        table = load_mp_multifidelity_gaps(fidelity)
        return list(table.structure), table[f"gap_{fidelity.replace('-', '_')}"].to_numpy(float)

    return load


def _ordered(name: str):
    """The crystals of a benchmarks/recipes.py dataset without partial occupancies."""

    def load() -> tuple[list, np.ndarray]:
        structures, y = pooled(name)
        keep = [i for i, structure in enumerate(structures) if structure.is_ordered]
        return [structures[i] for i in keep], y[keep]

    return load


#: Crystals of a probe dataset (a seed-0 sample where there are more).
MAX_CRYSTALS = 5000

#: Every target of the data home a probe can read, as ``name: () -> (structures, y)``.
#: The four MP properties share one sample of crystals (cached vectors); the datasets of
#: benchmarks/recipes.py are pooled over their splits.
PROBE_DATASETS = {
    "mp-e_form": _mp_properties("e_form"),
    "mp-band_gap": _mp_properties("band_gap"),
    "mp-efermi": _mp_properties("efermi"),
    "mp-total_magnetization": _mp_properties("total_magnetization"),
    "mp-gap": lambda: pooled("mp-gap"),
    "mp-hse-gap": _gap("hse"),
    "mp-gllb-sc-gap": _gap("gllb-sc"),
    "mp-scan-gap": _gap("scan"),
    **{
        name: (lambda name=name: pooled(name))
        for name in (
            "elastic-logK",
            "elastic-logG",
            "elastic-poisson",
            "dielectric-n",
            "piezo-eij",
            "flla-eform",
            "carbon24",
            "obelix-log10-sigma",
        )
    },
    "obelix-ordered-log10-sigma": _ordered("obelix-log10-sigma"),
}
PROBE_UNITS = {
    **UNITS,
    "mp-e_form": "eV/atom",
    "mp-band_gap": "eV",
    "mp-efermi": "eV",
    "mp-total_magnetization": "μB/cell",
    "mp-gllb-sc-gap": "eV",
    "mp-scan-gap": "eV",
    "obelix-ordered-log10-sigma": "log10 S/cm",
}


PROBE_COLUMNS = {
    "ridge, teacher": "ridge",
    "ridge, untrained twin": "ridge, twin",
    "gradient boosting, teacher": "boosting",
    "gradient boosting, untrained twin": "boosting, twin",
    "mean of the targets, none": "mean predictor",
}
MP_PROPERTIES = ("mp-e_form", "mp-band_gap", "mp-efermi", "mp-total_magnetization")


def probe_records() -> list[dict]:
    if not PROBE_RESULTS.exists():
        return []
    return [json.loads(line) for line in PROBE_RESULTS.read_text().splitlines() if line.strip()]


def probe(args) -> None:
    done = {(r["dataset"], r["teacher"]) for r in probe_records()}
    cached, previous = {}, None
    for dataset in args.datasets or list(PROBE_DATASETS):
        todo = [t for t in args.teachers if (dataset, t) not in done]
        if not todo:
            continue
        structures, y = PROBE_DATASETS[dataset]()
        if len(y) > MAX_CRYSTALS:
            keep = np.sort(np.random.default_rng(0).permutation(len(y))[:MAX_CRYSTALS])
            structures, y = [structures[i] for i in keep], y[keep]
        # Vectors are cached per Structure object: only the MP properties share objects.
        if not (dataset in MP_PROPERTIES and previous in MP_PROPERTIES):
            cached = {}
        previous = dataset
        for teacher in todo:
            if teacher not in cached:
                cached[teacher] = CachedTeacher(get_teacher(teacher))
            record = {"dataset": dataset, "crystals": len(y), "teacher": teacher}
            start = time.perf_counter()
            try:
                table = probe_teacher(cached[teacher], structures, y, cv=5, random_state=0)
            except ValueError as error:  # a crystal the teacher cannot take
                record["refused"] = str(error).splitlines()[0]
            else:
                for row in table.itertuples():
                    record[f"{row.probe}, {row.embedding}"] = [row.mae, row.mae_std]
            record["minutes"] = (time.perf_counter() - start) / 60
            record["threads"] = torch.get_num_threads()
            record["date"] = str(date.today())
            print(record, flush=True)
            with PROBE_RESULTS.open("a") as out:
                out.write(json.dumps(record) + "\n")
    report_probe()


def report_probe() -> None:
    rows, wins = [], {}
    for r in probe_records():
        row = {"dataset": r["dataset"], "crystals": r["crystals"], "teacher": r["teacher"]}
        if "refused" in r:
            row.update(dict.fromkeys(PROBE_COLUMNS.values(), ""))
            row["ridge"] = f"refused: {r['refused']}"
        else:
            for key, column in PROBE_COLUMNS.items():
                mae, std = r[key]
                row[column] = f"{mae:.4g} ± {std:.2g}"
            boost, twin = (r[f"gradient boosting, {e}"][0] for e in ("teacher", "untrained twin"))
            wins.setdefault(r["teacher"], []).append(boost < twin)
        row["unit"] = PROBE_UNITS[r["dataset"]]
        row["minutes"] = r["minutes"]
        row["threads"] = r["threads"]
        row["date"] = r["date"]
        rows.append(row)
    rows.sort(key=lambda row: list(PROBE_DATASETS).index(row["dataset"]))
    tally = "; ".join(f"`{t}` {sum(w)} of {len(w)}" for t, w in wins.items())
    body = (
        "`python benchmarks/teachers.py probe --teachers crysgnn-mp chgnet` (records in "
        f"`benchmarks/results/teachers_probe.jsonl`); {machine()}.\n\n"
        "Each crystal's embedding is the mean of the teacher's node embeddings; ridge "
        "(penalty chosen inside each training fold) and histogram gradient boosting are "
        "fitted on it in 5 shuffled folds (seed 0): mean test-fold MAE ± its spread across "
        'the folds. "twin": the same network with fresh weights (seed 0): what the '
        "architecture and the input features alone give. Datasets: `PROBE_DATASETS` of the "
        f"script; the MP properties are one seed-0 sample of {MAX_CRYSTALS:,} crystals of "
        "`load_mp_properties` (two Fermi energies are missing), `mp-gap` is MP 2018.6.1's "
        f"PBE gap (pooled, {MAX_CRYSTALS:,} sampled), the three multi-fidelity gaps every "
        "crystal with one; `obelix-ordered-...` is OBELiX's 72 entries without partial "
        "occupancies (CHGNet refuses the others). CHGNet's training set holds MP "
        "relaxations (energies, forces, magnetic moments), so its MP formation-energy and "
        "magnetisation rows are not a fair test of it. Minutes (on that many CPU threads): "
        "embedding (teacher and "
        "twin) and probing (the MP properties after `mp-e_form` reuse its vectors: "
        "probing only). Rows of `crysgnn-mp-0.1` are skcrystal 0.1's bundled teacher, "
        "probed before it was replaced on 2026-12-07; `crysgnn-mp` rows of 2026-12-06 "
        "probed today's weights as the file `out/crysgnn-pool.safetensors`, before they "
        "were bundled.\n\n"
        f"Gradient boosting on the teacher beats it on its twin: {tally} datasets.\n\n"
        + markdown_table(rows)
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
        self._twins: dict[int, CachedTeacher] = {}

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
        """The teacher's untrained twin, itself cached (one per seed)."""
        if random_state not in self._twins:
            self._twins[random_state] = CachedTeacher(self.teacher.untrained(random_state))
        return self._twins[random_state]


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = round(fraction * n), round(0.1 * n)
    return order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]


def done_runs() -> set[tuple]:
    if not RESULTS.exists():
        return set()
    runs = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return {(r["dataset"], r["fraction"], r["seed"], r["arm"]) for r in runs}


def teacher_name(arm: str) -> str:
    """The teacher of a ``teacher[:transfer][@alpha]`` arm."""
    return arm.partition("@")[0].partition(":")[0]


def distilled(arm: str, teacher, **params) -> DistilledRegressor:
    """The student of a ``teacher[:transfer][@alpha]`` arm taught by ``teacher`` (a name or
    a teacher object): transfer "nodes" and alpha 0.5 unless the arm names them."""
    spec, _, alpha = arm.partition("@")
    transfer = spec.partition(":")[2] or "nodes"
    return DistilledRegressor(
        teacher=teacher, alpha=float(alpha or 0.5), transfer=transfer, **params
    )


def distill(args) -> None:
    done = done_runs()
    for dataset in args.datasets or ["elastic-logG", "elastic-logK", "dielectric-n"]:
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
                        name = teacher_name(arm)
                        if name not in teachers:
                            teachers[name] = CachedTeacher(get_teacher(name))
                        reg = distilled(arm, teachers[name], **params)
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


def overhead(args) -> None:
    """Fit and predict seconds of each arm against plain training, teachers uncached."""
    epochs = args.epochs
    rows = []
    for dataset in args.datasets or ["elastic-logG"]:
        structures, y = pooled(dataset)
        train, valid, test = split(len(y), 0.2, 0)
        X_train, X_valid, X_test = ([structures[i] for i in rows] for rows in (train, valid, test))
        # Warm-up, not timed: builds (and caches) every crystal's graph, as a first fit
        # of a user's session would, so that the arms differ only by their teachers.
        CGCNNRegressor(max_epochs=1).fit(X_train, y[train]).predict(X_valid + X_test)
        arms = ["plain", *args.teachers]
        fits, predictions = {arm: [] for arm in arms}, {arm: [] for arm in arms}
        for _ in range(args.repeats):  # the arms in turn, so that slow spells hit them all
            for arm in arms:
                params = dict(
                    random_state=0, device=args.device, max_epochs=epochs, n_iter_no_change=epochs
                )
                if arm == "plain":
                    reg = CGCNNRegressor(**params)
                else:
                    reg = distilled(arm, teacher_name(arm), **params)
                start = time.perf_counter()
                reg.fit(X_train, y[train], validation_data=(X_valid, y[valid]))
                fits[arm].append(time.perf_counter() - start)
                start = time.perf_counter()
                reg.predict(X_test)
                predictions[arm].append(time.perf_counter() - start)
                print(arm, fits[arm][-1], predictions[arm][-1], flush=True)
        graphs = CrystalGraphTransformer().transform(X_train + X_valid)  # from the cache
        for arm in arms:
            teacher_seconds = ""
            if arm != "plain":
                teacher = get_teacher(teacher_name(arm))
                start = time.perf_counter()
                teacher.node_embeddings(X_train + X_valid, graphs)
                teacher_seconds = time.perf_counter() - start
            fit, predict = np.median(fits[arm]), np.median(predictions[arm])
            rows.append(
                {
                    "dataset": dataset,
                    "n train + valid": len(train) + len(valid),
                    "n predicted": len(test),
                    "arm": arm,
                    "fit s (each run)": ", ".join(f"{t:.1f}" for t in fits[arm]),
                    "fit / plain (medians)": fit / np.median(fits["plain"]),
                    "teacher s (train + valid)": teacher_seconds,
                    "predict s (median)": predict,
                    "predict / plain": predict / np.median(predictions["plain"]),
                }
            )
    body = (
        f"`python benchmarks/teachers.py overhead --teachers {' '.join(args.teachers)} "
        f"--epochs {epochs} --repeats {args.repeats}`; {machine(args.device)}; nothing else "
        "running.\n\n"
        "What a teacher costs a user: each fit trains on 20 % of the dataset with 10 % "
        f"as validation data (seed 0) for exactly {epochs} epochs, no early stopping "
        f"(`max_epochs='auto'` gives {auto_max_epochs(len(train))} at this size), the "
        "teacher given by name (no vectors cached between arms), then predicts the other "
        "70 %. skcrystal's graphs of these crystals are built once before the arms (a "
        "one-epoch fit, not timed) and then come from its graph cache; CHGNet builds its "
        "own graphs on every call. A `nodes` teacher runs once per fit, on the training "
        "and validation crystals; a `features` teacher also runs at prediction. The fit "
        "ratio falls with more epochs (the teacher's cost is paid once per fit). Each arm "
        f"ran {args.repeats} times, the arms in turn; the spread of one arm's runs is "
        "the timing noise of this machine. Teacher s: the teacher alone embedding the "
        "training and validation crystals once, timed apart.\n\n" + markdown_table(rows)
    )
    write_section("teachers_overhead", "Teachers: what they cost in time", body)


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
    parser.add_argument("command", choices=["probe", "distill", "overhead", "report"])
    parser.add_argument("--teachers", nargs="+", default=["crysgnn-mp", "chgnet"])
    parser.add_argument(
        "--datasets",
        nargs="+",
        help="probe: every one of PROBE_DATASETS by default; "
        "distill: elastic-logG elastic-logK dielectric-n by default",
    )
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--max-test",
        type=int,
        default=None,
        help="test on the first N test crystals of each split only (a random subset)",
    )
    parser.add_argument("--epochs", type=int, default=200, help="overhead: epochs per fit")
    parser.add_argument("--repeats", type=int, default=2, help="overhead: fits per arm")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"probe": probe, "distill": distill, "overhead": overhead, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
