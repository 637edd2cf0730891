"""Resume an interrupted fit from a checkpoint file written after every epoch.

An estimator with ``checkpoint=path`` writes its whole training state to ``path`` at the
end of every epoch: the weights, the optimizer's state, the history, the random number
generators and the state of the callbacks that carry one (early stopping, the learning-rate
schedule, skorch's scoring callbacks). A later ``fit`` of the same data with the same
parameters that finds the file restores that state and runs only the epochs left, so an
interrupted fit (a killed job, a cluster's wall-time limit) continues where it stopped and
ends with the same model as an uninterrupted one.

The file is a ``torch.save`` archive of tensors and plain data only (the history is stored
as JSON text), so it is read back with ``torch.load(weights_only=True)``.

A callback of one's own carries its state across a resumption when it defines
``get_training_state()``, returning tensors and plain Python values, and
``set_training_state(net, state)``, called at the start of the resumed fit with what the
first returned. A callback from outside skorch and skcrystal that holds state (attributes
named with a trailing underscore, as scikit-learn's convention has it) and lacks them
restarts from its initial state, and the resumed ``fit`` warns, naming it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.history import History

__all__ = ["TrainingCheckpoint", "fit_fingerprint", "read_training_state"]

#: Version of the file layout; a file of another version is refused.
FORMAT = 1

# skorch callbacks whose state lives in these attributes (plain values, numpy scalars or
# tensors; :func:`_loadable` makes the numpy scalars Python ones when the file is written).
_EARLY_STOPPING_STATE = ("misses_", "dynamic_threshold_", "best_epoch_", "best_model_weights_")


#: Parameters that may change between an interrupted fit and its resumption.
_FREE_PARAMS = ("checkpoint", "verbose", "device", "warm_start")


def fit_fingerprint(net, n_train: int, n_valid: int | None) -> dict[str, Any]:
    """What identifies a fit: a checkpoint resumes only a fit with the same values.

    The estimator's class, the number of training and validation crystals, the resolved
    epochs (``max_epochs_``), every parameter of the estimator except ``checkpoint``,
    ``verbose``, ``device``, ``warm_start``, the callbacks and skorch's private ones (so a
    fit started on the CPU may continue on a GPU) and, for regressors, the target scaling
    (so that other targets are noticed).

    Examples
    --------
    >>> from skcrystal import CGCNNRegressor
    >>> reg = CGCNNRegressor(lr=0.01)
    >>> reg.max_epochs_ = 200  # resolved by fit
    >>> fingerprint = fit_fingerprint(reg, n_train=1000, n_valid=None)
    >>> fingerprint["lr"], fingerprint["max_epochs_"], fingerprint["n_train"]
    ('0.01', 200, 1000)
    """
    params = {
        name: _describe(value)
        for name, value in net.get_params(deep=False).items()
        if name not in _FREE_PARAMS and not name.startswith(("callbacks", "_"))
    }
    fingerprint: dict[str, Any] = {
        "estimator": type(net).__name__,
        "n_train": int(n_train),
        "n_valid": None if n_valid is None else int(n_valid),
        "max_epochs_": int(net.max_epochs_),
        **params,
    }
    for name in ("target_mean_", "target_scale_"):
        if hasattr(net, name):
            fingerprint[name] = [float(f"{v:.12g}") for v in np.ravel(getattr(net, name))]
    return fingerprint


def _describe(value: Any) -> str:
    """A text for ``value`` that is the same in every process (no memory addresses).

    Objects with parameters (a graph builder, a skorch ``LRScheduler``, a teacher) are
    their class and parameters; classes and functions their qualified name; containers
    their items; everything else its repr.
    """
    if isinstance(value, dict):
        items = ", ".join(f"{k!r}: {_describe(v)}" for k, v in value.items())
        return f"{{{items}}}"
    if isinstance(value, (set, frozenset)):
        return f"{{{', '.join(sorted(map(_describe, value)))}}}"
    if isinstance(value, (list, tuple)):
        items = ", ".join(map(_describe, value))
        return f"[{items}]" if isinstance(value, list) else f"({items})"
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{value.__module__}.{value.__qualname__}"
    if hasattr(value, "get_params"):
        params = ", ".join(f"{k}={_describe(v)}" for k, v in sorted(value.get_params().items()))
        return f"{type(value).__name__}({params})"
    return repr(value)


def read_training_state(path: str | os.PathLike, fingerprint: dict[str, Any]) -> dict | None:
    """The training state saved at ``path`` (None when there is no such file).

    Raises
    ------
    ValueError
        When the file is not a checkpoint of this format, or was written by a fit that
        differs from ``fingerprint`` (another estimator, data, epochs or recipe).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickling, zip or I/O error: the same message
        raise ValueError(
            f"checkpoint {path} cannot be read as a training checkpoint: {error}"
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(
            f"checkpoint {path} is not a skcrystal training checkpoint (format {FORMAT})"
        )
    saved = state["fingerprint"]
    for key in sorted(set(saved) | set(fingerprint)):
        if saved.get(key) != fingerprint.get(key):
            raise ValueError(
                f"checkpoint {path} was written by another fit ({key}: {saved.get(key)!r} "
                f"there, {fingerprint.get(key)!r} now); remove the file or name another one "
                "to start afresh"
            )
    return state


class TrainingCheckpoint(Callback):
    """Write the training state after every epoch; restore a saved one when training begins.

    Added by the estimators as their last callback when ``checkpoint`` is set, so that
    what the other callbacks record in an epoch is saved with it. It reads what ``fit``
    sets on the estimator: ``checkpoint`` (the file, replaced atomically: written next to
    it, then renamed, so an interruption while writing leaves the previous epoch's state),
    ``checkpoint_fingerprint_`` (:func:`fit_fingerprint`, stored with the state) and
    ``resume_state_`` (from :func:`read_training_state`: the state to restore, or None).
    """

    def on_train_begin(self, net, **kwargs) -> None:
        state = getattr(net, "resume_state_", None)
        if state is not None:
            _warn_stateless(net)
            _restore(net, state)

    def on_epoch_end(self, net, **kwargs) -> None:
        self._write(net, finished=False)

    def on_train_end(self, net, **kwargs) -> None:
        # Reached when all epochs ran or early stopping stopped, but also after Ctrl-C
        # (skorch ends training on KeyboardInterrupt): only a true end is marked finished.
        stopping = dict(net.callbacks_).get("early_stopping")
        stopped = stopping is not None and stopping.misses_ >= stopping.patience
        if stopped or len(net.history) >= net.max_epochs_:
            self._write(net, finished=True)

    def _write(self, net, finished: bool) -> None:
        path = Path(net.checkpoint)
        state = {
            "format": FORMAT,
            "fingerprint": net.checkpoint_fingerprint_,
            "finished": finished,
            "epochs": len(net.history),
            "history": json.dumps(list(net.history), default=_plain),
            "module": net.module_.state_dict(),
            "criterion": _state_dict(net.criterion_),
            "optimizer": net.optimizer_.state_dict(),
            "callbacks": {
                name: _loadable(_callback_state(cb), f"callback {name!r}")
                for name, cb in net.callbacks_
                if cb is not self
            },
            "rng": _rng_state(net.device),
        }
        partial = path.with_name(f".{path.name}.partial")
        torch.save(state, partial)
        os.replace(partial, path)


def _plain(value: Any) -> Any:
    """JSON for the numpy and torch scalars a history may hold."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"the history holds a {type(value).__name__}, which cannot be saved")


def _loadable(value: Any, owner: str) -> Any:
    """``value`` with numpy scalars made Python ones, so that ``weights_only`` reads it back."""
    if isinstance(value, dict):
        return {key: _loadable(item, owner) for key, item in value.items()}
    if isinstance(value, (list, tuple)):  # named tuples become plain ones
        items = [_loadable(item, owner) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(
        f"the training state of {owner} holds a {type(value).__name__}, which a checkpoint "
        "cannot keep: return tensors and plain Python values from get_training_state()"
    )


def _state_dict(module: Any) -> dict:
    return module.state_dict() if isinstance(module, torch.nn.Module) else {}


def _callback_state(cb: Callback) -> dict[str, Any]:
    """The state of one callback: what resuming must give back to it."""
    if hasattr(cb, "get_training_state"):
        return cb.get_training_state()
    if isinstance(cb, EarlyStopping):
        return {name: getattr(cb, name) for name in _EARLY_STOPPING_STATE}
    if isinstance(cb, LRScheduler):
        return {"batch_idx_": cb.batch_idx_, "scheduler": cb.lr_scheduler_.state_dict()}
    if hasattr(cb, "best_score_"):  # skorch's PassthroughScoring and EpochScoring
        return {"best_score_": cb.best_score_}
    return {}


def _warn_stateless(net) -> None:
    """Name the user's callbacks whose state a resumption cannot give back.

    State is what scikit-learn and skorch name with a trailing underscore (``seen_``);
    skorch's and skcrystal's own callbacks are handled in :func:`_callback_state`.
    """
    for name, cb in net.callbacks_:
        library = type(cb).__module__.partition(".")[0]
        names = getattr(cb, "__dict__", {})
        stateful = any(key.endswith("_") and not key.startswith("_") for key in names)
        if (
            stateful
            and library not in ("skorch", "skcrystal")
            and not hasattr(cb, "set_training_state")
        ):
            warnings.warn(
                f"callback {name!r} ({type(cb).__name__}) restarts from its initial state in "
                "this resumed fit: it defines no get_training_state() and "
                "set_training_state(net, state) to carry its state in the checkpoint",
                UserWarning,
                stacklevel=2,
            )


def _restore_callback(net, cb: Callback, state: dict[str, Any]) -> None:
    if hasattr(cb, "set_training_state"):
        cb.set_training_state(net, state)
    elif isinstance(cb, LRScheduler):
        cb.lr_scheduler_.load_state_dict(state["scheduler"])
        cb.batch_idx_ = state["batch_idx_"]
    else:
        for name, value in state.items():
            setattr(cb, name, value)


def _rng_state(device: Any) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def _restore(net, state: dict) -> None:
    """Give ``net`` (initialised, at the start of training) the saved training state.

    The order matters: the schedulers are rebuilt against the fresh optimizer before the
    optimizer's saved state (its learning rates, momenta, moments) replaces it.
    """
    net.module_.load_state_dict(state["module"])
    if state["criterion"]:
        net.criterion_.load_state_dict(state["criterion"])
    saved = state["callbacks"]
    for name, cb in net.callbacks_:
        if name in saved:
            _restore_callback(net, cb, saved[name])
    net.optimizer_.load_state_dict(state["optimizer"])
    net.history_ = History(json.loads(state["history"]))
    torch.set_rng_state(state["rng"]["cpu"])
    if "cuda" in state["rng"] and str(net.device).startswith("cuda"):  # a GPU fit goes on
        torch.cuda.set_rng_state(state["rng"]["cuda"], torch.device(net.device))
