"""Pretrain a CrysGNN teacher on unlabelled crystals, then distil it into a small-data CGCNN.

    python examples/pretrain_and_distil.py            # 6,000 unlabelled, 500 labelled
    python examples/pretrain_and_distil.py --smoke    # 100 unlabelled, 60 labelled

The labelled crystals' targets are the only labels used; the unlabelled ones contribute
structures only. Compares CGCNN trained from scratch with the distilled model on held-out
crystals and writes a parity plot (``distilled-parity.png``). ``--teacher bundled`` uses
the package's ``crysgnn-mp`` teacher instead of pretraining one.
"""

from __future__ import annotations

import argparse

import matplotlib
import numpy as np

from skcrystal import CGCNNRegressor, CrysGNNPretrainer, CrystalGraphTransformer, DistilledRegressor
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.explain import plot_parity

matplotlib.use("Agg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--teacher", choices=["pretrain", "bundled"], default="pretrain")
    args = parser.parse_args()
    n_unlabelled, n_labelled, n_test, epochs = (
        (100, 60, 40, 2) if args.smoke else (6000, 500, 1000, 60)
    )

    df = load_mp_formation_energy(limit=n_unlabelled + n_labelled + n_test)
    graphs = CrystalGraphTransformer(symmetry=True).transform(df.structure)
    y = df.e_form.to_numpy()
    unlabelled = np.arange(n_unlabelled)
    labelled = np.arange(n_unlabelled, n_unlabelled + n_labelled)
    test = np.arange(n_unlabelled + n_labelled, len(df))

    teacher = None  # the bundled crysgnn-mp
    if args.teacher == "pretrain":
        teacher = CrysGNNPretrainer(max_epochs=max(epochs // 3, 1), random_state=0)
        teacher.fit(graphs[unlabelled])
        print("teacher held-out losses:", teacher.loss_components(graphs[test]))
    common = dict(max_epochs=epochs, lr=3e-3, random_state=0)
    plain = CGCNNRegressor(**common).fit(graphs[labelled], y[labelled])
    distilled = DistilledRegressor(teacher=teacher, alpha=0.5, **common)
    distilled.fit(graphs[labelled], y[labelled])
    for name, model in (("CGCNN", plain), ("distilled CGCNN", distilled)):
        mae = np.abs(model.predict(graphs[test]) - y[test]).mean()
        print(f"{name}: test MAE {mae:.3f} eV/atom on {len(test)} crystals")
    figure = plot_parity(
        y[test], distilled.predict(graphs[test]), units="eV/atom", label="distilled CGCNN"
    )
    figure.savefig("distilled-parity.png", dpi=110)
    print("wrote distilled-parity.png")


if __name__ == "__main__":
    main()
