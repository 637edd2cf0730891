"""Self-supervised pretraining of crystal graph encoders: the scikit-learn face of CrysAE."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from skcrystal.checkpoints import read_foreign_checkpoint
from skcrystal.estimators.base import CrystalGraphNet, checkpoint_graph_builder
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.graphs import AtomFeatureTable, CrystalGraphs
from skcrystal.nn.crysae import CrysAE, CrysAELoss
from skcrystal.nn.layers import GaussianExpansion

__all__ = ["CrysAEPretrainer"]


class CrysAEPretrainer(CrystalGraphNet):
    """Pretrain the CrysAE crystal graph autoencoder of CrysXPP on unlabelled crystals.

    CrysAE (Das et al., npj Comput. Mater. 8, 43 (2022)) encodes every atom with a CGCNN
    (a linear embedding and ``n_conv`` gated graph convolutions) and learns, without any
    property label, to reconstruct from the atom vectors (a) the connectivity of the
    crystal graph: for each ordered atom pair, how many times the second atom is among the
    first one's neighbours (0 to 5 or more) and (b) the input atom features. The trained
    encoder initialises a :class:`~skcrystal.estimators.CrysXPPRegressor`, which is the
    point of pretraining when labelled crystals are few; :meth:`transform` also gives
    per-crystal embeddings for any other estimator.

    The loss is :class:`~skcrystal.nn.crysae.CrysAELoss`:
    ``0.9 * connectivity cross-entropy + 0.1 * feature binary cross-entropy`` per crystal,
    with class weight 0.1 on "no edge"; set ``criterion__connectivity_weight``,
    ``criterion__no_edge_weight`` or ``criterion__feature_loss="mse"`` to change it. The
    authors decode all ``n_atoms**2`` atom pairs; here each crystal decodes its pairs
    with an edge and at most ``max_pairs`` pairs without one (sampled and reweighted, see
    :func:`~skcrystal.nn.crysae.connectivity_pairs`), which keeps large cells affordable and
    is exact for cells of up to about ``sqrt(max_pairs)`` atoms.

    A skorch ``NeuralNet``: the usual skorch parameters work (``optimizer__*``,
    ``iterator_train__*``, ``callbacks``, ``warm_start``, ``module__*``).

    Parameters
    ----------
    atom_fea_len : int, default=64
        Width of the atom vectors, and so of the embeddings.
    n_conv : int, default=3
        Number of graph convolutions.
    max_pairs : int or None, default=1024
        Atom pairs without an edge decoded at most per crystal and batch; None decodes all
        pairs, as the authors do (time and memory then grow with the square of the cell
        size).
    gaussian_step : float, default=0.2
        Spacing and width (Å) of the Gaussians expanding the bond lengths.
    graph_builder : CrystalGraphTransformer, default=None
        Used when ``X`` holds structures; None means ``CrystalGraphTransformer()`` (8 Å, 12
        neighbours, CGCNN features), the graphs of the authors.
    early_stopping : bool, default=True
        Keep the epoch with the lowest validation reconstruction loss (``valid_loss``)
        and stop after ``n_iter_no_change`` epochs without improvement. The validation
        crystals are ``validation_data`` when given to :meth:`fit`, otherwise a random
        ``validation_fraction`` of ``X``.
    validation_fraction : float, default=0.1
    n_iter_no_change : int or "auto", default=10
    restore_best : bool, default=True
        Keep the weights of the best validation epoch (else those of the last one).
    random_state : int, default=None
        Seeds initialisation, shuffling, the validation split and the pair sampling; the
        global torch RNG is left untouched.
    train_split : "auto" or skorch split, default="auto"
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=3e-3
        The authors' learning rate (Adam).
    lr_schedule, warmup_epochs, weight_decay
        As :class:`~skcrystal.CGCNNRegressor`, but ``lr_schedule="constant"`` by default:
        pretraining keeps the authors' recipe (Adam 3e-3, constant rate, 100 epochs,
        batch 128), which the comparison that chose the regressors' defaults
        (:mod:`skcrystal.recipes`) did not cover.
    max_epochs : int or "auto", default=100
    batch_size : int, default=128
    checkpoint : str or path-like, default=None
        As :class:`~skcrystal.CGCNNRegressor`: a file that a stopped fit resumes from.
    verbose : int, default=0
    device : str, default="cpu"
    **kwargs
        Other skorch parameters.

    Attributes
    ----------
    module_ : CrysAE
        The trained autoencoder.
    history_ : skorch History
        Per-epoch ``train_loss`` and ``valid_loss`` (reconstruction loss, mean per crystal).
    graph_builder_ : CrystalGraphTransformer
    graph_settings_ : tuple
        ``(cutoff, max_neighbors, atom feature table name)`` of the training graphs.
    n_atom_features_ : int

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2)]
    >>> ae = CrysAEPretrainer(max_epochs=2, early_stopping=False, random_state=0)
    >>> ae.fit(crystals).transform(crystals).shape
    (4, 64)
    """

    def __init__(
        self,
        module: type[torch.nn.Module] = CrysAE,
        *,
        criterion: type[torch.nn.Module] = CrysAELoss,
        atom_fea_len: int = 64,
        n_conv: int = 3,
        max_pairs: int | None = 1024,
        gaussian_step: float = 0.2,
        n_iter_no_change: int | str = 10,
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        lr: float = 3e-3,
        lr_schedule: Any = "constant",
        max_epochs: int | str = 100,
        batch_size: int = 128,
        **kwargs: Any,
    ) -> None:
        # The pretraining recipe of the authors (Adam 3e-3, constant), not the regressors'
        # measured recipe (skcrystal.recipes): only the defaults that differ are spelt out.
        super().__init__(
            module,
            criterion=criterion,
            n_iter_no_change=n_iter_no_change,
            optimizer=optimizer,
            lr=lr,
            lr_schedule=lr_schedule,
            max_epochs=max_epochs,
            batch_size=batch_size,
            **kwargs,
        )
        self.atom_fea_len = atom_fea_len
        self.n_conv = n_conv
        self.max_pairs = max_pairs
        self.gaussian_step = gaussian_step

    # Decoder heads of other versions of the authors' autoencoder (an edge-distance decoder
    # in early CrysXPP code, a space-group head in CrysGNN) that the module does not have;
    # their weights are skipped when a checkpoint is loaded.
    foreign_heads = ("fc_edge.", "fc2.", "fc_sg.")

    # --- module and loss ------------------------------------------------------------------
    def module_params(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~skcrystal.nn.crysae.CrysAE`."""
        return {
            "n_atom_features": self.n_atom_features_,
            "cutoff": self.graph_settings_[0],
            "gaussian_step": self.gaussian_step,
            "atom_fea_len": self.atom_fea_len,
            "n_conv": self.n_conv,
            "max_pairs": self.max_pairs,
        }

    def get_loss(self, y_pred, y_true=None, X=None, training=False) -> torch.Tensor:
        """The reconstruction loss of a batch (there are no targets)."""
        return self.criterion_(y_pred)

    def _check_feature_range(self, graphs: CrystalGraphs) -> None:
        criterion = self.get_params_for("criterion")
        if criterion.get("feature_loss", "bce") != "bce":
            return
        values = graphs.atom_features.values[graphs.atom_features.known]
        if values.size and (values.min() < 0 or values.max() > 1):
            raise ValueError(
                f"the atom feature table {graphs.atom_features.name!r} has values outside "
                "[0, 1], which binary cross-entropy cannot reconstruct; scale the table to "
                "[0, 1] or set criterion__feature_loss='mse'"
            )

    # --- fit / transform ------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, validation_data: Any = None, **fit_params):
        """Pretrain on crystals ``X``; no labels are used.

        Parameters
        ----------
        X : sequence of crystals or CrystalGraphs
            pymatgen Structures (list, array, pandas Series), ASE Atoms, CIF/POSCAR paths,
            or graphs from :class:`~skcrystal.CrystalGraphTransformer`.
        y : None
            Ignored; there for scikit-learn pipelines.
        validation_data : sequence of crystals or CrystalGraphs, optional
            Crystals used, instead of an internal random split, to pick the best epoch
            (early stopping) and to report ``valid_loss``.

        Returns
        -------
        self
        """
        graphs = self._training_graphs(X)
        self._check_feature_range(graphs)
        valid = None
        if validation_data is not None:
            valid = CrystalGraphDataset(self._to_graphs(validation_data))
        return self._fit_datasets(CrystalGraphDataset(graphs), valid, **fit_params)

    def _batches(self, X: Any):
        """Batches of ``X`` for inference, with the module and loss in eval mode."""
        check_is_fitted(self, "graph_settings_")
        graphs = self._to_graphs(X)
        self._check_settings(graphs)
        self._set_training(False)
        for inputs, _ in self.get_iterator(CrystalGraphDataset(graphs), training=False):
            yield inputs.to(self.device)

    def transform(self, X: Any) -> np.ndarray:
        """Crystal embeddings: the encoder's atom vectors averaged over each crystal.

        Parameters
        ----------
        X : sequence of crystals or CrystalGraphs

        Returns
        -------
        ndarray of shape (n_crystals, atom_fea_len), float32
        """
        with torch.no_grad():
            parts = [self.module_.embed(batch).cpu().numpy() for batch in self._batches(X)]
        return np.concatenate(parts)

    def predict(self, X: Any):
        """Refused: a pretrainer has no property head (use :meth:`transform`)."""
        raise TypeError(
            f"{type(self).__name__} predicts no property: use transform(X) for embeddings, "
            "or a regressor that starts from this encoder"
        )

    predict_proba = predict

    def fit_transform(self, X: Any, y: Any = None, **fit_params) -> np.ndarray:
        """Pretrain on ``X``, then return its embeddings (see :meth:`transform`)."""
        return self.fit(X, y, **fit_params).transform(X)

    def score(self, X: Any, y: Any = None) -> float:
        """Minus the mean reconstruction loss per crystal of ``X`` (higher is better).

        The loss of :attr:`history_`'s ``valid_loss``, computed in eval mode, so that
        model selection tools (``GridSearchCV``) can compare pretrainers.
        """
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self._batches(X):
                total += float(self.get_loss(self.infer(batch))) * len(batch)
                count += len(batch)
        return -total / count

    # --- saving ----------------------------------------------------------------------------
    module_param_names = ("atom_fea_len", "n_conv", "max_pairs", "gaussian_step")

    def fitted_state(self) -> dict[str, Any]:
        """What besides the weights makes a pretrainer fitted: nothing (see skcrystal.hub)."""
        check_is_fitted(self, "graph_settings_")
        return {}

    def restore(self, graph_builder, state_dict: dict[str, torch.Tensor]):
        """Make this pretrainer fitted from saved weights, without training."""
        self._restore_graph_settings(graph_builder)
        return self._load_module_state(state_dict)

    # --- the authors' weights -------------------------------------------------------------
    @classmethod
    def from_authors_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        atom_features: str | os.PathLike[str] | AtomFeatureTable = "cgcnn-authors",
        cutoff: float = 8.0,
        max_neighbors: int = 12,
        device: str = "cpu",
    ) -> CrysAEPretrainer:
        """Load the authors' pretrained CrysAE (``model_pretrain.pth``) as a fitted pretrainer.

        The file, a whole pickled ``torch.nn.Module``, is read with
        :func:`~skcrystal.checkpoints.read_foreign_checkpoint`, which runs none of its
        code. ``atom_fea_len``, ``n_conv`` and the number of atom features are read off the
        weight shapes. Weights of decoder heads that CrysAE lacks (``fc_edge``/``fc2`` of
        early CrysXPP code, ``fc_sg`` of CrysGNN) are skipped. The result transforms at
        once, initialises a :class:`~skcrystal.estimators.CrysXPPRegressor`
        (``encoder=``), or trains further with ``warm_start=True``.

        The authors trained it on the 36,737 MP crystals of
        :func:`~skcrystal.datasets.load_mp_formation_energy` with their ``atom_init.json``,
        the default ``"cgcnn-authors"`` table, which reproduces their inputs exactly
        (skcrystal's rebuilt ``"cgcnn"`` agrees with it on 78 of 100 elements, see
        :mod:`skcrystal.graphs.atom_features`).

        Parameters
        ----------
        path : str or path-like
            The checkpoint.
        atom_features : {"cgcnn-authors", "cgcnn"}, path or AtomFeatureTable, \
default="cgcnn-authors"
        cutoff : float, default=8.0
            Neighbour radius in Å used in pretraining; it fixes the number of Gaussians
            (step 0.2 Å), which must match the weights.
        max_neighbors : int, default=12
        device : str, default="cpu"

        Returns
        -------
        CrysAEPretrainer
            Fitted, with ``module_`` in eval mode.

        Raises
        ------
        ValueError
            If the file holds no CrysAE weights, or its shapes do not match ``cutoff`` or
            the width of ``atom_features``.
        UnsafeCheckpointError
            If reading the file would require running pickled code.

        Examples
        --------
        >>> from skcrystal.datasets import get_data_home
        >>> path = get_data_home() / "reference_weights" / "crysxpp" / "model_pretrain.pth"
        >>> ae = CrysAEPretrainer.from_authors_checkpoint(path)
        >>> ae.atom_fea_len, ae.n_conv, ae.module_.embedding.bias is None
        (64, 3, True)
        """
        state = {
            key: value
            for key, value in read_foreign_checkpoint(path)["state_dict"].items()
            if not key.startswith(cls.foreign_heads)
        }
        try:
            atom_fea_len, n_atom_features = state["embedding.weight"].shape
            n_classes = len(state["fc_adj.weight"])
            edge_fea_len = state["convs.0.fc_full.weight"].shape[1] - 2 * atom_fea_len
            state["fc_atom_feature.weight"]
        except KeyError as err:
            raise ValueError(f"{path} does not hold CrysAE weights (no {err})") from None
        builder = checkpoint_graph_builder(
            path, edge_fea_len, n_atom_features, cutoff, max_neighbors, atom_features
        )
        extra = {} if n_classes == 6 else {"module__n_classes": n_classes}
        ae = cls(
            atom_fea_len=atom_fea_len,
            n_conv=sum(key.endswith("fc_full.weight") for key in state),
            graph_builder=builder,
            device=device,
            **extra,
        )
        ae._restore_graph_settings(clone(builder))
        state.setdefault("expansion.centres", GaussianExpansion(cutoff).centres)
        try:
            return ae._load_module_state(state)
        except RuntimeError as err:
            raise ValueError(f"{path} does not match the CrysAE architecture: {err}") from None
