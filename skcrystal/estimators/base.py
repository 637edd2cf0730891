"""Shared skorch machinery of the crystal graph estimators.

Input coercion (structures or :class:`CrystalGraphs`), target standardisation fitted on
the training rows, the internal validation split, early stopping on validation MAE,
seeding, and batching through :class:`CrystalGraphDataset`.
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet, NeuralNetRegressor
from skorch.callbacks import EarlyStopping, ProgressBar
from torch.utils.data import Subset

from skcrystal.estimators.callbacks import ValidMAE
from skcrystal.estimators.data import CrystalGraphDataset, root_dataset
from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer
from skcrystal.graphs.atom_features import get_atom_feature_table
from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.layers import GaussianExpansion


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
        n_iter_no_change: int = 20,
        random_state: int | None = None,
        train_split: Any = "auto",
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        lr: float = 1e-3,
        max_epochs: int = 100,
        batch_size: int = 128,
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
        self.random_state = random_state

    #: Parameters that hold fitted inputs (a pretrained encoder, a teacher): clones share
    #: them instead of cloning them unfitted; a dict value is copied one level deep.
    shared_params: tuple[str, ...] = ()

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
    def get_default_callbacks(self) -> list:
        callbacks = [*super().get_default_callbacks(), *self.scoring_callbacks()]
        if self.early_stopping:
            stopping = EarlyStopping(
                monitor=self.early_stopping_monitor,
                patience=self.n_iter_no_change,
                load_best=True,
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
    def default_graph_builder(self) -> CrystalGraphTransformer:
        """The graph builder used when ``graph_builder`` is None."""
        return CrystalGraphTransformer()

    def _to_graphs(self, X: Any) -> CrystalGraphs:
        if isinstance(X, CrystalGraphs):
            return X
        if isinstance(X, (list, tuple)) and X and all(isinstance(x, CrystalGraphs) for x in X):
            return CrystalGraphs.concatenate(X)  # scikit-learn's list indexing of CrystalGraphs
        builder = getattr(self, "graph_builder_", None)
        if builder is None:
            builder = clone(self.graph_builder or self.default_graph_builder())
        return builder.transform(X)

    def _check_settings(self, graphs: CrystalGraphs) -> None:
        expected = self.graph_settings_
        found = (graphs.cutoff, graphs.max_neighbors, graphs.atom_features.name)
        if found != expected:
            raise ValueError(
                f"graphs built with (cutoff, max_neighbors, atom_features)={found}, but the "
                f"model was fitted on {expected}; build them with the same transformer"
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
            self.graph_settings_ = (graphs.cutoff, graphs.max_neighbors, graphs.atom_features.name)
            self.n_atom_features_ = graphs.atom_features.n_features
        self._check_settings(graphs)
        return graphs

    def _fit_datasets(
        self, train: CrystalGraphDataset, valid: CrystalGraphDataset | None, **fit_params
    ):
        """Train on ``train``, validating on ``valid`` (or per ``train_split`` when None)."""
        if valid is not None:
            self._check_settings(valid.graphs)
        self.validation_set_ = valid
        if self.warm_start and self.initialized_:
            self.initialize_callbacks()  # parameters such as early_stopping may have changed
        try:
            with seeded(self.random_state, self.device):
                super().fit(train, None, **fit_params)
        finally:
            self.validation_set_ = None
        return self

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
        )
        self.n_atom_features_ = table.n_features

    def _load_module_state(self, state_dict: dict[str, torch.Tensor]):
        self.initialize()
        self.module_.load_state_dict(state_dict)
        self.module_.eval()
        return self


class CrystalGraphRegressorBase(CrystalGraphNet, NeuralNetRegressor):
    """skorch ``NeuralNetRegressor`` on crystal graphs, with targets standardised on the
    training rows and early stopping on the validation MAE in the targets' units.

    See :class:`CGCNNRegressor` for the parameters.
    """

    early_stopping_monitor = "valid_mae"

    def __init__(self, module, *, criterion=torch.nn.MSELoss, **kwargs: Any) -> None:
        super().__init__(module, criterion=criterion, **kwargs)

    def scoring_callbacks(self) -> list:
        return [("valid_mae", ValidMAE())]

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
    def fit(self, X: Any, y: Any = None, *, validation_data: tuple | None = None, **fit_params):
        """Fit on crystals ``X`` and targets ``y``.

        Parameters
        ----------
        X : sequence of crystals or CrystalGraphs
            pymatgen Structures (list, array, pandas Series), ASE Atoms, CIF/POSCAR paths,
            or graphs from :class:`~skcrystal.CrystalGraphTransformer`.
        y : array-like of shape (n_crystals,) or (n_crystals, n_properties)
        validation_data : tuple (X_val, y_val), optional
            Crystals used, instead of an internal random split, to pick the best epoch
            (early stopping) and to report ``valid_mae``.

        Returns
        -------
        self
        """
        graphs = self._training_graphs(X)
        y_was_1d = np.ndim(y) == 1
        y = self._check_targets(y, len(graphs))
        if not (self.warm_start and self.initialized_):
            self.n_targets_ = y.shape[1]
            self.target_mean_ = y.mean(axis=0)
            scale = y.std(axis=0)
            self.target_scale_ = np.where(scale > 0, scale, 1.0)
            self.y_was_1d_ = y_was_1d
        valid = None
        if validation_data is not None:
            X_val, y_val = validation_data
            graphs_val = self._to_graphs(X_val)
            valid = self._dataset(graphs_val, self._check_targets(y_val, len(graphs_val)))
        return self._fit_datasets(self._training_dataset(graphs, y), valid, **fit_params)

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

    def _dataset(self, graphs: CrystalGraphs, y: np.ndarray | None) -> CrystalGraphDataset:
        return CrystalGraphDataset(graphs, y, self.target_mean_, self.target_scale_)

    def predict(self, X: Any) -> np.ndarray:
        """Predict the properties of crystals ``X``, in the units of the training targets.

        Returns
        -------
        ndarray of shape (n_crystals,) or (n_crystals, n_properties)
            1-D when the model was fitted on a 1-D ``y``.
        """
        check_is_fitted(self, "target_mean_")
        graphs = self._to_graphs(X)
        self._check_settings(graphs)
        scaled = super().predict(self._dataset(graphs, None))
        predictions = scaled * self.target_scale_ + self.target_mean_
        return predictions.ravel() if self.n_targets_ == 1 and self.y_was_1d_ else predictions
