"""Plots of fitted models: parity with MAE, learning curves, CrysXPP feature importances."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_importances", "plot_learning_curve", "plot_parity"]


def _axes(ax: Any, size: tuple[float, float]):
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)[1] if ax is None else ax


def plot_parity(y_true: Any, y_pred: Any, ax: Any = None, *, units: str = "", label: str = ""):
    """Predicted against true values, with the y = x line and the MAE in the title.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    ax : matplotlib Axes, optional
    units : str, optional
        Appended to the axis labels and the MAE (e.g. "eV/atom").
    label : str, optional
        What is plotted (model, data), for the title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> figure = plot_parity([0.0, 1.0, 2.0], [0.1, 0.9, 2.3], units="eV")
    >>> figure.axes[0].get_title()
    'MAE 0.167 eV (n = 3)'
    """
    y_true, y_pred = np.ravel(y_true), np.ravel(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}")
    ax = _axes(ax, (4.5, 4.5))
    mae = float(np.abs(y_pred - y_true).mean())
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], color="k", lw=0.8)
    ax.scatter(y_true, y_pred, s=4, alpha=0.4, color="tab:blue", rasterized=True)
    suffix = f" ({units})" if units else ""
    ax.set_xlabel(f"true{suffix}")
    ax.set_ylabel(f"predicted{suffix}")
    title = f"MAE {mae:.3g}{' ' + units if units else ''} (n = {len(y_true)})"
    ax.set_title(f"{label}: {title}" if label else title)
    ax.set_aspect("equal")
    ax.figure.tight_layout()
    return ax.figure


def plot_learning_curve(estimator: Any, ax: Any = None):
    """Training and validation loss per epoch from a fitted estimator's skorch history.

    Also ``valid_mae`` on a second axis when recorded, and a marker at the kept epoch
    (lowest ``valid_mae``, else lowest ``valid_loss``).

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CGCNNRegressor
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2, 4.3, 4.4)]
    >>> reg = CGCNNRegressor(max_epochs=3, validation_fraction=0.34, random_state=0)
    >>> figure = plot_learning_curve(reg.fit(crystals, [1, 2, 3, 4, 5, 6]))
    >>> [line.get_label() for line in figure.axes[0].get_lines()][:2]
    ['train_loss', 'valid_loss']
    >>> figure.axes[1].get_ylabel()  # valid_mae on a second axis
    'valid_mae (target units)'
    """
    history = estimator.history_
    epochs = history[:, "epoch"]
    ax = _axes(ax, (6, 4))
    for key in ("train_loss", "valid_loss"):
        if key in history[-1]:
            ax.plot(epochs, history[:, key], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (standardised units for regressors)")
    ax.set_yscale("log")
    monitor = "valid_mae" if "valid_mae" in history[-1] else "valid_loss"
    if monitor in history[-1]:
        best = int(np.argmin(history[:, monitor]))
        ax.axvline(epochs[best], color="grey", ls=":", lw=1, label="_kept epoch")
        if monitor == "valid_mae":
            mae_ax = ax.twinx()
            mae_ax.plot(epochs, history[:, "valid_mae"], color="tab:red", lw=1)
            mae_ax.set_ylabel("valid_mae (target units)", color="tab:red")
    ax.legend(loc="upper right")
    ax.set_title(f"{type(estimator).__name__}: learning curve")
    ax.figure.tight_layout()
    return ax.figure


def plot_importances(estimator: Any, ax: Any = None, per_column: bool = False):
    """Bar chart of a fitted regressor's feature importances.

    Parameters
    ----------
    estimator : fitted CrysXPPRegressor
        Anything with ``explain()`` (per element property) and ``feature_importances_``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    per_column : bool, default=False
        One bar per atom feature column instead of one per element property.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CrysAEPretrainer, CrysXPPRegressor
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2)]
    >>> ae = CrysAEPretrainer(max_epochs=1, early_stopping=False).fit(crystals)
    >>> reg = CrysXPPRegressor(encoder=ae, max_epochs=1, early_stopping=False)
    >>> figure = plot_importances(reg.fit(crystals, [1.0, 2.0, 3.0, 4.0]))
    >>> len(figure.axes[0].patches)  # one bar per element property
    9
    """
    ax = _axes(ax, (6, 4 if not per_column else 12))
    if per_column:
        names = list(estimator.graph_builder_.fit().atom_feature_table_.feature_names)
        values = list(estimator.feature_importances_)
        label = "|mask| of the column"
    else:
        table = estimator.explain().iloc[::-1]  # most important at the top
        names, values = list(table.index), list(table["importance"])
        label = "sum of |mask| over the property's columns"
    ax.barh(names, values, color="tab:green")
    ax.set_xlabel(label)
    ax.set_title(f"{type(estimator).__name__}: feature importances")
    ax.figure.tight_layout()
    return ax.figure
