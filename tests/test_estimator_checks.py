"""scikit-learn conventions of the estimators: tags, repr, fitted checks (issue 15)."""

import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from skcrystal import (
    ALIGNNRegressor,
    CGCNNRegressor,
    CompositionTransformer,
    CrysAEPretrainer,
    CrysGNNRegressor,
    CrystalGraphTransformer,
    CrysXPPRegressor,
    DistilledRegressor,
    ElemNetRegressor,
    GATGNNRegressor,
    MEGNetRegressor,
)
from skcrystal.hub import load_model

FAST = dict(max_epochs=1, batch_size=32, early_stopping=False, random_state=0)


@pytest.fixture(scope="module")
def data(mp_subset):
    crystals = mp_subset.structure.iloc[:40].tolist()
    return CrystalGraphTransformer().transform(crystals), mp_subset.e_form.to_numpy()[:40]


REGRESSORS = [
    CGCNNRegressor,
    CrysXPPRegressor,
    DistilledRegressor,
    ALIGNNRegressor,
    GATGNNRegressor,
    MEGNetRegressor,
    ElemNetRegressor,
    CrysGNNRegressor,
]


@pytest.mark.parametrize("cls", REGRESSORS)
def test_regressors_say_they_take_one_or_several_targets(cls):
    tags = get_tags(cls())
    assert tags.estimator_type == "regressor"
    assert tags.target_tags.multi_output and tags.target_tags.single_output
    assert repr(cls()) == f"{cls.__name__}()"


@pytest.mark.parametrize("cls", [CrystalGraphTransformer, CompositionTransformer])
def test_graph_transformers_need_no_fit_and_keep_their_output(cls):
    tags = get_tags(cls())
    assert tags.requires_fit is False and tags.input_tags.two_d_array is False
    transformer = cls()
    assert transformer.set_output(transform="pandas") is transformer


def test_repr_shows_the_parameters_that_differ_from_the_defaults():
    assert repr(CGCNNRegressor(lr=1e-2)) == "CGCNNRegressor(lr=0.01)"
    assert repr(CGCNNRegressor()) == "CGCNNRegressor()"
    assert repr(CGCNNRegressor(n_conv=2, nonnegative="clip", optimizer__weight_decay=1e-5)) == (
        "CGCNNRegressor(n_conv=2, nonnegative='clip', optimizer__weight_decay=1e-05)"
    )
    assert repr(CrysXPPRegressor(l1=0.1)) == "CrysXPPRegressor(l1=0.1)"
    assert repr(DistilledRegressor(alpha=0.2)) == "DistilledRegressor(alpha=0.2)"
    assert repr(CrysAEPretrainer(max_pairs=None)) == "CrysAEPretrainer(max_pairs=None)"


def test_check_is_fitted_follows_fit_clone_and_load(data):
    graphs, y = data
    reg = CGCNNRegressor(**FAST)
    with pytest.raises(NotFittedError):
        check_is_fitted(reg)
    reg.fit(graphs, y)
    check_is_fitted(reg)
    assert reg.__sklearn_is_fitted__()
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(reg))
    for name in ("cgcnn-mp-formation-energy", "crysxpp-mp-band-gap", "crysae-mp"):
        check_is_fitted(load_model(name))
    ae = CrysAEPretrainer(**FAST)
    with pytest.raises(NotFittedError):
        check_is_fitted(ae)
    check_is_fitted(ae.fit(graphs))


def test_mapie_sees_a_fitted_model_as_fitted(data):
    """MAPIE's prefit check warned "Estimator does not appear fitted" on fitted models."""
    import warnings

    from mapie.utils import check_sklearn_user_model_is_fitted

    graphs, y = data
    reg = CGCNNRegressor(**FAST)
    with pytest.warns(UserWarning, match="does not appear fitted"):
        check_sklearn_user_model_is_fitted(reg)  # not fitted: MAPIE says so
    assert not hasattr(reg, "is_fitted")
    reg.fit(graphs, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sklearn_user_model_is_fitted(reg)
        check_sklearn_user_model_is_fitted(load_model("crysxpp-mp-band-gap"))
    assert reg.is_fitted and not hasattr(clone(reg), "is_fitted")
