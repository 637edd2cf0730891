"""Save and load fitted models as safetensors files: weights plus a JSON description.

A model file holds the network's tensors, the atom feature table the model was trained
with, and, in the safetensors metadata, the estimator class, its parameters, its
training parameters, the graph settings, the target scaling and the versions of the
libraries it was saved with. Loading never unpickles anything, so a model file from
elsewhere cannot run code. Models bundled with the package are loaded by name.

The file format itself is :mod:`skcrystal.model_files`, which imports no estimator (the
estimators read their named encoders and teachers with it); this module imports the
estimators and :mod:`skcrystal.uncertainty` to save and rebuild any of them. The authors'
CrysGNN teacher is :func:`skcrystal.teachers.crysgnn_800k`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from skcrystal.model_files import (
    BUNDLED,
    RECORDED_VERSIONS,
    available_models,
    network_parts,
    read_description,
    read_model_file,
    with_prefix,
    write_model_file,
)

__all__ = [
    "BUNDLED",
    "RECORDED_VERSIONS",
    "available_models",
    "load_model",
    "model_card",
    "save_model",
]

_CONFORMAL_SCORES = "conformal.scores"


def _estimator_classes() -> dict[str, type]:
    from skcrystal import estimators

    classes = (getattr(estimators, name) for name in estimators.__all__)
    return {cls.__name__: cls for cls in classes if hasattr(cls, "restore")}


def _network_parts(estimator: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors (keys prefixed) and description of one fitted network estimator."""
    if type(estimator).__name__ not in _estimator_classes():
        raise TypeError(f"cannot save a {type(estimator).__name__}: not a skcrystal estimator")
    return network_parts(estimator, prefix)


def _parts(estimator: Any) -> tuple[dict[str, torch.Tensor], dict, Any]:
    """Tensors, description and the network estimator whose graph builder they share."""
    from skcrystal.uncertainty import ConformalRegressor, EnsembleRegressor

    if isinstance(estimator, ConformalRegressor):
        check_is_fitted(estimator, "scores_")
        tensors, inner, network = _parts(estimator.estimator_)
        tensors[_CONFORMAL_SCORES] = torch.from_numpy(np.asarray(estimator.scores_))
        description = {
            "estimator": "ConformalRegressor",
            "params": {"method": estimator.method_, "coverage": estimator.coverage},
            "fitted": {"std_floor": getattr(estimator, "std_floor_", None)},
            "inner": inner,
        }
        return tensors, description, network
    if isinstance(estimator, EnsembleRegressor):
        check_is_fitted(estimator, "estimators_")
        tensors, members = {}, []
        for i, (member, domain) in enumerate(
            zip(estimator.estimators_, estimator.domain_, strict=True)
        ):
            member_tensors, member_description = _network_parts(member, f"members.{i}.")
            tensors.update(member_tensors)
            tensors[f"domain.{i}"] = torch.from_numpy(domain.embeddings_)
            members.append(member_description)
        description = {
            "estimator": "EnsembleRegressor",
            "params": {
                "n_estimators": estimator.n_estimators,
                "bootstrap": estimator.bootstrap,
                "n_neighbors": estimator.n_neighbors,
            },
            "fitted": {"seeds": [int(s) for s in estimator.seeds_]},
            "members": members,
        }
        return tensors, description, estimator.estimators_[0]
    tensors, description = _network_parts(estimator)
    return tensors, description, estimator


def save_model(estimator: Any, path: str | os.PathLike, **card: Any) -> Path:
    """Write a fitted skcrystal estimator to ``path`` (a ``.safetensors`` file).

    Regressors (with their target scaling), pretrainers,
    :class:`~skcrystal.uncertainty.EnsembleRegressor` (every member, and the training
    embeddings of its applicability score) and calibrated
    :class:`~skcrystal.uncertainty.ConformalRegressor` (its calibration scores) alike;
    :func:`load_model` reads the file back without unpickling anything. Besides the
    weights, the file records the parameters that build the network (and
    ``nonnegative``), the training parameters (``optimizer``, ``lr``, ``max_epochs``,
    ``batch_size``, ``early_stopping``, ``validation_fraction``, ``n_iter_no_change``,
    ``random_state``, ``train_split``, ``optimizer__*``, ``criterion__*``,
    ``iterator_*__*``) and the versions of Python, skcrystal, torch, skorch,
    scikit-learn, numpy and pymatgen (``model_card(path)["versions"]``). Parameters that
    are no JSON value (callbacks, a custom optimizer or split) are not stored, with a
    warning.

    Parameters
    ----------
    estimator : fitted CGCNNRegressor, CrysXPPRegressor, CrysAEPretrainer, ...
    path : str or path-like
    **card
        Extra JSON-serialisable facts stored with the model (data, split, test MAE...).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CrysAEPretrainer
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1)]
    >>> ae = CrysAEPretrainer(max_epochs=1, early_stopping=False, random_state=0).fit(crystals)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ae.safetensors"
    >>> same = load_model(save_model(ae, path, data="three CsCl cells"))
    >>> bool(abs(same.transform(crystals) - ae.transform(crystals)).max() < 1e-6)
    True
    """
    tensors, description, network = _parts(estimator)
    return write_model_file(path, tensors, description, network, card)


def model_card(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The description stored with a model file (class, parameters, card)."""
    return read_description(name_or_path)


def _build_network(description, tensors, table, path: Path, device: str) -> Any:
    classes = _estimator_classes()
    if description["estimator"] not in classes:
        raise ValueError(f"{path}: unknown estimator {description['estimator']!r}")
    cls = classes[description["estimator"]]
    return cls.from_model_file(description, tensors, table, device=device, source=path)


def _build(description, tensors, table, path: Path, device: str) -> Any:
    from skcrystal.uncertainty import ConformalRegressor, EnsembleRegressor, LatentDistance

    if description["estimator"] == "ConformalRegressor":
        inner = _build(description["inner"], tensors, table, path, device)
        conformal = ConformalRegressor(inner, prefit=True, **description["params"])
        conformal.estimator_, conformal.method_ = inner, description["params"]["method"]
        conformal.calibration_indices_ = None
        conformal.scores_ = tensors[_CONFORMAL_SCORES].numpy()
        if description["fitted"]["std_floor"] is not None:
            conformal.std_floor_ = description["fitted"]["std_floor"]
        return conformal
    if description["estimator"] == "EnsembleRegressor":
        members = [
            _build_network(member, with_prefix(tensors, f"members.{i}."), table, path, device)
            for i, member in enumerate(description["members"])
        ]
        params = description["params"]
        ensemble = EnsembleRegressor(clone(members[0]), **params)
        ensemble.estimators_ = members
        ensemble.seeds_ = np.array(description["fitted"]["seeds"])
        ensemble.domain_ = [
            LatentDistance(params["n_neighbors"]).fit(tensors[f"domain.{i}"].numpy())
            for i in range(len(members))
        ]
        return ensemble
    return _build_network(description, tensors, table, path, device)


def load_model(name_or_path: str | os.PathLike, device: str = "cpu") -> Any:
    """Load a fitted estimator from a bundled name or a ``.safetensors`` path.

    The estimator gets the stored network parameters and training parameters (see
    :func:`save_model`), so that ``warm_start`` and :func:`skcrystal.finetune.fine_tune`
    continue with the ``lr``, ``batch_size``, optimizer settings... it was trained with.
    Files written before training parameters were stored (three of the bundled models)
    load with the defaults for those.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> model = load_model("cgcnn-mp-formation-energy")
    >>> nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"],
    ...                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> -2.5 < float(model.predict([nacl])[0]) < -1.5  # DFT: about -2.1 eV/atom
    True
    """
    path, description, tensors, table = read_model_file(name_or_path)
    return _build(description, tensors, table, path, device)
