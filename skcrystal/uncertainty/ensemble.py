"""Deep ensembles: the same regressor trained M times from different seeds."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from skcrystal.graphs import CrystalGraphs
from skcrystal.uncertainty.domain import LatentDistance


def _fit_member(estimator, graphs: CrystalGraphs, y, rows, fit_params: dict):
    if rows is None:
        return estimator.fit(graphs, y, **fit_params)
    params = dict(fit_params)
    if params.get("sample_weight") is not None:
        params["sample_weight"] = np.asarray(params["sample_weight"])[rows]
    return estimator.fit(graphs[rows], np.asarray(y)[rows], **params)


class EnsembleRegressor(RegressorMixin, BaseEstimator):
    """``n_estimators`` copies of a skcrystal regressor, differing only in their seed (and,
    with ``bootstrap``, in the crystals they train on); their mean is the prediction and
    their spread the uncertainty (a deep ensemble, Lakshminarayanan et al., NeurIPS 2017).

    The crystals are turned into graphs once, by the estimator's graph builder, and every
    member trains on those graphs.

    Parameters
    ----------
    estimator : skcrystal regressor
        An unfitted CGCNNRegressor, ALIGNNRegressor, DistilledRegressor... cloned for
        each member; member ``i`` gets ``random_state=seeds_[i]``.
    n_estimators : int, default=5
        Members; at least 2 for ``return_std``.
    bootstrap : bool, default=False
        Train each member on a bootstrap sample of the crystals (drawn with replacement,
        as many as given) instead of all of them. Deep ensembles need no bootstrap: the
        seeds alone make the members differ.
    random_state : int, RandomState or None, default=None
        Draws the members' seeds and bootstrap samples.
    n_jobs : int or None, default=None
        Members trained at once through joblib (``None``: one after another). Each
        process uses torch's threads, so on a machine with few cores one after another
        is as fast.
    n_neighbors : int, default=5
        Neighbours of :class:`LatentDistance` in :meth:`applicability`.

    Attributes
    ----------
    estimators_ : list of fitted regressors
    seeds_ : ndarray of shape (n_estimators,)
    domain_ : list of LatentDistance, one per member, fitted on the training crystals'
        embeddings.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CGCNNRegressor
    >>> X = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...      for a in (3.9, 4.0, 4.1, 4.2, 4.3, 4.4)]
    >>> y = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    >>> member = CGCNNRegressor(max_epochs=2, early_stopping=False, batch_size=3)
    >>> ens = EnsembleRegressor(member, n_estimators=3, random_state=0).fit(X, y)
    >>> mean, std = ens.predict(X[:2], return_std=True)
    >>> mean.shape, bool((std > 0).all())
    ((2,), True)
    """

    def __init__(
        self,
        estimator: Any,
        n_estimators: int = 5,
        *,
        bootstrap: bool = False,
        random_state: Any = None,
        n_jobs: int | None = None,
        n_neighbors: int = 5,
    ) -> None:
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.bootstrap = bootstrap
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.n_neighbors = n_neighbors

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any, **fit_params):
        """Fit every member on crystals ``X`` and targets ``y``.

        ``fit_params`` (``validation_data``, ``sample_weight``...) go to every member's
        ``fit``; with ``bootstrap``, ``sample_weight`` follows the drawn crystals.
        """
        if not hasattr(self.estimator, "default_graph_builder"):
            raise TypeError(
                f"EnsembleRegressor needs a skcrystal regressor, got "
                f"{type(self.estimator).__name__}; to ensemble inside a Pipeline, make the "
                "EnsembleRegressor its last step"
            )
        if not isinstance(self.n_estimators, numbers.Integral) or self.n_estimators < 1:
            raise ValueError(f"n_estimators must be a positive integer, got {self.n_estimators!r}")
        graphs = self.estimator._to_graphs(X)  # built once, by the members' graph builder
        if len(graphs) != len(y):
            raise ValueError(f"X has {len(graphs)} crystals but y has {len(y)} rows")
        rng = check_random_state(self.random_state)
        self.seeds_ = rng.randint(np.iinfo(np.int32).max, size=self.n_estimators)
        rows = [
            rng.randint(len(graphs), size=len(graphs)) if self.bootstrap else None
            for _ in range(self.n_estimators)
        ]
        members = [clone(self.estimator).set_params(random_state=int(s)) for s in self.seeds_]
        self.estimators_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_member)(member, graphs, y, r, fit_params)
            for member, r in zip(members, rows, strict=True)
        )
        self.domain_ = [
            LatentDistance(self.n_neighbors).fit(member.embed(graphs))
            for member in self.estimators_
        ]
        return self

    def _member_graphs(self, X: Any) -> CrystalGraphs:
        check_is_fitted(self, "estimators_")
        return self.estimators_[0]._to_graphs(X)

    def predict(self, X: Any, return_std: bool = False):
        """The members' mean prediction and, with ``return_std``, their standard
        deviation (``ddof=1``), both in the targets' units.

        Returns
        -------
        mean : ndarray of shape (n_crystals,) or (n_crystals, n_properties)
        std : ndarray of the same shape, only with ``return_std=True``
        """
        graphs = self._member_graphs(X)
        predictions = np.stack([member.predict(graphs) for member in self.estimators_])
        mean = predictions.mean(axis=0)
        if not return_std:
            return mean
        if len(self.estimators_) < 2:
            raise ValueError("return_std needs an ensemble of at least 2 members")
        return mean, predictions.std(axis=0, ddof=1)

    def applicability(self, X: Any) -> np.ndarray:
        """How far each crystal lies from the training crystals in the members' latent
        spaces: :meth:`LatentDistance.score` averaged over the members (about 1 for a
        crystal as typical as a training crystal; larger further out of domain).

        Returns
        -------
        ndarray of shape (n_crystals,)
        """
        graphs = self._member_graphs(X)
        return np.mean(
            [
                domain.score(member.embed(graphs))
                for member, domain in zip(self.estimators_, self.domain_, strict=True)
            ],
            axis=0,
        )
