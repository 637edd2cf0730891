"""Save and load fitted models as safetensors files: weights plus a JSON description.

A model file holds the network's tensors, the atom feature table the model was trained
with, and, in the safetensors metadata, the estimator class, its parameters, its
training parameters, the graph settings, the target scaling and the versions of the
libraries it was saved with. Loading never unpickles anything, so a model file from
elsewhere cannot run code. Models bundled with the package are loaded by name.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pooch
import torch
from safetensors.torch import load_file, safe_open, save_file
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from skcrystal.graphs import CrystalGraphTransformer
from skcrystal.graphs.atom_features import AtomFeatureTable
from skcrystal.graphs.composition import COMPOSITION_RULE, CompositionTransformer

BUNDLED = Path(__file__).parent / "weights"
_TABLE_PREFIX = "atom_features."
_CONFORMAL_SCORES = "conformal.scores"


def _estimator_classes() -> dict[str, type]:
    from skcrystal import estimators

    classes = (getattr(estimators, name) for name in estimators.__all__)
    return {cls.__name__: cls for cls in classes if hasattr(cls, "restore")}


def available_models() -> list[str]:
    """Names of the models bundled with the package.

    Examples
    --------
    >>> "cgcnn-mp-formation-energy" in available_models()
    True
    """
    return sorted(p.stem for p in BUNDLED.glob("*.safetensors"))


#: Distributions whose versions :func:`save_model` records (``versions`` of the card).
RECORDED_VERSIONS = ("skcrystal", "torch", "skorch", "scikit-learn", "numpy", "pymatgen")


def _library_versions() -> dict[str, str | None]:
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


def _stored_training_params(estimator: Any) -> dict[str, Any]:
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
            stacklevel=3,
        )
    return stored


def _restored_training_params(stored: dict[str, Any], path: Path) -> dict[str, Any]:
    """Stored training parameters as estimator parameters (lists back to tuples)."""
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}
    if "optimizer" in params:
        optimizer = getattr(torch.optim, str(params["optimizer"]), None)
        if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
            warnings.warn(
                f"{path}: optimizer {params['optimizer']!r} is not in torch.optim; the "
                "default optimizer is used",
                UserWarning,
                stacklevel=3,
            )
            del params["optimizer"]
        else:
            params["optimizer"] = optimizer
    return params


def _network_parts(estimator: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors (keys prefixed) and description of one fitted network estimator."""
    if type(estimator).__name__ not in _estimator_classes():
        raise TypeError(f"cannot save a {type(estimator).__name__}: not a skcrystal estimator")
    fitted = estimator.fitted_state()
    tensors = {
        prefix + k: v.detach().cpu().contiguous() for k, v in estimator.module_.state_dict().items()
    }
    description = {
        "estimator": type(estimator).__name__,
        "params": estimator.saved_params(),
        "graph_settings": list(estimator.graph_settings_),
        "training_params": _stored_training_params(estimator),
        "fitted": fitted,
    }
    return tensors, description


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
    table: AtomFeatureTable = network.graph_builder_.fit().atom_feature_table_
    table_arrays, table_info = table.to_state()
    for name, array in table_arrays.items():
        tensors[_TABLE_PREFIX + name] = torch.from_numpy(array)
    description.update(
        atom_features=table_info,
        versions=_library_versions(),
        card=card,
    )
    path = Path(path)
    save_file(tensors, str(path), metadata={"skcrystal": json.dumps(description)})
    return path


def _resolve(name_or_path: str | os.PathLike) -> Path:
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


def model_card(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The description stored with a model file (class, parameters, card)."""
    with safe_open(str(_resolve(name_or_path)), framework="pt") as f:
        metadata = f.metadata() or {}
    if "skcrystal" not in metadata:
        raise ValueError(f"{name_or_path}: not a skcrystal model file (no description)")
    return json.loads(metadata["skcrystal"])


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _build_network(description, tensors, table, path: Path, device: str) -> Any:
    classes = _estimator_classes()
    if description["estimator"] not in classes:
        raise ValueError(f"{path}: unknown estimator {description['estimator']!r}")
    # Files written before neighbor_rule existed store three settings: their graphs were
    # all of the "nearest" rule.
    cutoff, max_neighbors, _, neighbor_rule = [*description["graph_settings"], "nearest"][:4]
    # Files written before "fitted" existed keep the target scaling at the top level.
    fitted = description.get("fitted")
    if fitted is None:
        fitted = {key: description[key] for key in ("target_mean", "target_scale", "y_was_1d")}
    training = _restored_training_params(description.get("training_params", {}), path)
    cls = classes[description["estimator"]]
    estimator = cls(**description["params"], **training, device=device)
    if neighbor_rule == COMPOSITION_RULE:
        builder = CompositionTransformer(atom_features=table)
    else:
        builder = CrystalGraphTransformer(
            cutoff, max_neighbors, atom_features=table, neighbor_rule=neighbor_rule
        )
    return estimator.restore(builder, tensors, **fitted)


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
            _build_network(member, _with_prefix(tensors, f"members.{i}."), table, path, device)
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
    path = _resolve(name_or_path)
    description = model_card(path)
    tensors = load_file(str(path))
    table_arrays = {name: tensors.pop(_TABLE_PREFIX + name).numpy() for name in ("values", "known")}
    table = AtomFeatureTable.from_state(table_arrays, description["atom_features"])
    return _build(description, tensors, table, path, device)


# --- the authors' CrysGNN teacher ---------------------------------------------------------
#: Where the authors publish their 800K-crystal CrysGNN teacher (GitHub kdmsit/crysgnn), at
#: a commit whose tree holds ``model/crysgnn_state_checkpoint_v1.pth.tar`` (checked in an
#: index of public GitHub files; the file itself could not be fetched here).
CRYSGNN_800K_URL = (
    "https://github.com/kdmsit/crysgnn/raw/eeb419ca4e793128f4e3786fdeeaeb0373cc6f1c/"
    "model/crysgnn_state_checkpoint_v1.pth.tar"
)
#: sha256 of that file. It could not be read where skcrystal was built (no network), so it
#: is None: the first download records its hash beside it and every later use checks the
#: file against that record. Set ``SKCRYSTAL_CRYSGNN_800K_SHA256`` to pin a known hash.
CRYSGNN_800K_SHA256: str | None = None


def crysgnn_800k(device: str = "cpu") -> Any:
    """The authors' CrysGNN teacher (pretrained on 800K MP + OQMD crystals), ready to use.

    Downloaded once from :data:`CRYSGNN_800K_URL` into ``<cache>/crysgnn/`` (see
    :func:`skcrystal.datasets.get_cache_dir`), checked against its sha256, read without
    running pickled code (:func:`skcrystal.checkpoints.read_foreign_checkpoint`),
    converted into a :class:`~skcrystal.estimators.CrysGNNPretrainer` and saved as a
    safetensors file, which later calls load directly.

    Raises
    ------
    OSError
        At once when the file is absent and cannot be downloaded (offline), saying what
        to download and where to put it; or when the file does not match its checksum.
    """
    from skcrystal.datasets import get_cache_dir
    from skcrystal.estimators.crysgnn import CrysGNNPretrainer

    folder = get_cache_dir() / "crysgnn"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "crysgnn_state_checkpoint_v1.pth.tar"
    converted = folder / "crysgnn-800k.safetensors"
    record = folder / "crysgnn_state_checkpoint_v1.sha256"
    if not checkpoint.is_file():
        try:
            pooch.retrieve(
                CRYSGNN_800K_URL,
                known_hash=_expected_800k_hash(record),
                fname=checkpoint.name,
                path=folder,
                progressbar=False,
            )
        except Exception as err:
            raise OSError(
                f"the CrysGNN 800K teacher is not in {folder} and downloading it failed "
                f"({type(err).__name__}: {err}). Download {CRYSGNN_800K_URL} and save it as "
                f"{checkpoint}, then call again."
            ) from None
    actual = pooch.file_hash(str(checkpoint))
    expected = _expected_800k_hash(record)
    if expected is None:
        record.write_text(actual + "\n")
    elif actual != expected.removeprefix("sha256:"):
        raise OSError(
            f"{checkpoint} has sha256 {actual}, expected {expected}: delete it and download "
            f"{CRYSGNN_800K_URL} again"
        )
    if converted.is_file():
        return load_model(converted, device=device)
    teacher = CrysGNNPretrainer.from_authors_checkpoint(checkpoint, device=device)
    save_model(
        teacher,
        converted,
        data="CrysGNN 800K teacher (Das et al., AAAI 2023)",
        source=CRYSGNN_800K_URL,
        sha256=actual,
    )
    return teacher


def _expected_800k_hash(record: Path) -> str | None:
    pinned = os.environ.get("SKCRYSTAL_CRYSGNN_800K_SHA256") or CRYSGNN_800K_SHA256
    if pinned:
        return f"sha256:{pinned.removeprefix('sha256:')}"
    if record.is_file():
        return f"sha256:{record.read_text().strip()}"
    return None
