"""Predict the properties of many crystals chunk by chunk, accounting for every item.

:func:`iter_predictions` is what ``skcrystal predict`` runs: it reads the crystals (a
stream of structures or files, or a :class:`~skcrystal.graphs.GraphStore`) one chunk at a
time, so memory holds one chunk whatever the total, and it yields each chunk's
predictions together with the items that could not be read or turned into a graph, with
the reason: no item is dropped without a word, and one bad file does not stop a
screening of 100,000.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer, GraphStore


class PredictionChunk(NamedTuple):
    """What :func:`iter_predictions` yields for one chunk of crystals.

    ``table`` has one row per crystal predicted, indexed by its id, with the column
    ``prediction`` (``prediction_0``, ``prediction_1``, ... for several targets), ``std``
    for an ensemble, and ``lower``/``upper`` when intervals were asked for. ``errors``
    lists ``(id, reason)`` for the crystals of the chunk that could not be predicted.
    """

    table: pd.DataFrame
    errors: list[tuple[Any, str]]


def graph_builder(model: Any) -> tuple[CrystalGraphTransformer, Any]:
    """The transformer that makes the graphs ``model`` predicts from, and what predicts.

    ``model`` is a fitted skcrystal regressor, an ensemble or conformal wrapper of one,
    or a Pipeline whose first step is a :class:`~skcrystal.CrystalGraphTransformer`; the
    second value is what takes the graphs (the model itself, or the rest of the
    Pipeline).
    """
    if isinstance(model, Pipeline) and isinstance(model[0], CrystalGraphTransformer):
        return model[0], model[1:]
    inner = model
    while not hasattr(inner, "graph_builder_"):
        if hasattr(inner, "estimator_"):  # ConformalRegressor
            inner = inner.estimator_
        elif getattr(inner, "estimators_", None):  # EnsembleRegressor
            inner = inner.estimators_[0]
        else:
            raise TypeError(f"{type(model).__name__} is not a fitted skcrystal regressor")
    builder = inner.graph_builder_
    if not isinstance(builder, CrystalGraphTransformer):
        raise TypeError(
            f"{type(model).__name__} reads crystals with {type(builder).__name__}, not with "
            "a CrystalGraphTransformer; predict with model.predict(X) instead"
        )
    return builder, model


def prediction_table(
    model: Any, graphs: CrystalGraphs, ids: Sequence, coverage: float | None = None
) -> pd.DataFrame:
    """The predictions of ``model`` for ``graphs`` as a table indexed by ``ids``.

    Columns: ``prediction`` (``prediction_0``, ... for several targets), ``std`` when
    ``model.predict`` takes ``return_std`` (an ensemble), and ``lower``/``upper`` from
    ``model.predict_interval(graphs, coverage)`` when ``coverage`` is given.
    """
    if "return_std" in inspect.signature(model.predict).parameters:
        mean, std = model.predict(graphs, return_std=True)
        columns = {"prediction": mean, "std": std}
    else:
        columns = {"prediction": model.predict(graphs)}
    if coverage is not None:
        columns["lower"], columns["upper"] = model.predict_interval(graphs, coverage=coverage)
    frame = pd.concat(
        {
            name: pd.DataFrame(np.reshape(values, (len(ids), -1)))
            for name, values in columns.items()
        },
        axis=1,
    )
    single = frame.columns.get_level_values(1).max() == 0
    frame.columns = [name if single else f"{name}_{i}" for name, i in frame.columns]
    frame.index = pd.Index(list(ids))
    return frame


def iter_predictions(
    model: Any,
    X: Iterable | GraphStore,
    *,
    ids: Sequence | None = None,
    chunk_size: int = 1_000,
    coverage: float | None = None,
) -> Iterator[PredictionChunk]:
    """Predict ``X`` chunk by chunk; yield each chunk's table and the items refused.

    Parameters
    ----------
    model : fitted regressor
        A skcrystal regressor, ensemble or conformal wrapper (see :func:`graph_builder`),
        e.g. from :func:`skcrystal.hub.load_model`.
    X : iterable of crystals, or GraphStore
        Structures, files or texts, read lazily (a generator works); or a store, read a
        chunk at a time (its crystals refused when it was built come in the first chunk's
        errors).
    ids : sequence, optional
        One id per item of ``X`` (e.g. file names) to index the tables with; by default
        the item's position in ``X``.
    chunk_size : int, default=1_000
        Crystals read, built and predicted at a time.
    coverage : float, optional
        Also give conformal intervals of this coverage (models that have
        ``predict_interval``).

    Yields
    ------
    PredictionChunk
        Every item of ``X`` is in exactly one chunk's ``table`` or ``errors``, in order.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.hub import load_model
    >>> model = load_model("cgcnn-mp-formation-energy")
    >>> nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"],
    ...                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> crystals = iter([nacl, "not a crystal", nacl])
    >>> chunks = list(iter_predictions(model, crystals, chunk_size=2))
    >>> [len(chunk.table) for chunk in chunks], chunks[0].errors[0][0]
    ([1, 1], 1)
    >>> round(float(chunks[1].table.loc[2, "prediction"]), 2)  # MP's DFT value: -2.1
    -1.98
    """
    builder, predictor = graph_builder(model)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    chunk_size = int(chunk_size)
    if isinstance(X, GraphStore):
        yield from _store_predictions(predictor, X, ids, chunk_size, coverage)
        return
    name = _namer(ids)
    items = iter(X)
    start = 0
    while chunk := list(itertools.islice(items, chunk_size)):
        report = builder.transform_report(chunk, start=start)
        errors = [(name(position), message) for position, message in report.errors]
        predicted = [name(int(position)) for position in report.index]
        table = _table(predictor, report.graphs, predicted, coverage)
        yield PredictionChunk(table, errors)
        start += len(chunk)


def _namer(ids: Sequence | None):
    """The id of the item at a position: ``ids[position]``, or the position itself."""
    return (lambda position: position) if ids is None else ids.__getitem__


def _table(model: Any, graphs: CrystalGraphs, ids: list, coverage: float | None) -> pd.DataFrame:
    if not ids:
        return pd.DataFrame(index=pd.Index([]))
    return prediction_table(model, graphs, ids, coverage)


def _store_predictions(
    model: Any, store: GraphStore, ids: Sequence | None, chunk_size: int, coverage: float | None
) -> Iterator[PredictionChunk]:
    name = _namer(ids)
    errors = [(name(position), message) for position, message in store.errors]
    for start in range(0, len(store), chunk_size):
        stop = min(start + chunk_size, len(store))
        graphs = store[start:stop]
        predicted = [name(int(position)) for position in store.index[start:stop]]
        yield PredictionChunk(_table(model, graphs, predicted, coverage), errors)
        errors = []
    if errors:  # a store of refused items only
        yield PredictionChunk(pd.DataFrame(index=pd.Index([])), errors)
