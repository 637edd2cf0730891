"""Property regressors: the scikit-learn face of the crystal graph networks."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from skcrystal.checkpoints import read_foreign_checkpoint
from skcrystal.estimators.base import CrystalGraphRegressorBase, checkpoint_graph_builder
from skcrystal.graphs import AtomFeatureTable, CrystalGraphTransformer
from skcrystal.nn.cgcnn import CGCNN
from skcrystal.nn.layers import GaussianExpansion


class CGCNNRegressor(CrystalGraphRegressorBase):
    """Crystal Graph Convolutional Neural Network regressor (Xie & Grossman, PRL 2018).

    A skorch ``NeuralNetRegressor``: every skorch parameter works (``optimizer__*``,
    ``iterator_train__*``, ``callbacks``, ``warm_start`` ...), and so do ``module__*``
    overrides. Targets are standardised with the mean and standard deviation of the
    training rows; predictions come back in the original units. :meth:`fit` takes
    ``sample_weight`` (a weighted loss, as scikit-learn regressors do).

    Parameters
    ----------
    atom_fea_len : int, default=64
        Width of the atom vectors in the convolutions.
    n_conv : int, default=3
        Number of graph convolutions.
    h_fea_len : int, default=128
        Width of the hidden layers of the head.
    n_h : int, default=1
        Number of hidden layers of the head.
    gaussian_step : float, default=0.2
        Spacing and width (Å) of the Gaussians that expand each bond length; they span 0
        to the graphs' cutoff.
    nonnegative : {False, "clip", "softplus"}, default=False
        For targets that cannot be negative (band gaps, moduli). "clip" trains as usual
        and clips the predictions at 0 in :meth:`predict` (in the targets' units, after
        undoing the standardisation). "softplus" makes the output non-negative during
        training too: the network's standardised output ``z`` becomes the prediction
        ``softplus(target_mean_ + target_scale_ * z)`` in the targets' units, and the loss
        is taken on that prediction (still standardised, so its scale does not change);
        the softplus bends over about 1 unit of the target (1 eV for gaps in eV). Either
        way :meth:`fit` refuses negative targets, and predictions are never below 0.
        Stored by :func:`skcrystal.hub.save_model`.
    graph_builder : CrystalGraphTransformer, default=None
        Used when ``X`` holds structures rather than :class:`~skcrystal.CrystalGraphs`;
        None means ``CrystalGraphTransformer()`` (8 Å, 12 neighbours, CGCNN features).
    early_stopping : bool, default=True
        Keep the epoch with the lowest validation MAE (see ``restore_best``) and stop
        after ``n_iter_no_change`` epochs without improvement. The validation crystals
        are ``validation_data`` when given to :meth:`fit`, otherwise a random
        ``validation_fraction`` of the training crystals. Set it to False to train for
        exactly ``max_epochs`` on all crystals (e.g. inside an outer cross-validation).
        With ``train_split=None`` there are no validation crystals: early stopping is
        then off, with a warning.
    validation_fraction : float, default=0.1
    n_iter_no_change : int or "auto", default="auto"
        Patience of early stopping, in epochs. "auto" (resolved in :meth:`fit`, recorded
        as ``n_iter_no_change_``) is half the epochs, at least 20
        (:func:`skcrystal.recipes.auto_n_iter_no_change`).
    restore_best : bool, default=True
        With early stopping, end with the weights of the best validation epoch
        (``best_epoch_``) rather than those of the last epoch.
    random_state : int, default=None
        Seeds initialisation, shuffling and the validation split: two fits with the same
        value on the CPU give identical models. Leaves the global torch RNG untouched.
    train_split : "auto", None or skorch split, default="auto"
        "auto" follows ``early_stopping`` / ``validation_data`` as above; anything else is
        passed to skorch unchanged (None: no validation; ``validation_data`` then is
        refused, as it would be ignored).
    optimizer : torch optimizer class, default=torch.optim.AdamW
    lr : float, default=3e-3
        Base (peak) learning rate.
    lr_schedule : {"cosine", "constant", "onecycle", "plateau"} or skorch LRScheduler, \
default="cosine"
        How the learning rate moves during a fit: "cosine" decays it from ``lr`` to 0
        over all mini-batches of the ``max_epochs_`` epochs; "constant" keeps it;
        "onecycle" is PyTorch's one-cycle policy with peak ``lr``; "plateau" halves it
        after 10 epochs without a better validation score. A skorch ``LRScheduler`` is
        used as given (e.g. ``LRScheduler("MultiStepLR", milestones=[100])``). See
        :class:`~skcrystal.estimators.callbacks.LearningRateSchedule`.
    warmup_epochs : float, default=0
        Linear warm-up of the learning rate over this many epochs ("cosine" and
        "constant" only).
    weight_decay : float, default=0.0
        Decay of the weight matrices (AdamW's decoupled decay; biases and normalisation
        parameters are never decayed). Use it instead of ``optimizer__weight_decay``.
    max_epochs : int or "auto", default="auto"
        "auto" (resolved in :meth:`fit`, recorded as ``max_epochs_``) follows the number of
        training crystals ``n``: ``ceil(150 * sqrt(1000 / n))`` within [200, 500]
        (:func:`skcrystal.recipes.auto_max_epochs`): 500 epochs on up to 90 crystals, 345
        on 190, 200 on 563 or more.
    batch_size : int, default=64
        Crystals per mini-batch for training and prediction (prediction memory is bounded
        by it).
    checkpoint : str or path-like, default=None
        A file where :meth:`fit` saves the whole training state (weights, optimizer,
        history, learning-rate schedule, early stopping, random generators) at the end
        of every epoch. A fit of the same data with the same parameters that finds the
        file continues from its last epoch and ends with the model an uninterrupted fit
        makes; a finished fit's file gives the finished model back without training. A
        file written by another fit is refused with a ``ValueError``. Not with
        ``warm_start``. See docs/training.md, "Resuming an interrupted fit".
    verbose : int, default=0
        0 silent, 1 a table per epoch, 2 also a progress bar per epoch.
    device : str, default="cpu"
        Any torch device, e.g. "cuda" or "cuda:1".
    warm_start : bool, default=False
        skorch's: ``fit`` continues the current network (and keeps its target scaling)
        instead of starting a new one; ``y`` must then have as many columns as the
        network has outputs.
    **kwargs
        Other skorch parameters.

    Notes
    -----
    The defaults (AdamW, ``lr=3e-3``, cosine decay, batch 64, epochs and patience from
    the data size, best epoch restored) are one recipe shared by the regressors, chosen
    on validation data across four datasets of 564 to 1,914 training crystals
    (docs/training.md, ``benchmarks/recipes.py``). Other recipes by name, such as the
    CGCNN authors' (SGD 0.01, momentum 0.9, step decay, 300 epochs):
    ``CGCNNRegressor(**recipe("cgcnn-authors"))`` with :func:`skcrystal.recipes.recipe`.

    :func:`skcrystal.hub.save_model` stores, besides the network, the training parameters
    (``optimizer``, ``lr``, ``lr_schedule`` when a name, ``warmup_epochs``,
    ``weight_decay``, ``max_epochs``, ``batch_size``, ``early_stopping``,
    ``validation_fraction``, ``n_iter_no_change``, ``restore_best``, ``random_state``,
    ``train_split`` and every ``optimizer__*``, ``criterion__*``, ``iterator_*__*``
    parameter), which :func:`~skcrystal.hub.load_model` restores, so that ``warm_start``
    and :func:`~skcrystal.finetune.fine_tune` continue with them.

    Attributes
    ----------
    module_ : CGCNN
        The trained network.
    history_ : skorch History
        Per-epoch ``train_loss``, ``valid_loss`` (standardised MSE), ``valid_mae`` and
        ``lr`` (the learning rate at the epoch's first step).
    max_epochs_, n_iter_no_change_ : int
        The epochs and patience of the last fit (``"auto"`` resolved).
    n_epochs_ : int
        Epochs the last fit ran (fewer than ``max_epochs_`` when it stopped early).
    best_epoch_ : int
        The epoch (1-based, within the last fit) whose weights the model holds: the best
        validation epoch with early stopping and ``restore_best``, else the last.
    target_mean_, target_scale_ : ndarray
        Standardisation of the targets, from the training rows.
    n_targets_ : int
    graph_builder_ : CrystalGraphTransformer
        The transformer applied to structures given to :meth:`fit` / :meth:`predict`.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2, 4.3, 4.4)]
    >>> reg = CGCNNRegressor(max_epochs=3, early_stopping=False, random_state=0)
    >>> reg.fit(crystals, [3.9, 4.0, 4.1, 4.2, 4.3, 4.4]).predict(crystals[:2]).shape
    (2,)
    """

    def __init__(
        self,
        module: type[torch.nn.Module] = CGCNN,
        *,
        atom_fea_len: int = 64,
        n_conv: int = 3,
        h_fea_len: int = 128,
        n_h: int = 1,
        gaussian_step: float = 0.2,
        graph_builder: CrystalGraphTransformer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, graph_builder=graph_builder, **kwargs)
        self.atom_fea_len = atom_fea_len
        self.n_conv = n_conv
        self.h_fea_len = h_fea_len
        self.n_h = n_h
        self.gaussian_step = gaussian_step

    module_param_names = ("atom_fea_len", "n_conv", "h_fea_len", "n_h", "gaussian_step")

    @classmethod
    def from_cgcnn_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        atom_features: str | os.PathLike[str] | AtomFeatureTable = "cgcnn-authors",
        cutoff: float = 8.0,
        max_neighbors: int = 12,
        device: str = "cpu",
    ) -> CGCNNRegressor:
        """Load a regression checkpoint of the authors' CGCNN code as a fitted regressor.

        The file (for example ``pre-trained/formation-energy-per-atom.pth.tar`` of
        txie-93/cgcnn) is read with :func:`~skcrystal.checkpoints.read_foreign_checkpoint`,
        which runs none of its pickled code. The architecture (``atom_fea_len``, ``n_conv``,
        ``h_fea_len``, ``n_h``, number of atom features) is read off the weight shapes, the
        target standardisation off the checkpoint's ``normalizer``. The regressor predicts
        at once, or can be fine-tuned with ``warm_start=True``.

        Predictions match the original code only with the atom feature table the
        checkpoint was trained with, the authors' ``atom_init.json``: the default
        ``"cgcnn-authors"`` (see
        :func:`~skcrystal.graphs.atom_features.cgcnn_authors_atom_features`).
        skcrystal's rebuilt ``"cgcnn"`` table agrees with that file on 78 of 100 elements
        (H, N, F, Cl, Pd, Tm and the noble gases differ), which costs these weights
        accuracy on crystals containing them: on the 36,737 MP crystals of the
        formation-energy model the MAE is about 0.04 eV/atom with the authors' table and
        0.06 with ours (docs/benchmarks.md).
        The graphs differ in one respect: an atom with fewer than ``max_neighbors``
        neighbours within ``cutoff`` gets no padding edges.

        Parameters
        ----------
        path : str or path-like
            The checkpoint, a dict with ``state_dict`` and ``normalizer``.
        atom_features : {"cgcnn-authors", "cgcnn"}, path or AtomFeatureTable, \
default="cgcnn-authors"
            Element feature table; a path reads a CGCNN ``atom_init.json`` (once: the file
            is not needed afterwards).
        cutoff : float, default=8.0
            Neighbour radius in Å used in training; it fixes the number of Gaussians
            (step 0.2 Å), which must equal the checkpoint's edge feature length.
        max_neighbors : int, default=12
            Neighbours per atom used in training.
        device : str, default="cpu"

        Returns
        -------
        CGCNNRegressor
            Fitted: ``module_`` holds the checkpoint's weights (in eval mode),
            ``target_mean_`` / ``target_scale_`` its normalizer and ``graph_builder_`` a
            ``CrystalGraphTransformer(cutoff, max_neighbors, table)`` with the table read
            from ``atom_features``.

        Raises
        ------
        ValueError
            If the checkpoint is a classifier, has no normalizer, is not a CGCNN state
            dict, its edge feature length does not match ``cutoff``, or its number of atom
            features does not match ``atom_features``.
        UnsafeCheckpointError
            If reading the file would require running pickled code.

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> from skcrystal.datasets import get_data_home
        >>> folder = get_data_home() / "reference_weights" / "cgcnn_original"
        >>> path = folder / "formation-energy-per-atom.pth.tar"
        >>> reg = CGCNNRegressor.from_cgcnn_checkpoint(path)
        >>> reg.n_conv, reg.h_fea_len
        (4, 32)
        >>> nacl = Structure(Lattice.cubic(5.69), ["Na"] * 4 + ["Cl"] * 4,
        ...                  [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
        ...                   [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
        >>> round(float(reg.predict([nacl])[0]), 1)  # eV/atom; DFT (MP): -2.1
        -2.1
        """
        ckpt = read_foreign_checkpoint(path)
        state, args = dict(ckpt["state_dict"]), ckpt["args"] or {}
        try:
            atom_fea_len, n_atom_features = state["embedding.weight"].shape
            n_outputs = len(state["fc_out.weight"])
            h_fea_len = len(state["conv_to_fc.weight"])
            edge_fea_len = state["convs.0.fc_full.weight"].shape[1] - 2 * atom_fea_len
        except KeyError as err:
            raise ValueError(f"{path} does not hold CGCNN weights (no {err})") from None
        task = args.get("task", "classification" if n_outputs == 2 else "regression")
        if task != "regression":
            raise ValueError(
                f"{path} is a CGCNN classifier ({n_outputs} class outputs), not a regressor; "
                "from_cgcnn_checkpoint loads regression checkpoints only"
            )
        if ckpt["normalizer"] is None:
            raise ValueError(f"{path} has no normalizer: its outputs have no known units")
        builder = checkpoint_graph_builder(
            path, edge_fea_len, n_atom_features, cutoff, max_neighbors, atom_features
        )
        reg = cls(
            atom_fea_len=atom_fea_len,
            n_conv=sum(key.endswith("fc_full.weight") for key in state),
            h_fea_len=h_fea_len,
            n_h=1 + sum(key.startswith("fcs.") and key.endswith(".weight") for key in state),
            graph_builder=builder,
            device=device,
        )
        # The Gaussian centres are a buffer of our module that follows from the cutoff.
        state.setdefault("expansion.centres", GaussianExpansion(cutoff).centres)
        normalizer = ckpt["normalizer"]
        try:
            return reg.restore(
                clone(builder),
                state,
                target_mean=np.full(n_outputs, normalizer["mean"]),
                target_scale=np.full(n_outputs, normalizer["std"]),
            )
        except RuntimeError as err:
            raise ValueError(f"{path} does not match the CGCNN architecture: {err}") from None
