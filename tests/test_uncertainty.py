"""Ensembles, conformal intervals and the applicability domain on real MP crystals."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.uncertainty import (
    ConformalRegressor,
    EnsembleRegressor,
    LatentDistance,
    calibration_curve,
    conformal_quantile,
    plot_calibration,
    plot_error_vs_std,
)


@pytest.fixture(scope="module")
def mp1200(data_home):
    """1,200 real MP crystals in random order (seed 0), their graphs and e_form."""
    df = load_mp_formation_energy(limit=1200, n_jobs=2)
    order = np.random.default_rng(0).permutation(len(df))
    df = df.iloc[order].reset_index(drop=True)
    graphs = CrystalGraphTransformer(n_jobs=2).transform(df.structure)
    return df, graphs, df.e_form.to_numpy()


def small_cgcnn(**params):
    return CGCNNRegressor(
        **{"max_epochs": 15, "n_conv": 2, "atom_fea_len": 32, "random_state": 0, **params}
    )


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 20.0)  # 19 scores: rank ceil(20 * 0.9) = 18
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_quantile(scores[::-1], 0.5) == 10.0  # order does not matter
    columns = np.stack([scores, 2 * scores], axis=1)
    np.testing.assert_array_equal(conformal_quantile(columns, 0.9), [18.0, 36.0])
    with pytest.raises(ValueError, match=r"8 calibration crystals are too few for coverage=0\.9"):
        conformal_quantile(scores[:8], 0.9)  # needs 9
    with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\)"):
        conformal_quantile(scores, 1.0)


def test_split_conformal_covers_held_out_crystals_and_training_residuals_do_not(mp1200):
    """90 % intervals calibrated on held-out crystals cover 84-96 % of others (a
    binomial spread of about 2 points each for 400 calibration and 400 test crystals);
    calibrated on the training crystals, whose errors the fit has shrunk, they cover
    clearly less, so this test tells the two apart."""
    _, graphs, y = mp1200
    train, cal, test = np.arange(400), np.arange(400, 800), np.arange(800, 1200)
    model = small_cgcnn().fit(graphs[train], y[train])
    conf = ConformalRegressor(model, prefit=True).fit(graphs[cal], y[cal])
    lower, upper = conf.predict_interval(graphs[test])
    covered = np.mean((lower <= y[test]) & (y[test] <= upper))
    assert 0.84 <= covered <= 0.96, covered
    assert conf.method_ == "absolute"
    np.testing.assert_allclose(upper - lower, upper[0] - lower[0], rtol=1e-6)  # one width
    np.testing.assert_allclose(conf.predict(graphs[test]), model.predict(graphs[test]))

    leaky = ConformalRegressor(model, prefit=True).fit(graphs[train], y[train])
    lower, upper = leaky.predict_interval(graphs[test])
    assert np.mean((lower <= y[test]) & (y[test] <= upper)) < 0.84

    _, observed, width = calibration_curve(conf, graphs[test], y[test], [0.5, 0.9])
    assert observed[1] == pytest.approx(covered)
    assert width[0] < width[1]
    assert plot_calibration(conf, graphs[test], y[test]).axes[0].get_xlabel() == (
        "nominal coverage"
    )


def test_conformal_trains_and_calibrates_on_disjoint_crystals(mp1200):
    df, _, y = mp1200
    X = list(df.structure[:300])
    conf = ConformalRegressor(
        small_cgcnn(max_epochs=3), calibration_fraction=0.25, random_state=1
    ).fit(X, y[:300])
    cal = conf.calibration_indices_
    assert len(cal) == 75 and len(np.unique(cal)) == 75
    assert len(conf.estimator_.history_) == 3
    # the clone trained on the other 225 crystals only: its target scaling is theirs
    train = np.setdiff1d(np.arange(300), cal)
    np.testing.assert_allclose(conf.estimator_.target_mean_, [y[train].mean()], rtol=1e-6)
    assert conf.scores_.shape == (75,)
    with pytest.raises(ValueError, match=r"too few for coverage=0\.99"):
        conf.predict_interval(X[:2], coverage=0.99)  # 75 < 99 needed
    assert pickle.loads(pickle.dumps(conf)).predict_interval(X[:2])[0].shape == (2,)


def test_conformal_refuses_what_it_cannot_calibrate(mp1200):
    _, graphs, y = mp1200
    with pytest.raises(ValueError, match="prefit=True needs a fitted estimator"):
        ConformalRegressor(small_cgcnn(), prefit=True).fit(graphs[:20], y[:20])
    model = small_cgcnn(max_epochs=1).fit(graphs[:50], y[:50])
    with pytest.raises(ValueError, match="method='normalized' needs an estimator"):
        ConformalRegressor(model, prefit=True, method="normalized").fit(graphs[50:80], y[50:80])
    with pytest.raises(ValueError, match="method='domain' needs an estimator"):
        ConformalRegressor(model, prefit=True, method="domain").fit(graphs[50:80], y[50:80])
    with pytest.raises(ValueError, match="method must be one of"):
        ConformalRegressor(model, prefit=True, method="cqr").fit(graphs[50:80], y[50:80])
    with pytest.raises(ValueError, match="5 calibration crystals are too few"):
        ConformalRegressor(model, prefit=True).fit(graphs[50:55], y[50:55])
    with pytest.raises(ValueError, match="X has 10 crystals but y has 9 rows"):
        ConformalRegressor(model, prefit=True).fit(graphs[50:60], y[50:59])
    with pytest.raises(ValueError, match="calibration_fraction must be in"):
        ConformalRegressor(small_cgcnn(), calibration_fraction=1.5).fit(graphs[:20], y[:20])


def test_nonnegative_targets_get_nonnegative_lower_bounds(mp1200):
    _, graphs, y = mp1200
    gap_like = np.abs(y[:300])  # a non-negative target
    model = small_cgcnn(max_epochs=3, nonnegative="clip").fit(graphs[:200], gap_like[:200])
    conf = ConformalRegressor(model, prefit=True).fit(graphs[200:300], gap_like[200:300])
    lower, upper = conf.predict_interval(graphs[300:400])
    assert lower.min() == 0.0 and (upper > lower).all()


def test_ensemble_builds_graphs_once_and_its_members_differ(mp1200, monkeypatch):
    df, graphs, y = mp1200
    calls = []
    transform = CrystalGraphTransformer.transform
    monkeypatch.setattr(
        CrystalGraphTransformer,
        "transform",
        lambda self, X: calls.append(len(X)) or transform(self, X),
    )
    ens = EnsembleRegressor(small_cgcnn(max_epochs=3), n_estimators=3, random_state=0)
    ens.fit(list(df.structure[:200]), y[:200])
    assert calls == [200]
    assert len(set(ens.seeds_)) == 3
    assert [m.random_state for m in ens.estimators_] == [int(s) for s in ens.seeds_]
    mean, std = ens.predict(graphs[200:260], return_std=True)
    members = np.stack([m.predict(graphs[200:260]) for m in ens.estimators_])
    np.testing.assert_allclose(mean, members.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, members.std(axis=0, ddof=1), rtol=1e-5)
    assert (std > 0).all()
    again = EnsembleRegressor(small_cgcnn(max_epochs=3), n_estimators=3, random_state=0)
    np.testing.assert_allclose(again.fit(graphs[:200], y[:200]).predict(graphs[200:260]), mean)
    restored = pickle.loads(pickle.dumps(ens))
    np.testing.assert_allclose(restored.predict(graphs[200:260]), mean, rtol=1e-6)
    assert clone(ens).get_params()["n_estimators"] == 3


def test_ensemble_in_a_pipeline_under_grid_search_and_with_bootstrap(mp1200):
    df, _, y = mp1200
    X = df.structure[:160]
    pipe = Pipeline(
        [
            ("graph", CrystalGraphTransformer()),
            ("reg", EnsembleRegressor(small_cgcnn(max_epochs=2), n_estimators=2, random_state=0)),
        ]
    )
    search = GridSearchCV(pipe, {"reg__bootstrap": [False, True]}, cv=2, error_score="raise")
    search.fit(X, y[:160])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    conf = ConformalRegressor(search.best_estimator_, prefit=True).fit(
        df.structure[160:200], y[160:200]
    )
    assert conf.method_ == "normalized"  # the pipeline's last step gives a std
    assert conf.predict_interval(df.structure[200:203])[0].shape == (3,)
    weights = np.ones(160)
    boot = EnsembleRegressor(small_cgcnn(max_epochs=2), n_estimators=2, bootstrap=True)
    boot.fit(df.structure[:160], y[:160], sample_weight=weights)
    assert boot.predict(df.structure[160:170]).shape == (10,)
    with pytest.raises(TypeError, match="make the EnsembleRegressor its last step"):
        EnsembleRegressor(pipe).fit(X, y[:160])
    with pytest.raises(ValueError, match="return_std needs an ensemble of at least 2"):
        EnsembleRegressor(small_cgcnn(max_epochs=1), n_estimators=1).fit(
            df.structure[:40], y[:40]
        ).predict(df.structure[:2], return_std=True)


def test_normalized_conformal_on_an_ensemble_adapts_its_widths(mp1200):
    _, graphs, y = mp1200
    ens = EnsembleRegressor(small_cgcnn(max_epochs=8), n_estimators=3, random_state=0)
    ens.fit(graphs[:400], y[:400])
    conf = ConformalRegressor(ens, prefit=True).fit(graphs[400:800], y[400:800])
    assert conf.method_ == "normalized"
    lower, upper = conf.predict_interval(graphs[800:])
    covered = np.mean((lower <= y[800:]) & (y[800:] <= upper))
    assert 0.84 <= covered <= 0.96, covered
    width = upper - lower
    assert width.max() > 2 * width.min()  # wide where the members disagree
    assert plot_error_vs_std(ens, graphs[800:], y[800:]).axes[0].get_xlabel() == "ensemble std"
    domain = ConformalRegressor(ens, prefit=True, method="domain").fit(graphs[400:800], y[400:800])
    lower, upper = domain.predict_interval(graphs[800:])
    assert 0.84 <= np.mean((lower <= y[800:]) & (y[800:] <= upper)) <= 0.96
    assert not np.allclose(upper - lower, width)  # the distance reshapes the widths


def test_domain_score_is_higher_for_oxides_when_training_saw_no_oxygen(mp1200):
    df, graphs, y = mp1200
    oxide = np.array(["O" in {e.symbol for e in s.composition} for s in df.structure])
    train = np.flatnonzero(~oxide)[:400]
    others, oxides = np.flatnonzero(~oxide)[400:600], np.flatnonzero(oxide)[:200]
    ens = EnsembleRegressor(small_cgcnn(), n_estimators=2, random_state=0)
    ens.fit(graphs[train], y[train])
    in_domain, shifted = ens.applicability(graphs[others]), ens.applicability(graphs[oxides])
    assert np.median(in_domain) < np.median(shifted)
    assert 0.5 < np.median(ens.applicability(graphs[train])) < 1.5  # about 1 in domain


def test_latent_distance_checks_its_input():
    with pytest.raises(ValueError, match="needs more than 5 training crystals, got 5"):
        LatentDistance().fit(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="identical copies"):
        LatentDistance(n_neighbors=2).fit(np.zeros((10, 3)))


def test_mapie_calibrates_a_skcrystal_pipeline_on_structures(mp1200):
    from mapie.regression import SplitConformalRegressor

    df, _, y = mp1200
    X = list(df.structure)
    pipe = Pipeline([("graph", CrystalGraphTransformer()), ("reg", small_cgcnn(max_epochs=5))])
    pipe.fit(X[:300], y[:300])
    mapie = SplitConformalRegressor(pipe, confidence_level=0.9, prefit=True)
    mapie.conformalize(X[300:600], y[300:600])
    predicted, intervals = mapie.predict_interval(X[600:700])
    ours = ConformalRegressor(pipe, prefit=True).fit(X[300:600], y[300:600])
    lower, upper = ours.predict_interval(X[600:700])
    np.testing.assert_allclose(predicted, pipe.predict(X[600:700]), rtol=1e-5)
    # MAPIE's quantile of the same absolute residuals: the same intervals
    np.testing.assert_allclose(intervals[:, 0, 0], lower, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(intervals[:, 1, 0], upper, rtol=1e-4, atol=1e-4)


def test_ensemble_of_distilled_alignn_trains_members_in_parallel(mp1200):
    """Any regressor can be a member: here distilled ALIGNNs on their "shell" graphs,
    trained in two joblib processes; the members' embeddings are the student's."""
    from skcrystal import ALIGNNRegressor, DistilledRegressor

    df, _, y = mp1200
    tiny = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
    student = DistilledRegressor(
        student="alignn", student_params=tiny, max_epochs=1, early_stopping=False
    )
    ens = EnsembleRegressor(student, n_estimators=2, random_state=0, n_jobs=2)
    ens.fit(df.structure[:60], y[:60])
    assert [m.graph_settings_[3] for m in ens.estimators_] == ["shell", "shell"]
    assert ens.estimators_[0].embed(df.structure[60:64]).shape == (4, 16)
    assert np.isfinite(ens.applicability(df.structure[60:64])).all()
    alignn = ALIGNNRegressor(**tiny, max_epochs=1, early_stopping=False, random_state=0)
    assert alignn.fit(df.structure[:30], y[:30]).embed(df.structure[:3]).shape == (3, 16)
