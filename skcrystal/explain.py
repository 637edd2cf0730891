"""Plots of what a fitted model learnt: feature importances of the CrysXPP selector."""

from __future__ import annotations

from typing import Any


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
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4 if not per_column else 12))
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
