"""Plots of fitted models (parity with MAE, learning curves) and CrysXPP importances."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "UNSELECTIVE_UNIFORMITY",
    "MaskNotSelectiveWarning",
    "mask_uniformity",
    "plot_importances",
    "plot_learning_curve",
    "plot_parity",
    "property_importances",
]

#: Above this :func:`mask_uniformity`, a feature mask does not select: importances derived
#: from it mostly reflect its initial value, and :func:`property_importances` warns.
UNSELECTIVE_UNIFORMITY = 0.9


class MaskNotSelectiveWarning(UserWarning):
    """The feature mask is close to uniform, so its importances say little."""


def mask_uniformity(importances: Any) -> float:
    """How close a feature mask is to uniform: 1 for equal entries, near 0 for one entry.

    The exponential of the Shannon entropy of ``|mask| / sum(|mask|)`` (the "effective
    number" of columns the mask lets through), divided by the number of columns.

    Parameters
    ----------
    importances : array-like of shape (n_columns,)
        ``|mask|`` per atom feature column.

    Returns
    -------
    float in (0, 1]

    Examples
    --------
    >>> mask_uniformity([1.0, 1.0, 1.0, 1.0])
    1.0
    >>> round(mask_uniformity([1.0, 0.0, 0.0, 0.0]), 2)
    0.25
    """
    values = np.abs(np.asarray(importances, dtype=np.float64))
    total = values.sum()
    if len(values) == 0 or total <= 0:
        raise ValueError("the mask has no non-zero entry to measure")
    share = values[values > 0] / total
    return float(np.exp(-(share * np.log(share)).sum()) / len(values))


def property_importances(
    importances: Any, properties: Sequence[str], weights: Any = None
) -> pd.DataFrame:
    """Importance of each element property from a feature mask, independent of its width.

    A property encoded one-hot on many columns (group: 19, period: 7) must not rank high
    only because its columns are many, as a sum over columns would. The importance of a
    property is the mean ``|mask|`` over its columns; with ``weights`` (for example the
    fraction of atoms of some crystals that have each column, see
    :meth:`~skcrystal.estimators.CrysXPPRegressor.explain`), the weighted mean, that is the
    average gate the mask applies to that property for those atoms.

    Parameters
    ----------
    importances : array-like of shape (n_columns,)
        ``|mask|`` per atom feature column.
    properties : sequence of str, length n_columns
        The element property each column encodes.
    weights : array-like of shape (n_columns,), optional
        Non-negative column weights. A property whose columns all have weight 0 (no atom
        has a value for it) gets importance NaN.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``property``, sorted by decreasing ``importance``, with ``n_columns``
        and ``total`` (the sum of ``|mask|`` over the columns, which grows with their
        number). ``attrs["uniformity"]`` is :func:`mask_uniformity` of the whole mask, a
        property of the model whatever the weights.

    Warns
    -----
    MaskNotSelectiveWarning
        When the uniformity exceeds :data:`UNSELECTIVE_UNIFORMITY`: the mask barely moved
        from its uniform start (an unpenalised or weakly penalised model), so the ranking
        is noise; fit with a larger ``l1``.

    Examples
    --------
    >>> table = property_importances([0.9, 0.1, 0.2, 0.0], ["group", "group", "period", "block"])
    >>> table["importance"].round(2).tolist(), table.index.tolist()
    ([0.5, 0.2, 0.0], ['group', 'period', 'block'])
    >>> round(table.attrs["uniformity"], 2)
    0.51
    """
    values = np.abs(np.asarray(importances, dtype=np.float64))
    properties = [str(p) for p in properties]
    if len(properties) != len(values):
        raise ValueError(f"properties has {len(properties)} entries for {len(values)} columns")
    column_weights = np.ones(len(values)) if weights is None else np.asarray(weights, float)
    if column_weights.shape != values.shape or (column_weights < 0).any():
        raise ValueError(f"weights must be {len(values)} non-negative numbers, one per column")
    frame = pd.DataFrame(
        {"property": properties, "weighted": values * column_weights, "w": column_weights}
    )
    frame["mask"] = values
    grouped = frame.groupby("property", sort=False)
    sums = grouped[["weighted", "w"]].sum()
    table = pd.DataFrame(
        {
            "importance": (sums["weighted"] / sums["w"].where(sums["w"] > 0)).astype(float),
            "n_columns": grouped.size(),
            "total": grouped["mask"].sum(),
        }
    ).sort_values("importance", ascending=False, kind="stable", na_position="last")
    table.attrs["uniformity"] = mask_uniformity(values)
    if table.attrs["uniformity"] > UNSELECTIVE_UNIFORMITY:
        warnings.warn(
            f"the feature mask is nearly uniform (uniformity {table.attrs['uniformity']:.2f}, "
            f"above {UNSELECTIVE_UNIFORMITY}): its importances say little about the element "
            "properties; fit with a larger l1 penalty for a selective mask",
            MaskNotSelectiveWarning,
            stacklevel=2,
        )
    return table


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
        table = estimator.explain()
        uniformity = table.attrs.get("uniformity")
        table = table.iloc[::-1]  # most important at the top
        names, values = list(table.index), list(table["importance"])
        label = "mean |mask| of the property's columns"
        if uniformity is not None:
            label += f"\n(mask uniformity {uniformity:.2f}; 1: selects nothing)"
    ax.barh(names, values, color="tab:green")
    ax.set_xlabel(label)
    ax.set_title(f"{type(estimator).__name__}: feature importances")
    ax.figure.tight_layout()
    return ax.figure
