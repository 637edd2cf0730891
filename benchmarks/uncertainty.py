"""Error bars on the MP split: ensemble accuracy, conformal coverage, the domain score.

For each ``--target``, on the fixed 20/10/70 split of ``benchmarks/accuracy_mp.py``
(seed 0): an :class:`~skcrystal.uncertainty.EnsembleRegressor` of ``--members`` CGCNNs
(seeds drawn from ``random_state=0``; each member stops early on its own internal 10 %
of the training crystals) trains on the training crystals; the validation crystals only
calibrate (they take no part in training); the test crystals measure. Reported: the MAE
of the ensemble mean against its members', the coverage and mean width of conformal
intervals at 50/80/90/95 % ("absolute" around one member and around the ensemble mean,
"normalized" by the ensemble std, "domain": std times the latent-distance score), and
the Spearman correlation of the std and of the domain score with the absolute error.

``--shift oxides``: the same with every crystal containing oxygen removed from the
training and calibration crystals; the test crystals are split into those without
oxygen (exchangeable with the calibration set) and the oxides (a shift).

    python benchmarks/uncertainty.py --target gap_pbe --epochs 60
    python benchmarks/uncertainty.py --target gap_pbe --shift oxides --epochs 60
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from report import machine, markdown_table, write_section
from scipy.stats import spearmanr

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.datasets import benchmark_split, load_mp_band_gap, load_mp_formation_energy
from skcrystal.uncertainty import ConformalRegressor, EnsembleRegressor, calibration_curve

COVERAGES = (0.5, 0.8, 0.9, 0.95)
UNITS = {"e_form": "eV/atom", "gap_pbe": "eV"}


def has_oxygen(structures) -> np.ndarray:
    return np.array(["O" in {e.symbol for e in s.composition} for s in structures])


def interval_rows(conformals: dict, graphs, y, group: str) -> list[dict]:
    rows = []
    for name, conformal in conformals.items():
        _, observed, width = calibration_curve(conformal, graphs, y, COVERAGES)
        row = {"test crystals": f"{group} ({len(y)})", "intervals": name}
        for coverage, seen, wide in zip(COVERAGES, observed, width, strict=True):
            row[f"{coverage:.0%} covers"] = f"{seen:.1%}"
            if coverage == 0.9:
                row["90% mean width"] = float(wide)
        rows.append(row)
    return rows


def run(args: argparse.Namespace, df, graphs, y) -> None:
    train, valid, test = benchmark_split(len(df), seed=0, train_fraction=0.2)
    if args.test_sample:  # a random subset of the test crystals (seed 0), to save time
        test = np.sort(np.random.default_rng(0).choice(test, args.test_sample, replace=False))
    groups = {"all": test}
    if args.shift == "oxides":
        oxygen = has_oxygen(df.structure)
        train, valid = train[~oxygen[train]], valid[~oxygen[valid]]
        groups = {"without O": test[~oxygen[test]], "oxides": test[oxygen[test]]}
    member = CGCNNRegressor(
        max_epochs=args.epochs,
        nonnegative="clip" if args.target == "gap_pbe" else False,
        device=args.device,
    )
    ensemble = EnsembleRegressor(member, n_estimators=args.members, random_state=0)
    start = time.perf_counter()
    ensemble.fit(graphs[train], y[train])
    fit_minutes = (time.perf_counter() - start) / 60
    first = ensemble.estimators_[0]
    conformals = {
        "absolute, one member": ConformalRegressor(first, prefit=True, method="absolute"),
        "absolute, ensemble mean": ConformalRegressor(ensemble, prefit=True, method="absolute"),
        "normalized by std": ConformalRegressor(ensemble, prefit=True, method="normalized"),
        "domain (std x distance)": ConformalRegressor(ensemble, prefit=True, method="domain"),
    }
    for conformal in conformals.values():
        conformal.fit(graphs[valid], y[valid])

    accuracy, intervals = [], []
    for group, rows in groups.items():
        truth = y[rows]
        members = np.stack([m.predict(graphs[rows]) for m in ensemble.estimators_])
        mean, std = ensemble.predict(graphs[rows], return_std=True)
        error = np.abs(mean - truth)
        score = ensemble.applicability(graphs[rows])
        member_mae = np.abs(members - truth).mean(axis=1)
        accuracy.append(
            {
                "test crystals": f"{group} ({len(rows)})",
                "ensemble MAE": float(error.mean()),
                "member MAE (mean, min-max)": f"{member_mae.mean():.4g} "
                f"({member_mae.min():.4g}-{member_mae.max():.4g})",
                "mean-predictor MAE": float(np.abs(truth - y[train].mean()).mean()),
                "Spearman(std, error)": float(spearmanr(std, error).statistic),
                "Spearman(domain score, error)": float(spearmanr(score, error).statistic),
                "median domain score": float(np.median(score)),
            }
        )
        intervals += interval_rows(conformals, graphs[rows], truth, group)
    shift = f"_shift_{args.shift}" if args.shift else ""
    body = (
        f"`python benchmarks/uncertainty.py {' '.join(sys.argv[1:])}` on "
        f"{machine(args.device)}.\n\nMP {args.target} ({UNITS[args.target]}), the 20/10/70 "
        f"split (seed 0)"
        + (", oxygen-free crystals only in training and calibration" if args.shift else "")
        + f": {len(train)} training crystals; {len(valid)} validation crystals calibrate "
        f"(never trained on); {len(test)} test crystals"
        + (" (a random sample of the split's)" if args.test_sample else "")
        + f". {args.members} CGCNN members (defaults, {args.epochs} epochs, "
        f"each stopping early on its own 10 % of the training crystals), "
        f"{fit_minutes:.0f} min to train.\n\n{markdown_table(accuracy)}\n\n"
        f"Coverage of conformal intervals on the test crystals, and the mean width of the "
        f"90 % ones ({UNITS[args.target]}):\n\n{markdown_table(intervals)}"
    )
    write_section(
        f"uncertainty_{args.target}{shift}",
        f"Uncertainty: MP {args.target}{' under a shift to oxides' if args.shift else ''}",
        body,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["e_form", "gap_pbe"], nargs="+", default=["gap_pbe"])
    parser.add_argument("--shift", choices=["none", "oxides"], nargs="+", default=["none"])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="processes for parsing")
    parser.add_argument("--limit", type=int, help="first crystals only (a quick check)")
    parser.add_argument("--test-sample", type=int, help="measure on this many test crystals")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for target in args.target:
        load = load_mp_formation_energy if target == "e_form" else load_mp_band_gap
        df = load(n_jobs=args.jobs, limit=args.limit)
        graphs = CrystalGraphTransformer(n_jobs=args.jobs).transform(df.structure)
        y = df[target].to_numpy()
        for shift in args.shift:
            run_args = {**vars(args), "target": target, "shift": None if shift == "none" else shift}
            run(argparse.Namespace(**run_args), df, graphs, y)


if __name__ == "__main__":
    main()
