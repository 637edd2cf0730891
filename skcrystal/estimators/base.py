"""Shared skorch machinery of the crystal graph estimators.

Input coercion (structures or :class:`CrystalGraphs`), target standardisation fitted on
the training rows, the internal validation split, early stopping on validation MAE,
seeding, sample weights, non-negative outputs, and batching through
:class:`CrystalGraphDataset`.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet, NeuralNetRegressor
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar
from skorch.utils import to_tensor
from torch.nn import functional as F
from torch.utils.data import Subset

from skcrystal import model_files
from skcrystal.estimators.callbacks import LearningRateSchedule, ValidMAE
from skcrystal.estimators.data import CrystalGraphDataset, root_dataset
from skcrystal.estimators.resume import TrainingCheckpoint, fit_fingerprint, read_training_state
from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer, GraphStore
from skcrystal.graphs.atom_features import get_atom_feature_table
from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.layers import GaussianExpansion, mean_pool
from skcrystal.recipes import auto_max_epochs, auto_n_iter_no_change, check_recipe


@contextlib.contextmanager
def seeded(random_state: int | None, device: str | torch.device | None):
    """Seed torch inside the block only, leaving the caller's global RNG state untouched."""
    if random_state is None:
        yield
        return
    devices = []
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(random_state)
        yield


def checkpoint_graph_builder(
    path: Any,
    edge_fea_len: int,
    n_atom_features: int,
    cutoff: float,
    max_neighbors: int,
    atom_features: Any,
) -> CrystalGraphTransformer:
    """The graph builder a foreign checkpoint's weights need, or a ValueError saying why not."""
    n_gaussians = GaussianExpansion(cutoff).n_features
    if edge_fea_len != n_gaussians:
        raise ValueError(
            f"{path} has edge features of length {edge_fea_len}, but cutoff={cutoff} Å "
            f"with a 0.2 Å Gaussian step gives {n_gaussians}; pass the cutoff it was "
            f"trained with ({(edge_fea_len - 1) * 0.2:g} Å for a 0.2 Å step)"
        )
    table = get_atom_feature_table(atom_features)
    if table.n_features != n_atom_features:
        raise ValueError(
            f"{path} expects {n_atom_features} atom features, but the table "
            f"{table.name!r} has {table.n_features}"
        )
    return CrystalGraphTransformer(cutoff, max_neighbors, table)


def _differs(value: Any, default: Any) -> bool:
    """Whether a parameter value differs from its default (for :meth:`__repr__`)."""
    if value is default:
        return False
    try:
        return bool(value != default)
    except (TypeError, ValueError):  # arrays and other values without a truth value
        return repr(value) != repr(default)


class CrystalGraphNet(NeuralNet):
    """skorch ``NeuralNet`` that trains a torch module on crystal graphs.

    Shared by regressors and pretrainers: input coercion (structures or
    :class:`CrystalGraphs`), the validation split or ``validation_data``, early stopping,
    seeding, batching through :class:`CrystalGraphDataset`. Subclasses name the module,
    say which of their parameters it takes (:meth:`module_params`) and what early
    stopping watches (:attr:`early_stopping_monitor`).
    """

    early_stopping_monitor = "valid_loss"

    def __init__(
        self,
        module: type[torch.nn.Module],
        *,
        criterion: type[torch.nn.Module],
        graph_builder: CrystalGraphTransformer | None = None,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int | str = "auto",
        restore_best: bool = True,
        random_state: int | None = None,
        train_split: Any = "auto",
        optimizer: type[torch.optim.Optimizer] = torch.optim.AdamW,
        lr: float = 3e-3,
        lr_schedule: str | LRScheduler = "cosine",
        warmup_epochs: float = 0,
        weight_decay: float = 0.0,
        max_epochs: int | str = "auto",
        batch_size: int = 64,
        checkpoint: str | os.PathLike | None = None,
        verbose: int = 0,
        device: str = "cpu",
        **kwargs: Any,
    ) -> None:
        # skorch does not shuffle by default; mini-batches must differ between epochs.
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(
            module,
            criterion=criterion,
            train_split=train_split,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.graph_builder = graph_builder
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.restore_best = restore_best
        self.random_state = random_state
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.weight_decay = weight_decay
        self.checkpoint = checkpoint

    #: Parameters that hold fitted inputs (a pretrained encoder, a teacher): clones share
    #: them instead of cloning them unfitted; a dict value is copied one level deep.
    shared_params: tuple[str, ...] = ()

    #: Attributes that together make the estimator fitted (trained or restored).
    fitted_attributes: tuple[str, ...] = ("module_", "graph_settings_")

    #: Training parameters (besides those that build the network) that
    #: :func:`skcrystal.hub.save_model` stores and :func:`~skcrystal.hub.load_model`
    #: restores, so that ``warm_start`` and ``fine_tune`` continue with them; parameters
    #: starting with one of :attr:`training_param_prefixes` are stored too.
    training_param_names: tuple[str, ...] = (
        "optimizer",
        "lr",
        "lr_schedule",
        "warmup_epochs",
        "weight_decay",
        "max_epochs",
        "batch_size",
        "early_stopping",
        "validation_fraction",
        "n_iter_no_change",
        "restore_best",
        "random_state",
        "train_split",
    )
    training_param_prefixes: tuple[str, ...] = (
        "optimizer__",
        "criterion__",
        "iterator_train__",
        "iterator_valid__",
    )

    def __sklearn_is_fitted__(self) -> bool:
        """True once trained or restored: the network and the graph settings exist.

        What :func:`sklearn.utils.validation.check_is_fitted` (and tools built on it, such
        as conformal prediction wrappers) asks. skorch's own answer is "the network is
        initialised"; here every attribute of :attr:`fitted_attributes` must be set
        (regressors: also the target scaling).
        """
        return all(hasattr(self, name) for name in self.fitted_attributes)

    @property
    def is_fitted(self) -> bool:
        """True on a fitted estimator; before ``fit``, asking raises ``AttributeError``.

        The marker MAPIE looks for (``hasattr(estimator, "is_fitted")``) before it wraps a
        prefit model: without it, MAPIE warns "Estimator does not appear fitted" on a
        fitted skcrystal model. (It also knows ``n_features_in_``, but then probes
        ``predict`` with a row of zeros, which a crystal model cannot take.)
        """
        if not self.__sklearn_is_fitted__():
            raise AttributeError(f"{type(self).__name__} is not fitted yet: call fit first")
        return True

    def __repr__(self) -> str:
        """``ClassName(param=value, ...)``: the parameters that differ from the defaults, by name.

        The scikit-learn convention (skorch's own repr prints the module instead); the
        trained network is ``module_``.
        """
        defaults = type(self)().get_params(deep=False)
        changed = {
            name: value
            for name, value in sorted(self.get_params(deep=False).items())
            if not name.startswith("_")
            and (name not in defaults or _differs(value, defaults[name]))
        }
        args = ", ".join(f"{name}={value!r}" for name, value in changed.items())
        return f"{type(self).__name__}({args})"

    def training_params(self) -> dict[str, Any]:
        """The training parameters that :func:`skcrystal.hub.save_model` stores, by name."""
        return {
            name: value
            for name, value in self.get_params(deep=False).items()
            if name in self.training_param_names or name.startswith(self.training_param_prefixes)
        }

    def __sklearn_clone__(self):
        """Clone the parameters, sharing those in :attr:`shared_params`."""
        params = self.get_params(deep=False)
        shared = {name: params.pop(name) for name in self.shared_params}
        shared = {k: dict(v) if isinstance(v, dict) else v for k, v in shared.items()}
        twin = type(self)(**shared, **{k: clone(v, safe=False) for k, v in params.items()})
        if hasattr(self, "_metadata_request"):
            twin._metadata_request = clone(self._metadata_request)
        return twin

    # --- what subclasses provide ---------------------------------------------------------
    def module_params(self) -> dict[str, Any]:
        """Keyword arguments for the module, from fitted data and estimator parameters."""
        raise NotImplementedError

    def saved_params(self) -> dict[str, Any]:
        """The parameters :func:`skcrystal.hub.save_model` stores to rebuild the network."""
        return {name: getattr(self, name) for name in self.module_param_names}

    def scoring_callbacks(self) -> list:
        """Callbacks that record what early stopping watches; run before it."""
        return []

    def get_params_for(self, prefix: str) -> dict[str, Any]:
        params = super().get_params_for(prefix)
        if prefix == "module":
            return {**self.module_params(), **params}
        return params

    # --- callbacks and splitting ------------------------------------------------------------
    def _stops_early(self) -> bool:
        """Early stopping runs when asked for and there is a validation set to watch."""
        return bool(self.early_stopping) and self.train_split is not None

    def get_default_callbacks(self) -> list:
        callbacks = [*super().get_default_callbacks(), *self.scoring_callbacks()]
        schedule = self.lr_schedule
        if isinstance(schedule, str):
            callbacks.append(("lr_schedule", LearningRateSchedule()))
        elif schedule is not None:
            callbacks.append(("lr_schedule", clone(schedule)))
        if self._stops_early():
            stopping = EarlyStopping(
                monitor=self.early_stopping_monitor,
                patience=getattr(self, "n_iter_no_change_", self.n_iter_no_change),
                load_best=bool(self.restore_best),
            )
            callbacks.append(("early_stopping", stopping))
        if self.verbose and self.verbose >= 2:
            callbacks.append(("progress_bar", ProgressBar()))
        return callbacks

    def get_split_datasets(self, X, y=None, **fit_params):
        dataset = self.get_dataset(X, y)
        if self.train_split != "auto":
            return super().get_split_datasets(X, y, **fit_params)
        if getattr(self, "validation_set_", None) is not None:
            return dataset, self.validation_set_
        if not self.early_stopping:
            return dataset, None
        n = len(dataset)
        n_valid = round(self.validation_fraction * n)
        if not 0 < n_valid < n:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} of {n} crystals leaves no "
                "training or no validation crystal; give more data, change the fraction, "
                "pass validation_data, or set early_stopping=False"
            )
        order = np.random.default_rng(self.random_state).permutation(n)
        weight = getattr(dataset, "sample_weight", None)
        if weight is not None and not weight[order[:n_valid]].any():
            raise ValueError(
                f"all {n_valid} validation crystals have sample_weight 0, so there is no "
                "validation error to stop on; change random_state or validation_fraction, "
                "pass validation_data, or set early_stopping=False"
            )
        return Subset(dataset, order[n_valid:].tolist()), Subset(dataset, order[:n_valid].tolist())

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        if "collate_fn" not in self.get_params_for(prefix):
            setattr(self, f"{prefix}__collate_fn", root_dataset(dataset).collate)
            try:
                return super().get_iterator(dataset, training=training)
            finally:
                delattr(self, f"{prefix}__collate_fn")
        return super().get_iterator(dataset, training=training)

    def infer(self, x: CrystalBatch, **fit_params) -> torch.Tensor:
        return self.module_(x.to(self.device), **fit_params)

    # --- inputs ------------------------------------------------------------------------------
    #: The neighbour rule of :meth:`default_graph_builder` (see
    #: :class:`~skcrystal.CrystalGraphTransformer`), and of the student's graphs when the
    #: network is distilled (the teacher's graph settings otherwise).
    default_neighbor_rule: str = "nearest"

    def default_graph_builder(self) -> CrystalGraphTransformer:
        """The graph builder used when ``graph_builder`` is None."""
        return CrystalGraphTransformer(neighbor_rule=self.default_neighbor_rule)

    def _to_graphs(self, X: Any) -> CrystalGraphs | GraphStore:
        if isinstance(X, (CrystalGraphs, GraphStore)):  # a store is read batch by batch
            return X
        if isinstance(X, (list, tuple)) and X and all(isinstance(x, CrystalGraphs) for x in X):
            return CrystalGraphs.concatenate(X)  # scikit-learn's list indexing of CrystalGraphs
        builder = getattr(self, "graph_builder_", None)
        if builder is None:
            builder = clone(self.graph_builder or self.default_graph_builder())
        return builder.transform(X)

    def _check_settings(self, graphs: CrystalGraphs) -> None:
        expected = self.graph_settings_
        found = graphs.settings
        if found != expected:
            raise ValueError(
                f"graphs built with (cutoff, max_neighbors, atom_features, neighbor_rule)="
                f"{found}, but the model was fitted on {expected}; build them with the same "
                "transformer"
            )

    def _training_graphs(self, X: Any) -> CrystalGraphs:
        """Check parameters, build the training graphs and record their settings."""
        if not isinstance(self.validation_fraction, numbers.Real) or not (
            0 < self.validation_fraction < 1
        ):
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        if self.graph_builder is not None or not hasattr(self, "graph_builder_"):
            self.graph_builder_ = clone(self.graph_builder or self.default_graph_builder())
        graphs = self._to_graphs(X)
        if not (self.warm_start and self.initialized_):
            self.graph_settings_ = graphs.settings
            self.n_atom_features_ = graphs.atom_features.n_features
            if self.graph_builder is None:  # graphs built elsewhere: crystals given later
                self._adopt_graph_settings(graphs)  # are built with the same settings
        self._check_settings(graphs)
        return graphs

    def _adopt_graph_settings(self, graphs: CrystalGraphs) -> None:
        """Make ``graph_builder_`` build graphs as ``graphs`` were built."""
        self.graph_builder_.set_params(
            cutoff=graphs.cutoff,
            max_neighbors=graphs.max_neighbors,
            atom_features=graphs.atom_features,
            neighbor_rule=graphs.neighbor_rule,
        )

    def _fit_datasets(
        self, train: CrystalGraphDataset, valid: CrystalGraphDataset | None, **fit_params
    ):
        """Train on ``train``, validating on ``valid`` (or per ``train_split`` when None)."""
        if valid is not None:
            self._check_settings(valid.graphs)
            if self.train_split != "auto":
                raise ValueError(
                    f"validation_data needs train_split='auto', got train_split="
                    f"{self.train_split!r}, which would ignore it"
                )
        self._resolve_recipe(self._n_training_crystals(train, valid))
        if self.early_stopping and self.train_split is None:
            warnings.warn(
                "train_split=None leaves no validation crystals, so early stopping is off "
                f"and training runs all {self.max_epochs_} epochs; set "
                "early_stopping=False to say so (and silence this warning)",
                UserWarning,
                stacklevel=3,
            )
        epochs = self._resume(len(train), None if valid is None else len(valid))
        self.validation_set_ = valid
        if self.warm_start and self.initialized_:
            self.initialize_callbacks()  # parameters such as early_stopping may have changed
        first_epoch = len(self.history_) if self.warm_start and self.initialized_ else 0
        try:
            with seeded(self.random_state, self.device):
                super().fit(train, None, epochs=epochs, **fit_params)
        finally:
            self.validation_set_ = self.resume_state_ = None
        self._record_epochs(first_epoch)
        return self

    def _resume(self, n_train: int, n_valid: int | None) -> int:
        """The epochs this fit runs: ``max_epochs_``, or those a checkpoint has left.

        Sets ``resume_state_`` (what :class:`TrainingCheckpoint` restores) and
        ``checkpoint_fingerprint_`` (what it stores) when ``checkpoint`` is set.
        """
        self.resume_state_ = None
        if self.checkpoint is None:
            return self.max_epochs_
        if self.warm_start and self.initialized_:
            raise ValueError(
                "checkpoint resumes an interrupted fit from its file and cannot continue "
                "the current network too; set warm_start=False or checkpoint=None"
            )
        self.checkpoint_fingerprint_ = fit_fingerprint(self, n_train, n_valid)
        state = read_training_state(self.checkpoint, self.checkpoint_fingerprint_)
        if state is None:
            return self.max_epochs_
        self.resume_state_ = state
        return 0 if state["finished"] else self.max_epochs_ - state["epochs"]

    def initialize_callbacks(self):
        """skorch's callbacks, then (with ``checkpoint``) the one that saves every epoch.

        The checkpoint comes last, so that it saves what every other callback recorded.
        """
        super().initialize_callbacks()
        if self.checkpoint is not None:
            self.callbacks_.append(("checkpoint", TrainingCheckpoint().initialize()))
        return self

    def _n_training_crystals(self, train, valid) -> int:
        """How many crystals the fit trains on, once the internal validation split is taken."""
        n = len(train)
        if valid is None and self.train_split == "auto" and self.early_stopping:
            n -= round(self.validation_fraction * n)
        return n

    def _resolve_recipe(self, n_train: int) -> None:
        """Check the recipe's parameters; set ``max_epochs_`` and ``n_iter_no_change_``."""
        check_recipe(self)
        self.max_epochs_ = (
            auto_max_epochs(n_train) if self.max_epochs == "auto" else int(self.max_epochs)
        )
        patience = self.n_iter_no_change
        self.n_iter_no_change_ = (
            auto_n_iter_no_change(self.max_epochs_) if patience == "auto" else int(patience)
        )

    def _record_epochs(self, first_epoch: int) -> None:
        """Record ``n_epochs_`` (of the last fit) and ``best_epoch_`` (1-based, weights kept)."""
        self.n_epochs_ = len(self.history_) - first_epoch
        self.best_epoch_ = self.n_epochs_
        stopping = dict(self.callbacks_).get("early_stopping")
        if self.restore_best and stopping is not None and stopping.best_epoch_:
            # the epoch whose weights EarlyStopping restored, counted within this fit
            self.best_epoch_ = stopping.best_epoch_ - first_epoch

    def get_params_for_optimizer(self, prefix, named_parameters):
        """The optimizer's parameter groups: ``weight_decay`` on weight matrices only.

        Biases and normalisation scales (parameters with fewer than two dimensions) are
        never decayed, as in ALIGNN's and most transformer recipes; every group gets an
        explicit ``weight_decay`` (AdamW would otherwise apply its own default of 0.01).
        """
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        if prefix != "optimizer" or not args:
            return args, kwargs
        if "weight_decay" in kwargs:
            raise ValueError(
                "set weight_decay=..., not optimizer__weight_decay=... (the estimator's "
                "weight_decay spares biases and normalisation parameters)"
            )
        groups = []
        for group in args[0]:
            group = dict(group) if isinstance(group, dict) else {"params": [group]}
            params = list(group.pop("params"))
            decay = group.pop("weight_decay", self.weight_decay)
            matrices = [p for p in params if p.ndim > 1]
            vectors = [p for p in params if p.ndim <= 1]
            groups += [{**group, "params": matrices, "weight_decay": decay}] if matrices else []
            groups += [{**group, "params": vectors, "weight_decay": 0.0}] if vectors else []
        return (groups, *args[1:]), kwargs

    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params):
        """Continue training the current weights (``fit`` with ``warm_start=True``)."""
        if isinstance(X, CrystalGraphDataset):  # skorch's own fit calls partial_fit
            return super().partial_fit(X, y, classes, **fit_params)
        warm_start = self.warm_start
        self.warm_start = True
        try:
            return self.fit(X, y, **fit_params)
        finally:
            self.warm_start = warm_start

    def _restore_graph_settings(self, graph_builder: CrystalGraphTransformer) -> None:
        table = graph_builder.fit().atom_feature_table_
        self.graph_builder_ = graph_builder
        self.graph_settings_ = (
            float(graph_builder.cutoff),
            int(graph_builder.max_neighbors),
            table.name,
            graph_builder.neighbor_rule,
        )
        self.n_atom_features_ = table.n_features

    def _load_module_state(self, state_dict: dict[str, torch.Tensor]):
        self.initialize()
        self.module_.load_state_dict(state_dict)
        self.module_.eval()
        return self

    @classmethod
    def from_model_file(
        cls,
        description: dict[str, Any],
        tensors: dict[str, torch.Tensor],
        table: Any,
        *,
        device: str = "cpu",
        source: Any = "the model file",
    ):
        """The fitted estimator that a model file describes, rebuilt without training.

        ``description``, ``tensors`` and ``table`` (an AtomFeatureTable) are the parts of
        a model file as :func:`skcrystal.model_files.read_model_file` reads them (or, for
        an ensemble member, its own description and tensors). The estimator gets the
        stored network and training parameters, the stored graph settings with the file's
        atom feature table, and the weights (:meth:`restore`). ``source`` names the file
        in messages.

        The description must name this class or a skcrystal subclass of it:
        ``CrysAEPretrainer.from_model_file`` also rebuilds a ``CrysGNNPretrainer``, and
        ``CrystalGraphNet.from_model_file`` any network estimator of skcrystal.

        Raises
        ------
        ValueError
            ``"<source> holds a <class>, not a <this class>"`` for any other estimator.
        """
        name = description["estimator"]
        classes = [cls]
        for klass in classes:  # cls and its subclasses (all defined: estimators/ is loaded)
            classes += [k for k in klass.__subclasses__() if k not in classes]
        found = [
            k
            for k in classes
            if k.__name__ == name and (k is cls or k.__module__.startswith("skcrystal."))
        ]
        if not found:
            raise ValueError(f"{source} holds a {name}, not a {cls.__name__}")
        training = model_files.restored_training_params(
            description.get("training_params", {}), source
        )
        estimator = found[0](**description["params"], **training, device=device)
        builder = model_files.graph_builder(description, table)
        return estimator.restore(builder, tensors, **model_files.fitted_state(description))


class CrystalGraphRegressorBase(CrystalGraphNet, NeuralNetRegressor):
    """skorch ``NeuralNetRegressor`` on crystal graphs, with targets standardised on the
    training rows and early stopping on the validation MAE in the targets' units.

    See :class:`CGCNNRegressor` for the parameters.
    """

    early_stopping_monitor = "valid_mae"
    fitted_attributes = (*CrystalGraphNet.fitted_attributes, "target_mean_")

    #: The values of ``nonnegative``.
    nonnegative_options = (False, "clip", "softplus")

    def __init__(
        self,
        module,
        *,
        criterion=torch.nn.MSELoss,
        nonnegative: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, criterion=criterion, **kwargs)
        self.nonnegative = nonnegative

    def __sklearn_tags__(self):
        """Regression tags: one or several targets (``y`` 1-D or 2-D)."""
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags

    def scoring_callbacks(self) -> list:
        return [("valid_mae", ValidMAE())]

    def module_params(self) -> dict[str, Any]:
        """The network's keyword arguments (:mod:`skcrystal.nn.protocol`): ``n_atom_features``,
        ``n_targets`` and ``cutoff`` from the training graphs, then the estimator's
        :attr:`module_param_names`."""
        return {
            "n_atom_features": self.n_atom_features_,
            "n_targets": self.n_targets_,
            "cutoff": self.graph_settings_[0],
            **{name: getattr(self, name) for name in self.module_param_names},
        }

    def saved_params(self) -> dict[str, Any]:
        """The network parameters plus ``nonnegative``, which shapes the predictions."""
        return {**super().saved_params(), "nonnegative": self.nonnegative}

    def _check_nonnegative(self, y: np.ndarray, name: str = "y") -> None:
        """Refuse an unknown ``nonnegative`` and, when it is on, negative targets."""
        if self.nonnegative not in self.nonnegative_options:
            raise ValueError(
                f"nonnegative must be False, 'clip' or 'softplus', got {self.nonnegative!r}"
            )
        if self.nonnegative and (y < 0).any():
            row = int(np.flatnonzero((y < 0).any(axis=1))[0])
            raise ValueError(
                f"{name}[{row}] is negative ({y[row].min():g}) but nonnegative="
                f"{self.nonnegative!r} models targets >= 0; remove such rows or set "
                "nonnegative=False"
            )

    def _check_sample_weight(self, sample_weight: Any, n_crystals: int) -> np.ndarray | None:
        """Weights as a float array of shape (n_crystals,) with mean 1, or None."""
        if sample_weight is None:
            return None
        weight = np.asarray(sample_weight, dtype=np.float64)
        if weight.shape != (n_crystals,):
            raise ValueError(
                f"sample_weight must have shape ({n_crystals},), one weight per crystal, "
                f"got {weight.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(weight) | (weight < 0))
        if len(bad):
            raise ValueError(
                f"sample_weight[{bad[0]}] = {weight[bad[0]]:g}: weights must be finite and >= 0"
            )
        if not weight.any():
            raise ValueError("sample_weight is 0 for every crystal: nothing to fit")
        return weight / weight.mean()

    def _check_targets(self, y: Any, n_crystals: int) -> np.ndarray:
        if y is None:
            raise ValueError(f"{type(self).__name__}.fit needs targets y")
        y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y, dtype=np.float64)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D (one column per property), got {y.shape}")
        if len(y) != n_crystals:
            raise ValueError(f"X has {n_crystals} crystals but y has {len(y)} rows")
        bad = np.flatnonzero(~np.isfinite(y).reshape(len(y), -1).all(axis=1))
        if len(bad):
            raise ValueError(f"y[{bad[0]}] is not finite ({len(bad)} rows are NaN or inf)")
        return y.reshape(len(y), -1)

    # --- fit / predict ----------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        validation_data: tuple | None = None,
        sample_weight: Any = None,
        **fit_params,
    ):
        """Fit on crystals ``X`` and targets ``y``.

        Parameters
        ----------
        X : sequence of crystals or CrystalGraphs
            pymatgen Structures (list, array, pandas Series), ASE Atoms, CIF/POSCAR paths,
            or graphs from :class:`~skcrystal.CrystalGraphTransformer`.
        y : array-like of shape (n_crystals,) or (n_crystals, n_properties)
        validation_data : tuple (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
            Crystals used, instead of an internal random split, to pick the best epoch
            (early stopping) and to report ``valid_mae``; unweighted unless the third
            element gives their weights.
        sample_weight : array-like of shape (n_crystals,), optional
            Non-negative weight of each crystal in the loss, as in scikit-learn regressors
            (through a Pipeline: ``pipe.fit(X, y, reg__sample_weight=w)``). The loss of a
            batch is ``mean(w_i * loss_i)`` with ``w`` divided by its mean over ``X``, so
            that multiplying all weights by a constant changes nothing and a crystal of
            weight 0 does not count. The target standardisation uses the weighted mean
            and standard deviation. The weights follow the crystals into the internal
            validation split, where ``valid_loss`` and ``valid_mae`` (hence early
            stopping) are weighted means too.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For targets that are not finite, or negative while ``nonnegative`` is on;
            weights that are negative, not finite or all 0; with ``warm_start=True`` on a
            fitted network, ``y`` with another number of target columns than the
            network's outputs; ``validation_data`` with a ``train_split`` other than
            "auto".
        """
        graphs = self._training_graphs(X)
        y_was_1d = np.ndim(y) == 1
        y = self._check_targets(y, len(graphs))
        self._check_nonnegative(y)
        weight = self._check_sample_weight(sample_weight, len(graphs))
        if self.warm_start and self.initialized_:
            self._check_n_targets(y)
        else:
            self._fit_target_scaling(y, weight)
            self.y_was_1d_ = y_was_1d
        valid = None if validation_data is None else self._validation_dataset(validation_data)
        train = self._training_dataset(graphs, y)
        train.sample_weight = weight
        return self._fit_datasets(train, valid, **fit_params)

    def _fit_target_scaling(self, y: np.ndarray, weight: np.ndarray | None) -> None:
        """The (weighted) mean and standard deviation of the training targets."""
        self.n_targets_ = y.shape[1]
        self.target_mean_ = np.average(y, axis=0, weights=weight)
        scale = np.sqrt(np.average((y - self.target_mean_) ** 2, axis=0, weights=weight))
        self.target_scale_ = np.where(scale > 0, scale, 1.0)

    def _check_n_targets(self, y: np.ndarray, name: str = "y") -> None:
        if y.shape[1] != self.n_targets_:
            raise ValueError(
                f"{name} has {y.shape[1]} target columns but the network, fitted before, "
                f"has {self.n_targets_} output(s); warm_start=True continues that network: "
                "pass the same targets, or set warm_start=False to train a new one"
            )

    def _validation_dataset(self, validation_data: tuple) -> CrystalGraphDataset:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(
                "validation_data must be (X_val, y_val) or (X_val, y_val, sample_weight_val)"
            )
        X_val, y_val, *weight_val = validation_data
        graphs = self._to_graphs(X_val)
        y_val = self._check_targets(y_val, len(graphs))
        self._check_n_targets(y_val, "validation_data's y")
        self._check_nonnegative(y_val, "validation_data's y")
        dataset = self._dataset(graphs, y_val, X_val)
        if weight_val:
            dataset.sample_weight = self._check_sample_weight(weight_val[0], len(graphs))
        return dataset

    def fitted_state(self) -> dict[str, Any]:
        """What besides the weights makes this regressor fitted: the target scaling."""
        check_is_fitted(self, "target_mean_")
        return {
            "target_mean": np.asarray(self.target_mean_).tolist(),
            "target_scale": np.asarray(self.target_scale_).tolist(),
            "y_was_1d": bool(self.y_was_1d_),
        }

    def restore(
        self,
        graph_builder: CrystalGraphTransformer,
        state_dict: dict[str, torch.Tensor],
        *,
        target_mean: Any,
        target_scale: Any,
        y_was_1d: bool = True,
    ):
        """Make this estimator fitted from saved weights, without training.

        ``graph_builder`` fixes the graph settings and atom features; the module is built
        from the estimator's parameters and must accept ``state_dict`` exactly; the other
        arguments are those of :meth:`fitted_state`.
        """
        self._restore_graph_settings(graph_builder)
        self.target_mean_ = np.atleast_1d(np.asarray(target_mean, dtype=np.float64))
        self.target_scale_ = np.atleast_1d(np.asarray(target_scale, dtype=np.float64))
        self.n_targets_ = len(self.target_mean_)
        self.y_was_1d_ = y_was_1d
        return self._load_module_state(state_dict)

    def _training_dataset(self, graphs: CrystalGraphs, y: np.ndarray) -> CrystalGraphDataset:
        """The dataset that ``fit`` trains on (subclasses may attach more targets)."""
        return self._dataset(graphs, y)

    def regularization(self) -> torch.Tensor | float:
        """A penalty added to the training loss (none here; CrysXPP's L1 on its mask)."""
        return 0.0

    # --- loss and outputs -----------------------------------------------------------------
    def get_loss(self, y_pred, y_true, X=None, training=False) -> torch.Tensor:
        """The criterion on standardised targets, weighted by ``X.sample_weight`` if set."""
        return self.target_loss(y_pred, y_true, X)

    def target_loss(self, y_pred, y_true, X=None) -> torch.Tensor:
        """``criterion(y_pred, y_true)``, or ``mean(w_i * loss_i)`` for weighted crystals.

        ``loss_i`` is the criterion with ``reduction="none"`` averaged over the targets of
        crystal ``i``; any torch loss with a ``reduction`` attribute can be weighted.
        """
        y_true = to_tensor(y_true, device=self.device)
        weight = getattr(X, "sample_weight", None)
        if weight is None:
            return self.criterion_(y_pred, y_true)
        if not hasattr(self.criterion_, "reduction"):
            raise TypeError(
                f"sample_weight needs a criterion with a 'reduction' attribute (torch losses "
                f"have one), got {type(self.criterion_).__name__}"
            )
        reduction, self.criterion_.reduction = self.criterion_.reduction, "none"
        try:
            per_value = self.criterion_(y_pred, y_true)
        finally:
            self.criterion_.reduction = reduction
        per_crystal = per_value.reshape(len(per_value), -1).mean(dim=1)
        return (weight.to(per_crystal) * per_crystal).mean()

    def infer(self, x, **fit_params):
        """The network's standardised predictions, made non-negative in original units
        when ``nonnegative="softplus"``: ``(softplus(mean + scale * z) - mean) / scale``.

        The loss (standardised MSE) and ``valid_mae`` are taken on these values, so the
        training fits ``softplus(mean + scale * z)`` to the targets in their units.
        """
        output = super().infer(x, **fit_params)
        if self.nonnegative != "softplus":
            return output
        if isinstance(output, tuple):  # predictions plus extra training outputs
            return (self._softplus_in_units(output[0]), *output[1:])
        return self._softplus_in_units(output)

    def _softplus_in_units(self, z: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.target_mean_, dtype=z.dtype, device=z.device)
        scale = torch.as_tensor(self.target_scale_, dtype=z.dtype, device=z.device)
        return (F.softplus(mean + scale * z) - mean) / scale

    def _dataset(
        self, graphs: CrystalGraphs, y: np.ndarray | None, crystals: Any = None
    ) -> CrystalGraphDataset:
        """The dataset of ``graphs`` (and targets ``y``, if any); ``crystals`` are the items
        the graphs were built from (or the graphs themselves), for subclasses whose inputs
        need more than the graphs (a distillation teacher's vectors)."""
        return CrystalGraphDataset(graphs, y, self.target_mean_, self.target_scale_)

    def predict(self, X: Any) -> np.ndarray:
        """Predict the properties of crystals ``X``, in the units of the training targets.

        Returns
        -------
        ndarray of shape (n_crystals,) or (n_crystals, n_properties)
            1-D when the model was fitted on a 1-D ``y``. Never below 0 when
            ``nonnegative`` is on ("softplus" outputs are clipped too, which only removes
            float round-off).
        """
        check_is_fitted(self, "target_mean_")
        graphs = self._to_graphs(X)
        self._check_settings(graphs)
        scaled = super().predict(self._dataset(graphs, None, X))
        predictions = scaled * self.target_scale_ + self.target_mean_
        if self.nonnegative:
            predictions = np.maximum(predictions, 0.0)
        return predictions.ravel() if self.n_targets_ == 1 and self.y_was_1d_ else predictions

    def embed(self, X: Any) -> np.ndarray:
        """Crystal vectors of the fitted network: its atom vectors (``encode``, see
        :mod:`skcrystal.nn.protocol`) averaged over each crystal's atoms.

        They place crystals in the network's latent space, where
        :class:`skcrystal.uncertainty.LatentDistance` measures how far a crystal is from
        the training crystals.

        Returns
        -------
        ndarray of shape (n_crystals, node_width), float32
        """
        check_is_fitted(self, "target_mean_")
        graphs = self._to_graphs(X)
        self._check_settings(graphs)
        self.module_.eval()
        vectors = []
        with torch.no_grad():
            dataset = self._dataset(graphs, None, X)
            for batch, _ in self.get_iterator(dataset, training=False):
                batch = batch.to(self.device)
                nodes = self.module_.encode(batch)
                vectors.append(mean_pool(nodes, batch.crystal_index, batch.n_atoms).cpu())
        return torch.cat(vectors).numpy()
