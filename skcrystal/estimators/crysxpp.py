"""CrysXPP: property prediction from a pretrained CrysAE encoder, with feature selection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted

from skcrystal.checkpoints import read_foreign_checkpoint
from skcrystal.estimators.pretrainers import CrysAEPretrainer
from skcrystal.estimators.regressors import CGCNNRegressor
from skcrystal.estimators.transfer import copy_encoder_weights
from skcrystal.explain import property_importances
from skcrystal.graphs import AtomFeatureTable
from skcrystal.graphs.atom_features import get_atom_feature_table
from skcrystal.model_files import available_models, load_as
from skcrystal.nn.crysae import MaskedCGCNN

__all__ = ["CrysXPPRegressor"]


class CrysXPPRegressor(CGCNNRegressor):
    """CrysXPP regressor (Das et al., npj Comput. Mater. 8, 43 (2022)).

    A CGCNN whose convolutions start from those of an encoder pretrained without labels
    (:class:`~skcrystal.estimators.CrysAEPretrainer`, or the authors' CrysAE), and whose
    input atom features are multiplied by a learnable feature selector ``mask`` (one entry
    per feature column, initialised to 1). The training loss is the MSE of the
    standardised targets plus ``l1 * mean(|mask|)``, which shrinks the entries of the
    columns the property does not need; :attr:`feature_importances_` and :meth:`explain`
    read them back, per column and per element property.

    Everything else is :class:`~skcrystal.estimators.CGCNNRegressor`: same parameters,
    target standardisation, validation split and early stopping on ``valid_mae``.

    Parameters
    ----------
    encoder : CrysAEPretrainer, str, path or None, default="crysae-mp"
        The pretrained encoder: a fitted :class:`CrysAEPretrainer`, one saved with
        :func:`skcrystal.hub.save_model` (its ``.safetensors`` path or bundled name), or the
        path of the authors' ``model_pretrain.pth``. The default is the CrysAE bundled
        with the package (pretrained on the 36,737 MP crystals, default graphs), as used
        by ``skcrystal fit``. Its convolution weights (``convs.*``, batch-norm statistics
        included) initialise those of the regressor; ``atom_fea_len`` and ``n_conv`` must
        match it. It is read, never modified, each time the network is initialised, and
        :func:`sklearn.base.clone` shares it between clones (as a fitted input, like a
        path, it is not refitted). None starts from a random initialisation (no
        pretraining: a CGCNN with a feature selector), e.g. to measure what pretraining
        brings. Models restored from weights (:func:`skcrystal.hub.load_model`,
        :meth:`from_authors_checkpoint`) have ``encoder=None``: their weights come from
        the file.
    l1 : float, default=0.01
        Weight of the L1 penalty on the mask, added to the training loss only
        (``valid_loss`` stays the plain standardised MSE): ``l1 * mean(|mask|)``, the
        form and default weight of the authors' script (whose released
        ``model_best.pth.tar`` was trained with the penalty switched off). Choose it on
        validation data, e.g. with ``GridSearchCV``; docs/benchmarks.md shows the effect.
    transfer_embedding : bool, default=True
        Also initialise the input embedding from the encoder when its shape matches. The
        CrysAE embedding has no bias, so the regressor's bias starts at 0 and the network
        starts as exactly the pretrained encoder followed by a fresh head. The authors'
        code instead re-initialises the embedding (False here).
    atom_fea_len, n_conv, h_fea_len, n_h, gaussian_step, nonnegative, graph_builder, \
checkpoint, **kwargs
        As :class:`CGCNNRegressor` (``h_fea_len=128``, ``n_conv=3``, ``atom_fea_len=64``
        are the authors' settings too).

    Attributes
    ----------
    module_ : MaskedCGCNN
        The trained network; ``module_.mask`` is the feature selector.
    transferred_params_ : tuple of str
        Names of the parameters and buffers initialised from the encoder (empty with
        ``encoder=None``).
    feature_importances_ : ndarray of shape (n_atom_features,)
        ``|mask|``.
    history_, target_mean_, target_scale_, n_targets_, graph_builder_
        As :class:`CGCNNRegressor`.

    Notes
    -----
    Reading ``|mask|`` as importance needs care, as in the original method. The mask
    feeds a linear embedding, so scaling an entry down and the matching embedding column
    up leaves the network unchanged: only the L1 penalty sets the scale, and importances
    compare columns with each other, not with an absolute level. With Adam, the penalty
    moves every entry by about the learning rate per step whatever ``l1`` is, as long
    as it outweighs the data gradient; in short runs a strong penalty shrinks all entries
    alike (used or not), and telling columns apart needs long training. A column never
    set in the training crystals gets no data gradient and only shrinks.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2, 4.3, 4.4)]
    >>> ae = CrysAEPretrainer(max_epochs=2, early_stopping=False, random_state=0)
    >>> ae = ae.fit(crystals)  # unlabelled crystals: usually many more than labelled ones
    >>> reg = CrysXPPRegressor(encoder=ae, max_epochs=3, early_stopping=False, random_state=0)
    >>> reg.fit(crystals, [3.9, 4.0, 4.1, 4.2, 4.3, 4.4]).predict(crystals[:2]).shape
    (2,)
    >>> reg.feature_importances_.shape
    (92,)
    >>> table = reg.explain()  # one row per element property, most important first
    >>> table.columns.tolist(), len(table)
    (['importance', 'n_columns', 'total'], 9)
    """

    def __init__(
        self,
        module: type[torch.nn.Module] = MaskedCGCNN,
        *,
        encoder: CrysAEPretrainer | str | os.PathLike[str] | None = "crysae-mp",
        l1: float = 0.01,
        transfer_embedding: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, **kwargs)  # the CGCNNRegressor parameters, same defaults
        self.encoder = encoder
        self.l1 = l1
        self.transfer_embedding = transfer_embedding

    def saved_params(self) -> dict[str, Any]:
        """Network parameters plus the penalty, so that a loaded model trains on alike."""
        return {
            **super().saved_params(),
            "l1": self.l1,
            "transfer_embedding": self.transfer_embedding,
        }

    # --- scikit-learn plumbing ------------------------------------------------------------
    shared_params = ("encoder",)

    # --- encoder transfer -----------------------------------------------------------------
    def _encoder_state(self) -> tuple[dict[str, torch.Tensor], tuple | None, str]:
        """The encoder's tensors, its graph settings (if known) and a name for messages."""
        encoder = self.encoder
        if isinstance(encoder, CrysAEPretrainer):
            check_is_fitted(encoder, "graph_settings_", msg="the encoder is not fitted")
            return encoder.module_.state_dict(), encoder.graph_settings_, "the encoder"
        if isinstance(encoder, (str, os.PathLike)):
            if str(encoder).endswith(".safetensors") or str(encoder) in available_models():
                loaded = load_as(CrysAEPretrainer, encoder, source=encoder)
                return loaded.module_.state_dict(), loaded.graph_settings_, str(encoder)
            return read_foreign_checkpoint(encoder)["state_dict"], None, str(Path(encoder))
        raise ValueError(
            "encoder must be a fitted CrysAEPretrainer, a saved one (.safetensors path or "
            "bundled name) or the path of the authors' CrysAE checkpoint "
            f"(model_pretrain.pth), got {type(encoder).__name__}"
        )

    def _transfer_encoder(self) -> None:
        state, settings, name = self._encoder_state()
        self.transferred_params_ = copy_encoder_weights(
            self.module_, state, settings, self.graph_settings_, name, self.transfer_embedding
        )

    def initialize_module(self):
        """Build the network and, when an encoder is set, copy its weights in."""
        super().initialize_module()
        self.transferred_params_ = ()
        if self.encoder is not None:
            self._transfer_encoder()
        return self

    # --- training -------------------------------------------------------------------------
    def get_loss(self, y_pred, y_true, X=None, training=False) -> torch.Tensor:
        """Standardised MSE, plus ``l1 * mean(|mask|)`` in training."""
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training:
            loss = loss + self.regularization()
        return loss

    def regularization(self) -> torch.Tensor | float:
        """The L1 penalty on the feature selector, ``l1 * mean(|mask|)``."""
        return self.l1 * self.module_.mask.abs().mean() if self.l1 else 0.0

    def restore(self, graph_builder, state_dict, **fitted):
        """Make this estimator fitted from saved weights; sets ``encoder=None``.

        The weights come from ``state_dict``, so the encoder is neither read nor needed.
        """
        self.encoder = None
        return super().restore(graph_builder, state_dict, **fitted)

    # --- explanations ---------------------------------------------------------------------
    @property
    def feature_importances_(self) -> np.ndarray:
        """``|mask|``: the learnt weight of each input atom feature column, (n_atom_features,)."""
        check_is_fitted(self, "target_mean_")
        return self.module_.mask.detach().abs().cpu().numpy().astype(np.float64)

    def explain(self, X: Any = None, properties: Sequence[str] | None = None) -> pd.DataFrame:
        """Importance of each element property: the mean ``|mask|`` over its columns.

        A property's importance does not grow with the number of columns it is encoded
        on (see :func:`skcrystal.explain.property_importances`). Given crystals ``X``, it
        is the average gate the mask applies to that property for their atoms: the mean
        of ``|mask|`` over the property's columns, weighted by how many atoms of ``X``
        (occupancy-weighted) fall in each column. That answers "what matters for these
        crystals" and leaves out bins no atom of ``X`` has.

        Parameters
        ----------
        X : sequence of crystals or CrystalGraphs, optional
            Crystals whose atoms weight the columns. Default: every column counts alike.
        properties : sequence of str, optional
            The element property of each feature column. Default: the ``properties`` of
            the atom feature table of the training graphs (group, period,
            electronegativity, ... for ``"cgcnn"`` and ``"cgcnn-authors"``). A table read
            from an ``atom_init.json`` file does not know its columns' properties; for a
            file with the CGCNN layout, pass ``cgcnn_atom_features().properties``.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``property``, sorted by decreasing ``importance``, with
            ``n_columns`` and ``total`` (the sum of ``|mask|`` over the columns).
            ``attrs["uniformity"]`` says how far the whole mask is from uniform (1: not at all,
            see :func:`skcrystal.explain.mask_uniformity`).

        Warns
        -----
        MaskNotSelectiveWarning
            When the mask is nearly uniform (an unpenalised or weakly penalised fit): its
            ranking then reflects noise, not the element properties.

        Notes
        -----
        A column that is zero for every atom of the training crystals (an element property
        bin none of them has) gets no gradient from the data, so the L1 penalty alone
        shrinks it: a small importance means "unused by the model", which includes
        "absent from the data". Passing ``X`` leaves such columns out for its atoms.
        """
        importances = self.feature_importances_
        table = get_atom_feature_table(self.graph_builder_.atom_features)
        if properties is None:
            properties = table.properties
        weights = None
        if X is not None:
            graphs = self._to_graphs(X)
            self._check_settings(graphs)
            features = graphs.atom_features.lookup(graphs.species_z)
            weights = (features * graphs.species_occupancy[:, None]).sum(axis=0)
        return property_importances(importances, properties, weights)

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
    ) -> CrysXPPRegressor:
        """Load a trained CrysXPP checkpoint (``model_best.pth.tar``) as a fitted regressor.

        The feature selector ``mask``, the CGCNN weights and the target normalizer are
        read with :func:`~skcrystal.checkpoints.read_foreign_checkpoint` (no pickled code
        is run), and the architecture off the weight shapes, as
        :meth:`CGCNNRegressor.from_cgcnn_checkpoint` does. The authors' released file
        predicts MP formation energy per atom (eV/atom; trained on 20% of the 36,737
        crystals of :func:`~skcrystal.datasets.load_mp_formation_energy`, MAE 0.142 on a
        70% test split). The default ``atom_features="cgcnn-authors"`` is the authors'
        ``atom_init.json``, their exact inputs.

        The regressor has no ``encoder``: it predicts, explains (:meth:`explain`; give
        ``properties`` when ``atom_features`` is a file), and can be fine-tuned with
        ``warm_start=True``.

        Parameters
        ----------
        path : str or path-like
        atom_features : {"cgcnn-authors", "cgcnn"}, path or AtomFeatureTable, \
default="cgcnn-authors"
        cutoff : float, default=8.0
        max_neighbors : int, default=12
        device : str, default="cpu"

        Returns
        -------
        CrysXPPRegressor
            Fitted, with ``module_`` in eval mode.

        Raises
        ------
        ValueError
            If the checkpoint has no ``mask`` (a plain CGCNN: use
            :meth:`CGCNNRegressor.from_cgcnn_checkpoint`), or for the reasons of
            :meth:`CGCNNRegressor.from_cgcnn_checkpoint`.

        Examples
        --------
        >>> from skcrystal.datasets import get_data_home
        >>> path = get_data_home() / "reference_weights" / "crysxpp" / "model_best.pth.tar"
        >>> reg = CrysXPPRegressor.from_authors_checkpoint(path)
        >>> reg.n_conv, reg.h_fea_len, round(float(reg.target_mean_[0]), 3)
        (3, 128, -1.557)
        """
        if "mask" not in read_foreign_checkpoint(path)["state_dict"]:
            raise ValueError(
                f"{path} has no feature selector 'mask': it is not a CrysXPP checkpoint. "
                "Load a plain CGCNN checkpoint with CGCNNRegressor.from_cgcnn_checkpoint"
            )
        return cls.from_cgcnn_checkpoint(
            path,
            atom_features=atom_features,
            cutoff=cutoff,
            max_neighbors=max_neighbors,
            device=device,
        )
