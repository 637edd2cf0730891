"""A short training on real Materials Project crystals must learn: 5x better than the mean.

Each model trains on 2,000 crystals and is scored on 500 others. CGCNN's recipe is the
estimator's default (AdamW 3e-3, cosine decay, batch 64), shortened to 40 epochs;
GATGNN and ElemNet run smaller or shorter, to keep the suite fast.
"""

import numpy as np
import torch

from skcrystal import CGCNNRegressor, CrystalGraphTransformer, ElemNetRegressor, GATGNNRegressor
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.nn.elemnet import ELEMENTS


def fit_and_check_fivefold(reg, X, y):
    """Fit on the first 2,000 items with two threads; 5x the mean predictor on the rest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        reg.fit(X[:2000], y[:2000])
    finally:
        torch.set_num_threads(threads)
    model_mae = np.abs(reg.predict(X[2000:]) - y[2000:]).mean()
    mean_mae = np.abs(y[2000:] - y[:2000].mean()).mean()
    assert model_mae * 5 < mean_mae, f"MAE {model_mae:.3f} vs mean predictor {mean_mae:.3f}"


def mp_graphs(limit=2500):
    df = load_mp_formation_energy(limit=limit, n_jobs=2)
    return CrystalGraphTransformer(n_jobs=2).transform(df.structure), df.e_form.to_numpy()


def test_cgcnn_beats_mean_predictor_fivefold_on_2000_mp_crystals(data_home):
    graphs, y = mp_graphs()
    fit_and_check_fivefold(CGCNNRegressor(max_epochs=40, random_state=0), graphs, y)


def test_gatgnn_beats_mean_predictor_fivefold_on_2000_mp_crystals(data_home):
    graphs, y = mp_graphs()
    reg = GATGNNRegressor(width=32, n_layers=2, heads=2, max_epochs=15, random_state=0)
    fit_and_check_fivefold(reg, graphs, y)


def test_elemnet_beats_mean_predictor_fivefold_on_2000_mp_formulas(data_home):
    df = load_mp_formation_energy(limit=2600, n_jobs=2)
    encodable = [{e.symbol for e in s.composition} <= set(ELEMENTS) for s in df.structure]
    df = df[encodable].iloc[:2500]  # one crystal of the 2,600 holds He
    formulas = np.array([s.composition.formula for s in df.structure], dtype=object)
    reg = ElemNetRegressor(max_epochs=60, random_state=0)
    fit_and_check_fivefold(reg, formulas, df.e_form.to_numpy())
    # structures give the same predictions as their formulas
    structures = df.structure.tolist()[2000:2020]
    np.testing.assert_allclose(reg.predict(structures), reg.predict(formulas[2000:2020]), atol=1e-5)
