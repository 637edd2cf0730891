"""Fit CrysXPP from the bundled pretrained encoder and explain what drives its predictions.

    python examples/explain_crysxpp.py            # 3,000 crystals, 80 epochs
    python examples/explain_crysxpp.py --smoke    # 80 crystals, 2 epochs

Prints the importance of each element property (``explain()``) and writes
``crysxpp-importances.png`` and ``crysxpp-learning-curve.png``.
"""

from __future__ import annotations

import argparse

import matplotlib

from skcrystal import CrysXPPRegressor
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.explain import plot_importances, plot_learning_curve

matplotlib.use("Agg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--l1", type=float, default=1.0, help="mask penalty (mean form)")
    args = parser.parse_args()
    n, epochs = (80, 2) if args.smoke else (3000, 80)

    df = load_mp_formation_energy(limit=n)
    reg = CrysXPPRegressor(encoder="crysae-mp", l1=args.l1, max_epochs=epochs, random_state=0)
    reg.fit(df.structure, df.e_form)
    print(reg.explain().round(4).to_string())
    plot_importances(reg).savefig("crysxpp-importances.png", dpi=110)
    plot_learning_curve(reg).savefig("crysxpp-learning-curve.png", dpi=110)
    print("wrote crysxpp-importances.png and crysxpp-learning-curve.png")


if __name__ == "__main__":
    main()
