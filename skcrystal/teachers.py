"""Distillation teachers, and how much a teacher's embeddings know about a property.

A teacher follows :class:`~skcrystal.estimators.teachers.Teacher`: anything that gives
every atom of a crystal a vector. skcrystal has two kinds: a pretrained CrysGNN
(:class:`CrysGNNTeacher`: the bundled "crysgnn-mp", the authors' "crysgnn-800k" of
:func:`crysgnn_800k`, a file, a fitted pretrainer) and CHGNet ("chgnet",
:class:`CHGNetTeacher`, behind the optional extra ``skcrystal[chgnet]``).
:func:`probe_teacher` measures how much a teacher's embeddings know about a property
before it is distilled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcrystal.estimators.chgnet_teacher import CHGNetTeacher
from skcrystal.estimators.crysgnn import CRYSGNN_800K_SHA256, CRYSGNN_800K_URL, crysgnn_800k
from skcrystal.estimators.teachers import (
    TEACHERS,
    CrysGNNTeacher,
    Teacher,
    check_node_embeddings,
    get_teacher,
    register_teacher,
)
from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer
from skcrystal.graphs.inputs import as_item_list

__all__ = [
    "CRYSGNN_800K_SHA256",
    "CRYSGNN_800K_URL",
    "TEACHERS",
    "CHGNetTeacher",
    "CrysGNNTeacher",
    "Teacher",
    "crysgnn_800k",
    "crystal_embeddings",
    "get_teacher",
    "probe_teacher",
    "register_teacher",
]

#: Ridge penalties tried (chosen inside each training fold by leave-one-out).
RIDGE_PENALTIES = np.logspace(-3, 3, 13)


def _probes(random_state: int) -> dict[str, Any]:
    return {
        "ridge": make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_PENALTIES)),
        "gradient boosting": HistGradientBoostingRegressor(random_state=random_state),
    }


def crystal_embeddings(teacher: Any, crystals: Any, graphs: CrystalGraphs) -> np.ndarray:
    """The mean of a teacher's node embeddings over each crystal's atoms."""
    teacher = get_teacher(teacher)
    nodes = check_node_embeddings(teacher, teacher.node_embeddings(crystals, graphs), graphs)
    sums = np.add.reduceat(nodes.astype(np.float64), graphs.node_ptr[:-1], axis=0)
    return sums / np.diff(graphs.node_ptr)[:, None]


def probe_teacher(
    teacher: Any, X: Any, y: Any, *, cv: int = 5, random_state: int = 0
) -> pd.DataFrame:
    """Cross-validated error of probes fitted on a teacher's crystal embeddings.

    Each crystal's embedding is the mean of the teacher's node embeddings over its atoms.
    Two probes are fitted on it in ``cv`` folds (shuffled, seeded): ridge regression on
    the standardised embedding (penalty chosen inside each training fold) and
    scikit-learn's histogram gradient boosting. The controls: the same probes on the
    embeddings of the teacher's untrained twin (same network, fresh weights: what the
    architecture and the input features alone give) and the mean of the training
    targets. A teacher worth distilling beats both clearly.

    Parameters
    ----------
    teacher : str, path, CrysGNNPretrainer or Teacher
        As :func:`get_teacher` takes it ("chgnet", "crysgnn-mp", ...).
    X : sequence of crystals, or CrystalGraphs
        Structures, files or ASE Atoms; graphs only for a teacher that embeds graphs.
    y : array-like of shape (n_crystals,)
    cv : int, default=5
    random_state : int, default=0
        Seeds the folds, the untrained twin and the boosting.

    Returns
    -------
    pandas.DataFrame
        One row per (embedding, probe): ``embedding`` ("teacher", "untrained twin",
        "none"), ``probe`` ("ridge", "gradient boosting", "mean of the targets"),
        ``mae`` (mean over the folds), ``mae_std`` (across folds) and ``teacher`` (its
        name).

    Examples
    --------
    >>> from skcrystal.datasets import load_mp_formation_energy
    >>> df = load_mp_formation_energy(sample=120, random_state=0)  # doctest: +SKIP
    >>> probe_teacher("crysgnn-mp", df.structure, df.e_form, cv=3)  # doctest: +SKIP
    """
    teacher = get_teacher(teacher)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y must be one property per crystal (1-D), got shape {y.shape}")
    if isinstance(X, CrystalGraphs):
        crystals, graphs = None, X
    else:
        crystals = as_item_list(X)
        builder = teacher.graph_builder
        builder = CrystalGraphTransformer() if builder is None else clone(builder)
        graphs = builder.set_params(symmetry=False).transform(crystals)
    if len(graphs) != len(y):
        raise ValueError(f"X has {len(graphs)} crystals and y {len(y)} values")
    folds = KFold(cv, shuffle=True, random_state=random_state)

    def scores(model, features) -> tuple[float, float]:
        mae = -cross_val_score(model, features, y, cv=folds, scoring="neg_mean_absolute_error")
        return float(mae.mean()), float(mae.std())

    rows = []
    arms = [("teacher", teacher), ("untrained twin", teacher.untrained(random_state))]
    for embedding, model in arms:
        features = crystal_embeddings(model, crystals, graphs)
        for probe, estimator in _probes(random_state).items():
            rows.append((embedding, probe, *scores(estimator, features)))
    rows.append(("none", "mean of the targets", *scores(DummyRegressor(), np.zeros((len(y), 1)))))
    table = pd.DataFrame(rows, columns=["embedding", "probe", "mae", "mae_std"])
    table["teacher"] = teacher.name
    return table
