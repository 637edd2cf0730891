"""Choose hyper-parameters with ``GridSearchCV`` on validation folds, then test once.

    python examples/grid_search.py            # 1,500 crystals
    python examples/grid_search.py --smoke    # 80 crystals, 2 epochs

Graphs are built once, outside the search: every candidate then trains on the same
``CrystalGraphs`` (they slice like arrays). The test crystals take no part in the choice.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.datasets import load_mp_formation_energy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n, epochs = (80, 2) if args.smoke else (1500, 40)

    df = load_mp_formation_energy(limit=n)
    graphs = CrystalGraphTransformer().transform(df.structure)
    y = df.e_form.to_numpy()
    train, test = train_test_split(np.arange(n), test_size=0.2, random_state=0)
    search = GridSearchCV(
        CGCNNRegressor(max_epochs=epochs, random_state=0),
        {"n_conv": [2, 3], "lr": [1e-3, 3e-3]},
        cv=3,
        scoring="neg_mean_absolute_error",
    )
    search.fit(graphs[train], y[train])
    test_mae = np.abs(search.predict(graphs[test]) - y[test]).mean()
    print(f"best parameters {search.best_params_}, CV MAE {-search.best_score_:.3f} eV/atom")
    print(f"test MAE of the refitted best model: {test_mae:.3f} eV/atom")


if __name__ == "__main__":
    main()
