"""Read checkpoints written by other CGCNN-family code without running any of their code.

The reference weights of CGCNN, CrysXPP and CrysAE are pickles (``torch.save`` files), and
unpickling calls whatever functions a file names. They are therefore read with torch's
restricted ``weights_only`` unpickler, which rebuilds tensors and containers and refuses
everything else, extended as follows:

* numpy scalars (some CGCNN files store ``best_mae_error`` as one) are decoded by this module
  from their raw bytes, for numeric dtypes only;
* every other global a file names (``argparse.Namespace``, ``torch.nn.Linear``, the authors'
  ``model.CrystalAE``, ...) is bound to an inert :class:`_Record` class made for that name.
  A record can only be created empty and given the pickled state, which is plain data; calling
  it, as a pickle does to run a function, raises :class:`UnsafeCheckpointError`. The foreign
  class or function is never imported.

A whole pickled ``torch.nn.Module`` so becomes a tree of records, which is walked like
``Module.state_dict`` to get the flat tensor mapping.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch._utils import IMPORT_MAPPING, NAME_MAPPING

__all__ = ["ForeignCheckpoint", "UnsafeCheckpointError", "read_foreign_checkpoint"]

# numpy < 2 pickles scalars under the first name, numpy >= 2 under the second.
_NUMPY_SCALAR = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")
_NUMPY_DTYPE = "numpy.dtype"
# Top-level checkpoint entries that are returned on their own, not in ``meta``.
_MAIN_ENTRIES = ("state_dict", "normalizer", "args")


class UnsafeCheckpointError(ValueError):
    """A checkpoint needs code run to be unpickled; it was refused and nothing was run."""


class ForeignCheckpoint(TypedDict):
    """Plain contents of a foreign checkpoint, as returned by :func:`read_foreign_checkpoint`."""

    state_dict: dict[str, torch.Tensor]
    normalizer: dict[str, float] | None
    args: dict[str, Any] | None
    meta: dict[str, bool | int | float | str]


class _RecordMeta(type):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        # A pickle runs code by calling a global (REDUCE); records refuse every call.
        raise UnsafeCheckpointError(f"it calls {cls.pickled_name}, which is never run")


class _Record(metaclass=_RecordMeta):
    """Inert stand-in for an instance of a class named in a checkpoint.

    The restricted unpickler creates it with ``cls.__new__`` (NEWOBJ) and hands it the
    pickled state (BUILD); both are only stored.
    """

    pickled_name = ""

    def __new__(cls, *args: Any) -> _Record:
        record = super().__new__(cls)
        record.args = args
        record.state = None
        return record

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _record_class(name: str) -> type[_Record]:
    return _RecordMeta(name.rpartition(".")[2], (_Record,), {"pickled_name": name})


class _NumpyDType:
    """Stand-in for ``numpy.dtype`` while unpickling: keeps the type code and byte order."""

    def __init__(self, code: str, *_flags: Any) -> None:
        self.code = code
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        # numpy pickles a dtype's state as (version, byteorder, ...).
        self.byteorder = state[1]


def _numpy_scalar(dtype: _NumpyDType, data: bytes) -> bool | int | float | complex:
    """Decode a pickled numpy scalar of a numeric dtype into the Python number."""
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
        raise ValueError("malformed numpy scalar")
    np_dtype = np.dtype(dtype.code).newbyteorder(dtype.byteorder)
    # Object, string and structured dtypes could hold anything; numbers are all we need.
    if np_dtype.kind not in "biufc" or len(data) != np_dtype.itemsize:
        raise ValueError(f"unsupported numpy scalar of dtype {dtype.code!r}")
    return np.frombuffer(data, dtype=np_dtype)[0].item()


def _globals_in(stream: io.BufferedIOBase) -> set[str]:
    names = set()
    for opcode, arg, _ in pickletools.genops(stream):
        if opcode.name == "GLOBAL":
            # Pickle protocol 2 writes Python-2 names (``__builtin__.eval``); map them back as
            # torch's unpickler does, so that each record is bound under the name looked up.
            # A name mapped differently would only be refused by the unpickler, never run.
            module, name = arg.split(" ", 1)
            module, name = NAME_MAPPING.get(
                (module, name), (IMPORT_MAPPING.get(module, module), name)
            )
            names.add(f"{module}.{name}")
    return names


def _pickled_globals(path: Path) -> set[str]:
    """Names of the globals a ``torch.save`` file refers to, read without unpickling."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
        return set().union(*(_globals_in(io.BytesIO(data)) for data in pickles))
    # Legacy format: four pickles (magic number, protocol, system info, the object), then data.
    with open(path, "rb") as stream:
        return set().union(*[_globals_in(stream) for _ in range(4)])


def _module_state_dict(record: Any, prefix: str = "") -> dict[str, Any]:
    """The ``state_dict`` of a pickled ``nn.Module`` given as a tree of records."""
    state = record.state if isinstance(record, _Record) else None
    if not isinstance(state, dict) or "_parameters" not in state:
        raise ValueError(f"{prefix or 'the pickled object'!r} is not a torch.nn.Module")
    non_persistent = state.get("_non_persistent_buffers_set", set())
    tensors = {
        **state["_parameters"],
        **{k: v for k, v in state.get("_buffers", {}).items() if k not in non_persistent},
    }
    flat = {prefix + name: t for name, t in tensors.items() if t is not None}
    for name, child in state.get("_modules", {}).items():
        if child is not None:
            flat.update(_module_state_dict(child, f"{prefix}{name}."))
    return flat


def _tensors(items: Iterable[tuple[Any, Any]]) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"state_dict entry {name!r} is a {type(value).__name__}, not a tensor")
        # detach: plain tensors, not Parameters, without any pickled hooks.
        tensors[name] = value.detach()
    return tensors


def _number(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value


def _from_dict_checkpoint(checkpoint: dict[str, Any]) -> ForeignCheckpoint:
    normalizer = checkpoint.get("normalizer")
    if isinstance(normalizer, dict) and {"mean", "std"} <= normalizer.keys():
        normalizer = {key: float(normalizer[key]) for key in ("mean", "std")}
    else:
        normalizer = None
    args = checkpoint.get("args")
    if isinstance(args, _Record):  # e.g. an argparse.Namespace: its state is vars(args)
        args = args.state
    meta = {
        key: _number(value)
        for key, value in checkpoint.items()
        if key not in _MAIN_ENTRIES and isinstance(_number(value), bool | int | float | str)
    }
    return {
        "state_dict": _tensors(checkpoint["state_dict"].items()),
        "normalizer": normalizer,
        "args": dict(args) if isinstance(args, dict) else None,
        "meta": meta,
    }


def _contents(obj: Any) -> ForeignCheckpoint:
    """Sort what ``torch.load`` returned into the plain :class:`ForeignCheckpoint` layout."""
    if isinstance(obj, _Record):
        return {
            "state_dict": _tensors(_module_state_dict(obj).items()),
            "normalizer": None,
            "args": None,
            "meta": {},
        }
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return _from_dict_checkpoint(obj)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": _tensors(obj.items()), "normalizer": None, "args": None, "meta": {}}
    raise ValueError(f"the file holds a {type(obj).__name__}, not model weights")


def read_foreign_checkpoint(path: str | os.PathLike[str]) -> ForeignCheckpoint:
    """Read a ``torch.save`` checkpoint from other code as plain data, running none of its code.

    Three layouts are understood: a training checkpoint (a dict with ``state_dict`` and maybe
    ``normalizer``, ``args``, ``epoch``, ...; the original CGCNN and CrysXPP files), a whole
    pickled ``torch.nn.Module`` (CrysAE's ``model_pretrain.pth``) and a bare state dict. Both
    the zip format and the legacy format of torch < 1.6 are read, except a whole module in the
    legacy format, which torch's restricted unpickler refuses.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    ForeignCheckpoint
        A dict with keys

        - ``state_dict``: parameter and buffer name -> CPU tensor, as ``Module.state_dict``;
        - ``normalizer``: ``{"mean": float, "std": float}`` of the target, or None;
        - ``args``: the training arguments as a dict (an ``argparse.Namespace`` is turned
          into its attributes), or None;
        - ``meta``: the other top-level entries that are single numbers or strings (for
          example ``epoch``, ``best_mae_error``), as Python values. The optimizer state and
          other structured entries are dropped.

        ``normalizer`` and ``args`` are None and ``meta`` is empty for a pickled module or a
        bare state dict.

    Raises
    ------
    FileNotFoundError
        If there is no file at `path`.
    UnsafeCheckpointError
        If unpickling would have to call a function or class outside the allow-list
        (``os.system`` from a crafted ``__reduce__``, say). Nothing from the file is run.
    ValueError
        If the file is not a torch checkpoint, is damaged, or holds no model weights.

    Examples
    --------
    The authors' CGCNN formation-energy weights, as staged in the data home:

    >>> from skcrystal.datasets import get_data_home
    >>> folder = get_data_home() / "reference_weights" / "cgcnn_original"
    >>> ckpt = read_foreign_checkpoint(folder / "formation-energy-per-atom.pth.tar")
    >>> ckpt["state_dict"]["embedding.weight"].shape
    torch.Size([64, 92])
    >>> ckpt["normalizer"]
    {'mean': -1.699178719088435, 'std': 1.0563029540802564}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        names = _pickled_globals(path)
    except (ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a torch checkpoint: {err}") from err
    allowed = [(_NumpyDType, _NUMPY_DTYPE)] + [(_numpy_scalar, name) for name in _NUMPY_SCALAR]
    allowed += [(_record_class(n), n) for n in names - {_NUMPY_DTYPE, *_NUMPY_SCALAR}]
    try:
        # Names torch allows anyway (OrderedDict, tensor rebuilders) keep torch's binding:
        # its built-in allow-list is looked up before these additions.
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except UnsafeCheckpointError as err:
        raise UnsafeCheckpointError(f"refused to load {path}: {err}") from None
    except pickle.UnpicklingError as err:
        # torch's own checks: globals from blocked modules (os, sys), opcodes or objects it
        # does not allow. Its message advises weights_only=False, so only the name is kept.
        blocked = re.search(r"GLOBAL (\S+)", str(err))
        reason = (
            f"it refers to {blocked[1]}, which is never loaded"
            if blocked
            else "it needs pickle operations that the restricted unpickler refuses"
        )
        raise UnsafeCheckpointError(f"refused to load {path}: {reason}") from err
    except Exception as err:  # anything else means the file is damaged or not torch's
        raise ValueError(f"could not read {path} as a torch checkpoint: {err}") from err

    try:
        return _contents(obj)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
