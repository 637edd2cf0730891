"""A short training on real Materials Project crystals must learn: 5x better than the mean.

The recipe is the estimator's default (AdamW 3e-3, cosine decay, batch 64), shortened to
40 epochs to keep the suite fast.
"""

import numpy as np
import torch

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.datasets import load_mp_formation_energy


def test_cgcnn_beats_mean_predictor_fivefold_on_2000_mp_crystals(data_home):
    df = load_mp_formation_energy(limit=2500, n_jobs=2)
    graphs = CrystalGraphTransformer(n_jobs=2).transform(df.structure)
    y = df.e_form.to_numpy()
    train, test = np.arange(2000), np.arange(2000, 2500)  # test crystals never seen in fit
    reg = CGCNNRegressor(max_epochs=40, random_state=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        reg.fit(graphs[train], y[train])
    finally:
        torch.set_num_threads(threads)
    model_mae = np.abs(reg.predict(graphs[test]) - y[test]).mean()
    mean_mae = np.abs(y[test] - y[train].mean()).mean()
    assert model_mae * 5 < mean_mae, f"MAE {model_mae:.3f} vs mean predictor {mean_mae:.3f}"
