"""``GraphNetworkRegressor``: any network that follows skcrystal's protocol, as a regressor."""

from __future__ import annotations

from typing import Any

import torch

from skcrystal.estimators.base import CrystalGraphRegressorBase
from skcrystal.nn.protocol import check_network


class GraphNetworkRegressor(CrystalGraphRegressorBase):
    """Train a torch module of your own on crystal graphs, with the scikit-learn API.

    ``module`` is a class that follows :mod:`skcrystal.nn.protocol`: it is built with
    ``n_atom_features``, ``n_targets`` and ``cutoff`` from the training graphs plus the
    ``module__*`` parameters (skorch's convention), takes a
    :class:`~skcrystal.nn.batch.CrystalBatch` and has ``node_width``, ``encode`` and
    ``readout``. Everything else (target standardisation, validation split, early
    stopping, the training recipe, ``sample_weight``, pickling) is that of
    :class:`~skcrystal.estimators.CGCNNRegressor`, whose parameters it takes.

    The same module class distils with ``DistilledRegressor(student=module,
    student_params={...})``. :func:`skcrystal.hub.save_model` cannot store it (loading
    would have to import the class's code): pickle or joblib the fitted estimator.

    Parameters
    ----------
    module : type
        The network class (required; None only so that the estimator has defaults).
    **kwargs
        ``module__*`` parameters of the network, and those of
        :class:`~skcrystal.estimators.CGCNNRegressor`.

    Examples
    --------
    >>> import torch
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.nn.layers import mean_pool
    >>> class MeanAtoms(torch.nn.Module):  # a linear model of the mean atom features
    ...     def __init__(self, n_atom_features, n_targets, cutoff, width=8):
    ...         super().__init__()
    ...         self.embed = torch.nn.Linear(n_atom_features, width)
    ...         self.fc = torch.nn.Linear(width, n_targets)
    ...         self.node_width = width
    ...     def encode(self, batch):
    ...         return self.embed(batch.atom_features)
    ...     def readout(self, nodes, batch):
    ...         return self.fc(mean_pool(nodes, batch.crystal_index, batch.n_atoms))
    ...     def forward(self, batch):
    ...         return self.readout(self.encode(batch), batch)
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2)]
    >>> reg = GraphNetworkRegressor(MeanAtoms, module__width=4, max_epochs=2,
    ...                             early_stopping=False, random_state=0)
    >>> reg.fit(crystals, [1.0, 2.0, 3.0, 4.0]).module_.node_width
    4
    """

    def __init__(self, module: type[torch.nn.Module] | None = None, **kwargs: Any) -> None:
        super().__init__(module, **kwargs)

    module_param_names = ()

    def initialize_module(self):
        """Build the network and check that it follows the protocol."""
        if not isinstance(self.module, type):
            raise TypeError(
                f"module must be a network class (see skcrystal.nn.protocol), got {self.module!r}"
            )
        super().initialize_module()
        check_network(self.module_, getattr(self.module, "__name__", repr(self.module)))
        return self

    def saved_params(self) -> dict[str, Any]:
        """Refused: a model file never imports code, and this network is a user's class."""
        raise TypeError(
            f"a GraphNetworkRegressor of {getattr(self.module, '__name__', self.module)} "
            "cannot be saved with skcrystal.hub.save_model (loading it would have to import "
            "the network's code); pickle or joblib.dump the fitted estimator instead"
        )
