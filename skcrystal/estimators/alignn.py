"""``ALIGNNRegressor``: the Atomistic Line Graph Neural Network with the scikit-learn API."""

from __future__ import annotations

from typing import Any

import torch

from skcrystal.estimators.base import CrystalGraphRegressorBase
from skcrystal.graphs import CrystalGraphTransformer
from skcrystal.nn.alignn import ALIGNN


class ALIGNNRegressor(CrystalGraphRegressorBase):
    """ALIGNN regressor (Choudhary & DeCost, npj Comput. Mater. 7, 185, 2021).

    Edge-gated graph convolutions on the crystal graph and on its line graph, whose
    nodes are bonds and whose edges are pairs of bonds meeting at an atom, with the bond
    angle (:mod:`skcrystal.nn.alignn`). The line graph is built per mini-batch, on the
    training device, never stored (:mod:`skcrystal.nn.line_graph`).

    The network's defaults are the published model (4 ALIGNN + 4 GCN layers, width 256,
    embeddings 64, 80 bond-length and 40 angle-cosine basis functions, mean pooling,
    linear head). It trains with the library's shared recipe (:mod:`skcrystal.recipes`:
    AdamW, ``lr=3e-3`` with a cosine decay, no weight decay, batch 64, epochs from the
    number of crystals, the best validation epoch kept), which beat the published recipe
    on validation crystals (0.101 against 0.110 eV/atom: 2 + 2 layers of 64, 2,000 MP
    formation energies, 30 epochs each; ``benchmarks/seed_models.py recipes --models
    ALIGNN``). ``ALIGNNRegressor(**recipe("alignn-authors"))`` trains as published: AdamW,
    one-cycle to ``lr=1e-3`` stepped per mini-batch, weight decay 1e-5 on weight matrices
    only, 300 epochs, the last one kept. As everywhere in this library, the targets are
    standardised on the training rows (the reference code trains on raw targets).

    The default graphs are ALIGNN's: ``CrystalGraphTransformer(neighbor_rule="shell")``
    (every neighbour out to the 12th one's shell, made symmetric; about 14 bonds per
    atom on MP crystals instead of 12). Memory grows with the bond pairs of a batch,
    about 180 per atom; at the published size a batch of 64 MP crystals needs about 9
    GB, so use ``device="cuda"``, or a CPU-sized variant such as
    ``ALIGNNRegressor(alignn_layers=2, gcn_layers=2, hidden_features=64)``. On the CPU,
    call :func:`skcrystal.nn.allocation.keep_freed_memory` once before training: it
    spares the page faults of the large per-batch tensors (1.7-2.4x faster training here).

    Parameters
    ----------
    alignn_layers : int, default=4
        Layers that update the crystal graph and then its line graph.
    gcn_layers : int, default=4
        Edge-gated layers on the crystal graph only, after the ALIGNN layers.
    hidden_features : int, default=256
        Width of the atom, bond and angle vectors.
    embedding_features : int, default=64
        Width of the first layer of the bond and angle embeddings.
    edge_input_features : int, default=80
        Radial basis functions expanding each bond length (0 to the cutoff).
    triplet_input_features : int, default=40
        Radial basis functions expanding each angle cosine (-1 to 1).
    graph_builder : CrystalGraphTransformer, default=None
        None means ``CrystalGraphTransformer(neighbor_rule="shell")``; any builder works
        (the "nearest" graphs of CGCNN too: they carry bond vectors).
    lr, lr_schedule, weight_decay, max_epochs, nonnegative, early_stopping, \
validation_fraction, n_iter_no_change, restore_best, random_state, train_split, optimizer, \
warmup_epochs, batch_size, checkpoint, verbose, device, warm_start, **kwargs
        As :class:`~skcrystal.estimators.CGCNNRegressor`.

    Attributes
    ----------
    module_ : ALIGNN
        The trained network.
    history_, max_epochs_, n_iter_no_change_, n_epochs_, best_epoch_, target_mean_, \
target_scale_, n_targets_, graph_builder_
        As :class:`~skcrystal.estimators.CGCNNRegressor`.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2, 4.3, 4.4)]
    >>> reg = ALIGNNRegressor(alignn_layers=1, gcn_layers=1, hidden_features=16,
    ...                       max_epochs=2, early_stopping=False, random_state=0)
    >>> reg.fit(crystals, [3.9, 4.0, 4.1, 4.2, 4.3, 4.4]).predict(crystals[:2]).shape
    (2,)
    >>> reg.graph_settings_
    (8.0, 12, 'cgcnn', 'shell')
    """

    def __init__(
        self,
        module: type[torch.nn.Module] = ALIGNN,
        *,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        hidden_features: int = 256,
        embedding_features: int = 64,
        edge_input_features: int = 80,
        triplet_input_features: int = 40,
        graph_builder: CrystalGraphTransformer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, graph_builder=graph_builder, **kwargs)
        self.alignn_layers = alignn_layers
        self.gcn_layers = gcn_layers
        self.hidden_features = hidden_features
        self.embedding_features = embedding_features
        self.edge_input_features = edge_input_features
        self.triplet_input_features = triplet_input_features

    module_param_names = (
        "alignn_layers",
        "gcn_layers",
        "hidden_features",
        "embedding_features",
        "edge_input_features",
        "triplet_input_features",
    )

    #: ALIGNN's graphs: ``CrystalGraphTransformer(neighbor_rule="shell")`` by default.
    default_neighbor_rule = "shell"
