"""Split conformal prediction intervals around any skcrystal regressor or ensemble."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from skcrystal.graphs import CrystalGraphs, GraphStore

#: The nonconformity scores of :class:`ConformalRegressor`.
METHODS = ("auto", "absolute", "normalized", "domain")


def _has_std(estimator: Any) -> bool:
    """Whether ``estimator.predict`` takes ``return_std`` (a Pipeline passes it on to its
    last step)."""
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return "return_std" in inspect.signature(estimator.predict).parameters


def _is_fitted(estimator: Any) -> bool:
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def _take(X: Any, rows: np.ndarray) -> Any:
    if isinstance(X, (CrystalGraphs, GraphStore)):
        return X[rows]
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    return [X[i] for i in rows]


def conformal_quantile(scores: np.ndarray, coverage: float) -> np.ndarray:
    """The ``ceil((n + 1) coverage)``-th smallest of ``n`` calibration scores (per column).

    With calibration and new crystals exchangeable, an interval of this half-width holds
    the new crystal's target with probability at least ``coverage`` (Vovk et al. 2005;
    Lei et al., JASA 2018).

    Raises
    ------
    ValueError
        When ``n`` is too small: ``(n + 1) coverage > n``, i.e. fewer than
        ``coverage / (1 - coverage)`` calibration crystals.
    """
    if not isinstance(coverage, numbers.Real) or not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage!r}")
    n = len(scores)
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        needed = math.ceil(coverage / (1 - coverage))
        raise ValueError(
            f"{n} calibration crystals are too few for coverage={coverage}: it needs at "
            f"least {needed} (more calibration crystals, or a lower coverage)"
        )
    return np.sort(scores, axis=0)[rank - 1]


class ConformalRegressor(RegressorMixin, BaseEstimator):
    """Prediction intervals with a coverage guarantee, from crystals held out of training.

    Split conformal prediction (Papadopoulos et al. 2002; Lei et al., JASA 2018): the
    absolute errors of the fitted model on calibration crystals that took no part in
    its training give, through :func:`conformal_quantile`, the half-width of intervals
    that cover the targets of new crystals with the probability asked, *on average over
    crystals exchangeable with the calibration set*. Normalised by an ensemble's
    standard deviation (``method="normalized"``), the scores give intervals wide where
    the members disagree and narrow where they agree, with the same guarantee.

    Parameters
    ----------
    estimator : skcrystal regressor, EnsembleRegressor or Pipeline ending in one
    prefit : bool, default=False
        True: ``estimator`` is fitted, and every crystal given to :meth:`fit` calibrates.
        False: :meth:`fit` trains a clone on ``1 - calibration_fraction`` of the crystals
        and calibrates on the rest (drawn at random with ``random_state``).
    calibration_fraction : float, default=0.2
    method : {"auto", "absolute", "normalized", "domain"}, default="auto"
        "absolute": scores ``|y - y_hat|``, intervals of one width. "normalized": scores
        ``|y - y_hat| / std``, intervals ``y_hat +- q std``; needs an estimator whose
        ``predict`` takes ``return_std`` (an :class:`EnsembleRegressor`). "domain":
        scores ``|y - y_hat| / (std * a)`` with ``a`` the estimator's
        ``applicability`` score, so that intervals also widen with the distance to the
        training crystals (an :class:`EnsembleRegressor` again). "auto": "normalized"
        when the estimator gives a std, else "absolute".
    coverage : float, default=0.9
        The default coverage of :meth:`predict_interval`.
    random_state : int, RandomState or None, default=None

    Attributes
    ----------
    estimator_ : the fitted estimator
    method_ : str
        The method used: "absolute", "normalized" or "domain".
    scores_ : ndarray of shape (n_calibration,) or (n_calibration, n_properties)
    calibration_indices_ : ndarray or None
        Rows of the ``X`` given to :meth:`fit` that calibrated (None with ``prefit``:
        all of them).

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CGCNNRegressor
    >>> X = [Structure(Lattice.cubic(3.8 + 0.05 * i), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...      for i in range(20)]
    >>> y = [0.05 * i for i in range(20)]
    >>> model = CGCNNRegressor(max_epochs=2, early_stopping=False, random_state=0)
    >>> conf = ConformalRegressor(model, calibration_fraction=0.5, random_state=0).fit(X, y)
    >>> lower, upper = conf.predict_interval(X[:3], coverage=0.8)
    >>> bool((lower < upper).all())
    True
    """

    def __init__(
        self,
        estimator: Any,
        *,
        prefit: bool = False,
        calibration_fraction: float = 0.2,
        method: str = "auto",
        coverage: float = 0.9,
        random_state: Any = None,
    ) -> None:
        self.estimator = estimator
        self.prefit = prefit
        self.calibration_fraction = calibration_fraction
        self.method = method
        self.coverage = coverage
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any, **fit_params):
        """Calibrate on ``X, y`` (``prefit``), or train on part of them and calibrate on
        the rest; ``fit_params`` go to the estimator's ``fit``."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        y = np.asarray(y, dtype=float)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} crystals but y has {len(y)} rows")
        if self.prefit:
            if not _is_fitted(self.estimator):
                raise ValueError(
                    "prefit=True needs a fitted estimator; fit it on other crystals first, "
                    "or use prefit=False to train and calibrate in one go"
                )
            if fit_params:
                raise TypeError(f"prefit=True trains nothing: got fit parameters {fit_params}")
            self.estimator_ = self.estimator
            self.calibration_indices_ = None
            X_cal, y_cal = X, y
        else:
            fraction = self.calibration_fraction
            if not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
                raise ValueError(f"calibration_fraction must be in (0, 1), got {fraction!r}")
            order = check_random_state(self.random_state).permutation(len(y))
            n_cal = round(fraction * len(y))
            if n_cal == 0 or n_cal == len(y):
                raise ValueError(
                    f"calibration_fraction={fraction} of {len(y)} crystals leaves no "
                    "crystal to calibrate or to train on"
                )
            train, self.calibration_indices_ = np.sort(order[n_cal:]), np.sort(order[:n_cal])
            self.estimator_ = clone(self.estimator).fit(_take(X, train), y[train], **fit_params)
            X_cal, y_cal = _take(X, self.calibration_indices_), y[self.calibration_indices_]
        self.method_ = self._resolve_method()
        if self.method_ == "absolute":
            predicted, scale = np.asarray(self.estimator_.predict(X_cal)), 1.0
        else:
            predicted, std = self.estimator_.predict(X_cal, return_std=True)
            # members that agree exactly would give a zero width: no std counts as less
            # than a millionth of the calibration crystals' median std
            self.std_floor_ = 1e-6 * float(np.median(std)) or np.finfo(float).eps
            scale = self._scale(X_cal, std)
        residuals = np.abs(y_cal.reshape(predicted.shape) - predicted)
        self.scores_ = residuals / scale
        conformal_quantile(self.scores_, self.coverage)  # enough crystals for the default
        return self

    def _resolve_method(self) -> str:
        has_std = _has_std(self.estimator_)
        name = type(self.estimator_).__name__
        if self.method in ("normalized", "domain") and not has_std:
            raise ValueError(
                f"method={self.method!r} needs an estimator whose predict gives a std (an "
                f"EnsembleRegressor); {name} gives none"
            )
        if self.method == "domain" and not hasattr(self.estimator_, "applicability"):
            raise ValueError(f'method="domain" needs an applicability score; {name} has none')
        if self.method == "auto":
            return "normalized" if has_std else "absolute"
        return self.method

    def _scale(self, X: Any, std: np.ndarray) -> np.ndarray:
        scale = np.maximum(std, self.std_floor_)
        if self.method_ == "domain":
            score = self.estimator_.applicability(X)
            scale = scale * score.reshape(len(score), *[1] * (scale.ndim - 1))
        return scale

    def _predict_with_scale(self, X: Any) -> tuple[np.ndarray, np.ndarray | float]:
        """Point predictions and the per-crystal scale the scores are divided by."""
        if self.method_ == "absolute":
            return np.asarray(self.estimator_.predict(X)), 1.0
        mean, std = self.estimator_.predict(X, return_std=True)
        return mean, self._scale(X, std)

    def predict(self, X: Any) -> np.ndarray:
        """The estimator's point predictions."""
        check_is_fitted(self, "scores_")
        return np.asarray(self.estimator_.predict(X))

    def predict_interval(self, X: Any, coverage: float | None = None):
        """Lower and upper bounds that hold the targets with probability ``coverage``
        (default: the ``coverage`` parameter).

        Bounds below 0 are raised to 0 when the regressor was trained with
        ``nonnegative`` on (its targets cannot be negative, so coverage is unchanged).

        Returns
        -------
        lower, upper : ndarrays of the predictions' shape
        """
        check_is_fitted(self, "scores_")
        coverage = self.coverage if coverage is None else coverage
        half_width = conformal_quantile(self.scores_, coverage)
        predicted, scale = self._predict_with_scale(X)
        lower, upper = predicted - half_width * scale, predicted + half_width * scale
        if _nonnegative(self.estimator_):
            lower = np.maximum(lower, 0.0)
        return lower, upper


def _nonnegative(estimator: Any) -> bool:
    """Whether the (last step of the, first member of the) estimator clips at 0."""
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    if hasattr(estimator, "estimators_"):
        estimator = estimator.estimators_[0]
    return bool(getattr(estimator, "nonnegative", False))
