"""A short training on real Materials Project crystals must learn: 5x better than the mean.

Each model trains on 2,000 crystals and is scored on 500 others. CGCNN's recipe is the
estimator's default (AdamW 3e-3, cosine decay, batch 64), shortened to 40 epochs;
GATGNN, MEGNet and ElemNet run smaller or shorter, to keep the suite fast. MEGNet as
published does not reach 5x at this size and is held to 2.5x; with ``norm="batch"`` it
learns faster and is held to 4x at 25 epochs (see its tests).
"""

import numpy as np
import pytest
import torch

from skcrystal import (
    CGCNNRegressor,
    CrystalGraphTransformer,
    ElemNetRegressor,
    GATGNNRegressor,
    MEGNetRegressor,
)
from skcrystal.datasets import load_mp_formation_energy, load_mp_properties
from skcrystal.nn.elemnet import ELEMENTS


def fit_and_beat_the_mean(reg, X, y, factors=(5,)):
    """Fit on the first 2,000 items with two threads; beat the mean predictor on the rest.

    The MAE times each target's factor must stay below the mean predictor's MAE.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        reg.fit(X[:2000], y[:2000])
    finally:
        torch.set_num_threads(threads)
    y = np.asarray(y).reshape(len(X), -1)
    predicted = reg.predict(X[2000:]).reshape(len(X) - 2000, -1)
    model_mae = np.abs(predicted - y[2000:]).mean(axis=0)
    mean_mae = np.abs(y[2000:] - y[:2000].mean(axis=0)).mean(axis=0)
    assert (model_mae * factors < mean_mae).all(), f"MAE {model_mae} vs mean predictor {mean_mae}"


@pytest.fixture(scope="module")
def mp_graphs(data_home):
    """CGCNN graphs and formation energies of the first 2,500 MP crystals, built once."""
    df = load_mp_formation_energy(limit=2500, n_jobs=2)
    return CrystalGraphTransformer(n_jobs=2).transform(df.structure), df.e_form.to_numpy()


def test_cgcnn_beats_mean_predictor_fivefold_on_2000_mp_crystals(mp_graphs):
    graphs, y = mp_graphs
    fit_and_beat_the_mean(CGCNNRegressor(max_epochs=40, random_state=0), graphs, y)


def test_multitask_cgcnn_learns_formation_energy_and_band_gap_at_once(data_home):
    """MTCGCNN is CGCNNRegressor given several target columns (a DataFrame here)."""
    df = load_mp_properties(limit=2500, n_jobs=2)
    graphs = CrystalGraphTransformer(n_jobs=2).transform(df.structure)
    reg = CGCNNRegressor(max_epochs=40, random_state=0)
    # formation energy as well as alone; band gaps are harder (38 % of them are 0)
    fit_and_beat_the_mean(reg, graphs, df[["e_form", "band_gap"]], factors=(5, 2))


def test_gatgnn_beats_mean_predictor_fivefold_on_2000_mp_crystals(mp_graphs):
    graphs, y = mp_graphs
    reg = GATGNNRegressor(width=32, n_layers=2, heads=2, max_epochs=40, random_state=0)
    fit_and_beat_the_mean(reg, graphs, y)


@pytest.fixture(scope="module")
def megnet_graphs(data_home):
    """MEGNet's 5 Å radius graphs and formation energies of 2,500 MP crystals."""
    df = load_mp_formation_energy(limit=2501, n_jobs=2).iloc[1:]  # 0: bcc Cs, no atom within 5 Å
    builder = MEGNetRegressor().default_graph_builder().set_params(n_jobs=2)
    return builder.transform(df.structure), df.e_form.to_numpy()


def test_megnet_beats_mean_predictor_on_2000_mp_crystals(megnet_graphs):
    reg = MEGNetRegressor(n_blocks=2, max_epochs=15, random_state=0)
    # Not five times: MEGNet as published learns slowly at this size (test MAE 0.31 against
    # the mean predictor's 0.82 here, 0.22 after 40 epochs; matgl's own MEGNet in this
    # estimator 0.28). Not a porting error: it normalises nothing (next test).
    fit_and_beat_the_mean(reg, *megnet_graphs, factors=(2.5,))


def test_batch_normalised_megnet_learns_faster(megnet_graphs):
    """``norm="batch"`` (batch norm before the softplus2 of every atom and bond layer)."""
    reg = MEGNetRegressor(n_blocks=2, max_epochs=25, norm="batch", random_state=0)
    # 0.176 against the mean predictor's 0.82 (4.7x) where MEGNet as published has 0.31 at
    # 15 epochs and 0.22 at 40; at 40 epochs this variant reaches 0.164, 5.0x, too close to
    # the bar to test it there (docs/seed_models.md).
    fit_and_beat_the_mean(reg, *megnet_graphs, factors=(4,))


def test_elemnet_beats_mean_predictor_fivefold_on_2000_mp_formulas(data_home):
    df = load_mp_formation_energy(limit=2600, n_jobs=2)
    encodable = [{e.symbol for e in s.composition} <= set(ELEMENTS) for s in df.structure]
    df = df[encodable].iloc[:2500]  # one crystal of the 2,600 holds He
    formulas = np.array([s.composition.formula for s in df.structure], dtype=object)
    # all 2,000 trained on, the last epoch of the cosine decay kept: with 10 % of them held
    # out for early stopping it reached only 4.8x (60 epochs) on these crystals
    reg = ElemNetRegressor(max_epochs=40, early_stopping=False, random_state=0)
    fit_and_beat_the_mean(reg, formulas, df.e_form.to_numpy())
    # structures give the same predictions as their formulas
    structures = df.structure.tolist()[2000:2020]
    np.testing.assert_allclose(reg.predict(structures), reg.predict(formulas[2000:2020]), atol=1e-5)
