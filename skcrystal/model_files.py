"""The model file format, below the estimators: reading and writing its parts.

A model file is a safetensors file: the network's tensors, the atom feature table
(``atom_features.*``) and, in the metadata under ``"skcrystal"``, a JSON description (the
estimator class, its parameters, training parameters, graph settings, what besides the
weights makes it fitted, library versions, a card). This module knows the format and the
bundled models, and imports no estimator: the estimators rebuild themselves from the
parts (:meth:`skcrystal.estimators.base.CrystalGraphNet.from_model_file`), and
:mod:`skcrystal.hub` builds :func:`~skcrystal.hub.save_model` and
:func:`~skcrystal.hub.load_model` on both.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, safe_open, save_file

from skcrystal.graphs import CrystalGraphTransformer
from skcrystal.graphs.atom_features import AtomFeatureTable
from skcrystal.graphs.composition import COMPOSITION_RULE, CompositionTransformer

BUNDLED = Path(__file__).parent / "weights"
TABLE_PREFIX = "atom_features."

#: Distributions whose versions :func:`~skcrystal.hub.save_model` records (``versions``
#: of the card).
RECORDED_VERSIONS = ("skcrystal", "torch", "skorch", "scikit-learn", "numpy", "pymatgen")


def available_models() -> list[str]:
    """Names of the models bundled with the package.

    Examples
    --------
    >>> "cgcnn-mp-formation-energy" in available_models()
    True
    """
    return sorted(p.stem for p in BUNDLED.glob("*.safetensors"))


def library_versions() -> dict[str, str | None]:
    """The versions of Python and of :data:`RECORDED_VERSIONS` (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in RECORDED_VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _is_json_value(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_is_json_value(v) for v in value)


def stored_training_params(estimator: Any) -> dict[str, Any]:
    """The estimator's training parameters as JSON values; warns about those left out."""
    stored, left_out = {}, []
    for name, value in estimator.training_params().items():
        if name == "optimizer" and isinstance(value, type):
            if getattr(torch.optim, value.__name__, None) is value:
                stored[name] = value.__name__
                continue
        elif _is_json_value(value):
            stored[name] = value
            continue
        left_out.append(f"{name} (a {type(value).__name__})")
    if left_out:
        warnings.warn(
            f"save_model stores no {', '.join(left_out)}: only JSON values and torch.optim "
            "optimizers are stored; load_model gives these parameters their defaults",
            UserWarning,
            stacklevel=4,
        )
    return stored


def restored_training_params(stored: dict[str, Any], source: Any) -> dict[str, Any]:
    """Stored training parameters as estimator parameters (lists back to tuples)."""
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}
    if "optimizer" in params:
        optimizer = getattr(torch.optim, str(params["optimizer"]), None)
        if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
            warnings.warn(
                f"{source}: optimizer {params['optimizer']!r} is not in torch.optim; the "
                "default optimizer is used",
                UserWarning,
                stacklevel=4,
            )
            del params["optimizer"]
        else:
            params["optimizer"] = optimizer
    return params


def network_parts(estimator: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors (keys prefixed) and description of one fitted network estimator."""
    fitted = estimator.fitted_state()
    tensors = {
        prefix + k: v.detach().cpu().contiguous() for k, v in estimator.module_.state_dict().items()
    }
    description = {
        "estimator": type(estimator).__name__,
        "params": estimator.saved_params(),
        "graph_settings": list(estimator.graph_settings_),
        "training_params": stored_training_params(estimator),
        "fitted": fitted,
    }
    return tensors, description


def graph_builder(description: dict, table: AtomFeatureTable) -> Any:
    """The graph builder of a network estimator's description, with the file's table."""
    # Files written before neighbor_rule existed store three settings: their graphs were
    # all of the "nearest" rule.
    cutoff, max_neighbors, _, neighbor_rule = [*description["graph_settings"], "nearest"][:4]
    if neighbor_rule == COMPOSITION_RULE:
        return CompositionTransformer(atom_features=table)
    return CrystalGraphTransformer(
        cutoff, max_neighbors, atom_features=table, neighbor_rule=neighbor_rule
    )


def fitted_state(description: dict) -> dict[str, Any]:
    """What besides the weights makes the described estimator fitted (its ``restore``
    keywords)."""
    fitted = description.get("fitted")
    if fitted is None:
        # Files written before "fitted" existed keep the target scaling at the top level.
        fitted = {key: description[key] for key in ("target_mean", "target_scale", "y_was_1d")}
    return fitted


def write_model_file(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    description: dict,
    network: Any,
    card: dict[str, Any],
) -> Path:
    """Write ``tensors``, the atom feature table of the fitted ``network`` estimator's
    graphs and ``description`` (completed with the table's description, the library
    versions and ``card``) to ``path``."""
    table: AtomFeatureTable = network.graph_builder_.fit().atom_feature_table_
    tensors = dict(tensors)
    table_arrays, table_info = table.to_state()
    for name, array in table_arrays.items():
        tensors[TABLE_PREFIX + name] = torch.from_numpy(array)
    description = {**description, "atom_features": table_info}
    description.update(versions=library_versions(), card=card)
    path = Path(path)
    save_file(tensors, str(path), metadata={"skcrystal": json.dumps(description)})
    return path


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The file of a model file path or a bundled model's name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = BUNDLED / f"{name_or_path}.safetensors"
    if bundled.is_file():
        return bundled
    raise ValueError(
        f"{str(name_or_path)!r} is neither a model file nor a bundled model "
        f"(bundled: {', '.join(available_models()) or 'none'})"
    )


def read_description(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The description stored with a model file (class, parameters, card)."""
    with safe_open(str(resolve(name_or_path)), framework="pt") as f:
        metadata = f.metadata() or {}
    if "skcrystal" not in metadata:
        raise ValueError(f"{name_or_path}: not a skcrystal model file (no description)")
    return json.loads(metadata["skcrystal"])


class ModelFile(NamedTuple):
    """The parts of a model file, as :func:`read_model_file` gives them."""

    path: Path
    description: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    table: AtomFeatureTable


def read_model_file(name_or_path: str | os.PathLike) -> ModelFile:
    """Read a model file (a path or a bundled name): its description, its tensors (the
    atom feature table's taken out) and its atom feature table. Runs no pickled code."""
    path = resolve(name_or_path)
    description = read_description(path)
    tensors = load_file(str(path))
    table_arrays = {name: tensors.pop(TABLE_PREFIX + name).numpy() for name in ("values", "known")}
    table = AtomFeatureTable.from_state(table_arrays, description["atom_features"])
    return ModelFile(path, description, tensors, table)


def with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose keys start with ``prefix``, without it."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def load_as(
    cls: Any, name_or_path: str | os.PathLike, *, device: str = "cpu", source: Any = None
) -> Any:
    """The fitted ``cls`` (a network estimator class) that a model file holds.

    ``cls.from_model_file`` of the file's parts: a ValueError when the file holds
    another estimator. ``source`` names the file in messages (default: its path).
    """
    model = read_model_file(name_or_path)
    return cls.from_model_file(
        model.description,
        model.tensors,
        model.table,
        device=device,
        source=model.path if source is None else source,
    )
