"""A matminer-style DataFrame (a ``structure`` column and a target) into ``cross_val_score``.

    python examples/cross_validation_dataframe.py            # 2,000 crystals, 5 folds
    python examples/cross_validation_dataframe.py --smoke    # 60 crystals, 3 folds, 2 epochs

The pipeline builds the crystal graphs inside each fold (the graph cache makes the second
fold onwards reuse them) and fits a CGCNN; the score is the MAE in eV/atom.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import Pipeline

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.datasets import load_mp_formation_energy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n, folds, epochs = (60, 3, 2) if args.smoke else (2000, 5, 60)

    df = load_mp_formation_energy(limit=n)  # columns: structure, e_form, mp_id
    pipe = Pipeline(
        [
            ("graph", CrystalGraphTransformer()),
            ("reg", CGCNNRegressor(max_epochs=epochs, lr=3e-3, random_state=0)),
        ]
    )
    cv = KFold(folds, shuffle=True, random_state=0)
    scores = -cross_val_score(
        pipe, df["structure"], df["e_form"], cv=cv, scoring="neg_mean_absolute_error"
    )
    baseline = np.abs(df["e_form"] - df["e_form"].mean()).mean()
    print(f"CGCNN {folds}-fold MAE: {scores.mean():.3f} ± {scores.std():.3f} eV/atom")
    print(f"mean predictor (in-sample): {baseline:.3f} eV/atom")


if __name__ == "__main__":
    main()
