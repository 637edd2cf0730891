"""Matbench v0.1 runner: the community benchmark protocol for any skcrystal estimator.

Matbench (Dunn et al., npj Comput. Mater. 6, 138 (2020)) fixes, for each task, five
train/test folds. A model is fitted on each training fold only (any tuning must be nested
inside it, e.g. a ``GridSearchCV`` passed as the estimator), predicts the test fold, and
the predictions are recorded per fold. :func:`run_matbench` does this for the structure
regression tasks, with the folds of the official ``matbench_v0.1_validation.json``, and
writes a results file in the layout of matbench's (``tasks -> task -> results -> fold_k ->
data / scores``).

The ``matbench`` package itself pins old scikit-learn and scipy versions, so it is not a
dependency. Its fold file is read from an installed copy
(``pip install --no-deps matbench``), a path, or a checksum-verified download. The data
are matminer's: ``<data_home>/<task>.json.gz`` as matminer stores it, or
:func:`skcrystal.datasets.load_matminer_dataset` (matminer downloads them).
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from skcrystal.datasets import get_cache_dir, get_data_home

__all__ = ["MATBENCH_V01_TASKS", "MatbenchTask", "run_matbench"]

#: The structure regression tasks of Matbench v0.1: target column and unit.
MATBENCH_V01_TASKS = {
    "matbench_jdft2d": ("exfoliation_en", "meV/atom"),
    "matbench_phonons": ("last phdos peak", "cm^-1"),
    "matbench_dielectric": ("n", "unitless"),
    "matbench_log_gvrh": ("log10(G_VRH)", "log10(GPa)"),
    "matbench_log_kvrh": ("log10(K_VRH)", "log10(GPa)"),
    "matbench_perovskites": ("e_form", "eV/unit cell"),
    "matbench_mp_gap": ("gap pbe", "eV"),
    "matbench_mp_e_form": ("e_form", "eV/atom"),
}
_CLASSIFICATION = {"matbench_mp_is_metal", "matbench_expt_is_metal", "matbench_glass"}
#: The fold file of the ``matbench`` package (v0.6 wheel on PyPI), by sha256.
VALIDATION_SHA256 = "94c17bc3dac32c67d33d69289927a5fec174497e74bbc47293e23d3d147e9a6d"
VALIDATION_URL = (
    "https://raw.githubusercontent.com/materialsproject/matbench/v0.6/matbench/"
    "matbench_v0.1_validation.json"
)


def _validation_file(validation: str | os.PathLike | None) -> Path:
    if validation is not None:
        return Path(validation)
    try:
        packaged = importlib.resources.files("matbench") / "matbench_v0.1_validation.json"
        if packaged.is_file():
            return Path(str(packaged))
    except ModuleNotFoundError:
        pass
    import pooch

    try:
        return Path(
            pooch.retrieve(VALIDATION_URL, f"sha256:{VALIDATION_SHA256}", path=get_cache_dir())
        )
    except Exception as err:
        raise OSError(
            f"the Matbench fold file is not available ({type(err).__name__}: {err}): "
            "`pip install --no-deps matbench` or pass validation=<matbench_v0.1_validation.json>"
        ) from None


def _read_matminer_json(path: Path) -> pd.DataFrame:
    """A DataFrame stored by matminer (``store_dataframe_as_json``, orient "split")."""
    from monty.json import MontyDecoder

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        stored = json.load(f, cls=MontyDecoder)
    return pd.DataFrame(stored["data"], columns=stored["columns"], index=stored["index"])


def _load_task_data(task: str, data_home: Path) -> pd.DataFrame:
    """The task's structures and target, indexed by Matbench ids (``mb-<task>-<n>``)."""
    local = data_home / f"{task}.json.gz"
    if local.is_file():
        df = _read_matminer_json(local)
    else:
        from skcrystal.datasets import load_matminer_dataset

        df = load_matminer_dataset(task, data_home=data_home)
    df = df.reset_index(drop=True)
    digits = math.floor(math.log(len(df), 10)) + 1
    prefix = task.replace("matbench", "mb").replace("_", "-")
    df.index = [f"{prefix}-{i + 1:0{digits}d}" for i in range(len(df))]
    target, _ = MATBENCH_V01_TASKS[task]
    if target not in df or "structure" not in df:
        raise ValueError(
            f"{task}: the data have columns {list(df.columns)}, not structure/{target}"
        )
    return df[["structure", target]]


@dataclass
class MatbenchTask:
    """One task's folds and recorded predictions (the role of matbench's ``MatbenchTask``)."""

    name: str
    data: pd.DataFrame
    splits: dict[str, dict[str, list[str]]]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return MATBENCH_V01_TASKS[self.name][0]

    def train_data(self, fold: str) -> tuple[pd.Series, pd.Series]:
        """Structures and targets of the training fold: all tuning happens on these."""
        rows = self.data.loc[self.splits[fold]["train"]]
        return rows["structure"], rows[self.target]

    def test_inputs(self, fold: str) -> pd.Series:
        """Structures of the test fold, without targets."""
        return self.data.loc[self.splits[fold]["test"], "structure"]

    def record(self, fold: str, predictions: Any, parameters: dict | None = None) -> dict:
        """Record a fold's test predictions once; returns its scores (MAE, RMSE, max)."""
        if fold in self.results:
            raise ValueError(f"{self.name} {fold} is already recorded")
        ids = self.splits[fold]["test"]
        predictions = np.asarray(predictions, dtype=np.float64).ravel()
        if predictions.shape != (len(ids),) or not np.isfinite(predictions).all():
            raise ValueError(
                f"{self.name} {fold}: need {len(ids)} finite predictions, got "
                f"{predictions.shape[0]} ({int((~np.isfinite(predictions)).sum())} not finite)"
            )
        error = predictions - self.data.loc[ids, self.target].to_numpy(dtype=np.float64)
        scores = {
            "mae": float(np.abs(error).mean()),
            "rmse": float(np.sqrt((error**2).mean())),
            "max_error": float(np.abs(error).max()),
        }
        self.results[fold] = {
            "data": dict(zip(ids, predictions.tolist(), strict=True)),
            "scores": scores,
            "parameters": parameters or {},
        }
        return scores


def run_matbench(
    estimator: Any,
    tasks: list[str] | tuple[str, ...] = ("matbench_mp_e_form",),
    *,
    data_home: str | os.PathLike | None = None,
    validation: str | os.PathLike | None = None,
    folds: list[int] | None = None,
    results_file: str | os.PathLike | None = "matbench_results.json.gz",
) -> pd.DataFrame:
    """Run the Matbench v0.1 protocol for ``estimator`` on structure regression tasks.

    For each task and fold: a fresh ``clone(estimator)`` is fitted on the training fold
    (structures in, targets out; put hyper-parameter search inside, e.g. a
    ``GridSearchCV`` or a ``Pipeline`` containing one), predicts the test fold, and the
    predictions are recorded against the fold's ids.

    Parameters
    ----------
    estimator : scikit-learn regressor taking pymatgen Structures
        e.g. ``CGCNNRegressor()``, ``DistilledRegressor()`` or a Pipeline of them.
    tasks : sequence of str
        Names in :data:`MATBENCH_V01_TASKS`.
    data_home : path, optional
        Where ``<task>.json.gz`` (matminer's format) are; see
        :func:`skcrystal.datasets.get_data_home`.
    validation : path, optional
        ``matbench_v0.1_validation.json``; by default from an installed ``matbench``
        package, else downloaded (sha256-checked).
    folds : list of int, optional
        A subset of the folds 0-4 (a full run records all five).
    results_file : path or None, default="matbench_results.json.gz"
        Where to write the results (gzip JSON); None writes nothing.

    Returns
    -------
    pandas.DataFrame
        One row per task and fold: MAE, RMSE, max error, fit time.

    Examples
    --------
    >>> from skcrystal import CGCNNRegressor
    >>> scores = run_matbench(CGCNNRegressor(), ["matbench_jdft2d"])  # doctest: +SKIP
    """
    import time

    unknown = [t for t in tasks if t not in MATBENCH_V01_TASKS]
    if unknown:
        kind = "a classification task" if set(unknown) & _CLASSIFICATION else "not a task"
        raise ValueError(
            f"{unknown[0]} is {kind} this runner supports; structure regression tasks: "
            f"{', '.join(MATBENCH_V01_TASKS)}"
        )
    with open(_validation_file(validation)) as f:
        splits = json.load(f)["splits"]
    home = get_data_home(data_home)
    rows, recorded = [], {}
    for name in tasks:
        task = MatbenchTask(name, _load_task_data(name, home), splits[name])
        missing = set(task.splits["fold_0"]["test"]) - set(task.data.index)
        if missing:
            raise ValueError(f"{name}: the data lack the fold ids, e.g. {sorted(missing)[0]}")
        for k in range(5) if folds is None else folds:
            fold = f"fold_{k}"
            X, y = task.train_data(fold)
            start = time.perf_counter()
            model = clone(estimator).fit(X.tolist(), y.to_numpy())
            fit_time = time.perf_counter() - start
            scores = task.record(fold, model.predict(task.test_inputs(fold).tolist()))
            rows.append({"task": name, "fold": k, **scores, "fit_time_s": fit_time})
        recorded[name] = {"results": task.results}
    if results_file is not None:
        payload = {"tasks": recorded, "metadata": {"benchmark": "matbench_v0.1",
                                                   "estimator": repr(estimator)}}  # fmt: skip
        with gzip.open(results_file, "wt") as f:
            json.dump(payload, f)
    return pd.DataFrame(rows)
