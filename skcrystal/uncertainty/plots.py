"""How well intervals and ensemble spreads describe the errors: curves and their plots."""

from __future__ import annotations

from typing import Any

import numpy as np

from skcrystal.explain import _axes
from skcrystal.uncertainty.conformal import conformal_quantile

#: The nominal coverages of :func:`calibration_curve` by default.
COVERAGES = np.round(np.arange(0.1, 0.96, 0.05), 2)


def calibration_curve(conformal: Any, X: Any, y: Any, coverages: Any = COVERAGES):
    """Nominal against observed coverage of a fitted :class:`ConformalRegressor` on
    crystals ``X`` with targets ``y`` (predicted once, for all coverages).

    Returns
    -------
    coverages : ndarray
        The nominal coverages asked (those the calibration set is large enough for).
    observed : ndarray
        Fraction of the targets inside the interval of each coverage.
    width : ndarray
        Mean interval width at each coverage, in the targets' units.
    """
    coverages = np.asarray(coverages, dtype=float)
    predicted, scale = conformal._predict_with_scale(X)
    y = np.asarray(y, dtype=float).reshape(np.shape(predicted))
    observed, width = [], []
    for coverage in coverages:
        half = conformal_quantile(conformal.scores_, float(coverage)) * scale
        observed.append(float(np.mean(np.abs(y - predicted) <= half)))
        width.append(float(np.mean(2 * half)))  # per crystal, or one width for all
    return coverages, np.array(observed), np.array(width)


def plot_calibration(conformal: Any, X: Any, y: Any, ax: Any = None, *, label: str = ""):
    """Observed against nominal coverage of a fitted :class:`ConformalRegressor`, with
    the diagonal a calibrated model follows.

    Returns
    -------
    matplotlib.figure.Figure
    """
    coverages, observed, _ = calibration_curve(conformal, X, y)
    ax = _axes(ax, (4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="k", lw=0.8)
    ax.plot(coverages, observed, "o-", color="tab:blue", label=label or conformal.method_)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel(f"observed coverage (n = {len(np.ravel(y))})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    ax.figure.tight_layout()
    return ax.figure


def plot_error_vs_std(ensemble: Any, X: Any, y: Any, ax: Any = None, *, n_bins: int = 10):
    """Mean absolute error of crystals binned by the ensemble's standard deviation
    (equal-count bins), against the bins' mean std: the spread is informative where the
    curve rises. The line ``error = std * sqrt(2 / pi)`` is what Gaussian errors of that
    std would give.

    Returns
    -------
    matplotlib.figure.Figure
    """
    mean, std = ensemble.predict(X, return_std=True)
    error = np.abs(np.ravel(y) - np.ravel(mean))
    std = np.ravel(std)
    bins = np.array_split(np.argsort(std), n_bins)
    ax = _axes(ax, (4.5, 4.5))
    centers = [std[b].mean() for b in bins]
    ax.plot(centers, [error[b].mean() for b in bins], "o-", color="tab:blue", label="MAE")
    top = max(centers)
    ax.plot([0, top], [0, top * np.sqrt(2 / np.pi)], color="k", lw=0.8, label="Gaussian")
    ax.set_xlabel("ensemble std")
    ax.set_ylabel("mean absolute error")
    ax.legend(loc="upper left")
    ax.figure.tight_layout()
    return ax.figure
