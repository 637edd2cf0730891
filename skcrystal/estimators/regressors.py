"""Property regressors: the scikit-learn face of the crystal graph networks."""

from __future__ import annotations

from typing import Any

import torch

from skcrystal.estimators.base import CrystalGraphRegressorBase
from skcrystal.graphs import CrystalGraphTransformer
from skcrystal.nn.cgcnn import CGCNN


class CGCNNRegressor(CrystalGraphRegressorBase):
    """Crystal Graph Convolutional Neural Network regressor (Xie & Grossman, PRL 2018).

    A skorch ``NeuralNetRegressor``: every skorch parameter works (``optimizer__*``,
    ``iterator_train__*``, ``callbacks``, ``warm_start`` ...), and so do ``module__*``
    overrides. Targets are standardised with the mean and standard deviation of the
    training rows; predictions come back in the original units.

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
    graph_builder : CrystalGraphTransformer, default=None
        Used when ``X`` holds structures rather than :class:`~skcrystal.CrystalGraphs`;
        None means ``CrystalGraphTransformer()`` (8 Å, 12 neighbours, CGCNN features).
    early_stopping : bool, default=True
        Keep the epoch with the lowest validation MAE and stop after
        ``n_iter_no_change`` epochs without improvement. The validation crystals are
        ``validation_data`` when given to :meth:`fit`, otherwise a random
        ``validation_fraction`` of the training crystals. Set it to False to train for
        exactly ``max_epochs`` on all crystals (e.g. inside an outer cross-validation).
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=20
    random_state : int, default=None
        Seeds initialisation, shuffling and the validation split: two fits with the same
        value on the CPU give identical models. Leaves the global torch RNG untouched.
    train_split : "auto" or skorch split, default="auto"
        "auto" follows ``early_stopping`` / ``validation_data`` as above; anything else is
        passed to skorch unchanged.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=100
    batch_size : int, default=128
        Crystals per mini-batch for training and prediction (prediction memory is bounded
        by it).
    verbose : int, default=0
        0 silent, 1 a table per epoch, 2 also a progress bar per epoch.
    device : str, default="cpu"
        Any torch device, e.g. "cuda" or "cuda:1".
    **kwargs
        Other skorch parameters.

    Attributes
    ----------
    module_ : CGCNN
        The trained network.
    history_ : skorch History
        Per-epoch ``train_loss``, ``valid_loss`` (standardised MSE) and ``valid_mae``.
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

    def module_params(self) -> dict[str, Any]:
        return {
            "n_atom_features": self.n_atom_features_,
            "n_targets": self.n_targets_,
            "cutoff": self.graph_settings_[0],
            "gaussian_step": self.gaussian_step,
            "atom_fea_len": self.atom_fea_len,
            "n_conv": self.n_conv,
            "h_fea_len": self.h_fea_len,
            "n_h": self.n_h,
        }
