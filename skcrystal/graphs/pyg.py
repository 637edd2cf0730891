"""Conversion between :class:`~skcrystal.CrystalGraphs` and torch-geometric's ``Data``/``Batch``.

One ``Data`` per crystal, in torch-geometric's conventions: ``x`` (atom feature vectors),
``edge_index`` = ``[neighbor; center]`` (messages flow from the neighbour, row 0, to the
atom that aggregates them, row 1: ``MessagePassing``'s default ``flow="source_to_target"``),
``edge_attr`` = ``[distance, vector]`` (E, 4), where ``vector`` is the Cartesian
displacement from the target atom (row 1) to the periodic image of the source atom
(row 0). Periodic images have no positions in ``Data``: the vectors carry the geometry, so
never rebuild the edges with ``radius_graph`` (it has no periodic boundaries).

The species of each site (``species_count``, ``species_z``, ``species_occupancy``) travel
along, so that :func:`from_pyg` rebuilds the graphs exactly. No attribute name contains
"index" besides ``edge_index``: torch-geometric shifts such attributes by the number of
nodes when it batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skcrystal.graphs.atom_features import AtomFeatureTable, get_atom_feature_table
from skcrystal.graphs.container import CrystalGraphs, GraphParts

#: Graph-level settings stored on every ``Data`` (plain Python values).
SETTINGS = ("cutoff", "max_neighbors", "neighbor_rule", "atom_features", "symmetry")


def to_pyg(graphs: CrystalGraphs, indices: Sequence[int] | np.ndarray | None = None):
    """The chosen crystals (all by default) as one torch-geometric ``Batch``.

    See the module docstring for the attributes; ``batch.to_data_list()`` gives the
    ``Data`` of each crystal, ``space_group`` is one number per crystal (0 where
    unknown).

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CrystalGraphTransformer
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> batch = to_pyg(CrystalGraphTransformer(cutoff=5.0).transform([cscl, cscl]))
    >>> batch.num_graphs, tuple(batch.x.shape), tuple(batch.edge_index.shape)
    (2, (4, 92), (2, 48))
    >>> tuple(batch.edge_attr.shape), batch.batch.tolist()
    ((48, 4), [0, 0, 1, 1])
    """
    import torch
    from torch_geometric.data import Batch, Data

    indices = np.arange(len(graphs)) if indices is None else np.asarray(indices)
    settings = {
        "cutoff": graphs.cutoff,
        "max_neighbors": graphs.max_neighbors,
        "neighbor_rule": graphs.neighbor_rule,
        "atom_features": graphs.atom_features.name,
        "symmetry": graphs.symmetry,
    }
    data = []
    for i in indices.tolist():
        one = graphs[i]
        arrays = one.batch([0])
        edge_attr = np.concatenate([arrays["distance"][:, None], arrays["vector"]], axis=1)
        data.append(
            Data(
                x=torch.from_numpy(arrays["atom_features"]),
                edge_index=torch.from_numpy(np.stack([arrays["neighbor"], arrays["center"]])),
                edge_attr=torch.from_numpy(edge_attr),
                species_count=torch.from_numpy(np.diff(one.species_ptr)),
                species_z=torch.from_numpy(one.species_z.astype(np.int64)),
                species_occupancy=torch.from_numpy(one.species_occupancy),
                space_group=torch.from_numpy(one.space_group.astype(np.int64)),
                num_nodes=int(one.n_atoms[0]),
                **settings,
            )
        )
    return Batch.from_data_list(data)


def from_pyg(
    data: Any,
    *,
    atom_features: str | AtomFeatureTable | None = None,
    cutoff: float | None = None,
    max_neighbors: int | None = None,
    neighbor_rule: str | None = None,
) -> CrystalGraphs:
    """Rebuild :class:`~skcrystal.CrystalGraphs` from what :func:`to_pyg` made.

    Parameters
    ----------
    data : torch_geometric Batch, Data, or sequence of Data
        With the attributes :func:`to_pyg` writes.
    atom_features, cutoff, max_neighbors, neighbor_rule : optional
        The graph settings; by default those stored on the ``Data`` (with whether space
        groups were searched for). A table that is not bundled (made from a file) must be
        given here.

    Raises
    ------
    ValueError
        When the crystals were made with different settings, a setting is neither stored
        nor given, or an attribute the graphs need is missing.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CrystalGraphTransformer
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> graphs = CrystalGraphTransformer(cutoff=5.0).transform([cscl])
    >>> back = from_pyg(to_pyg(graphs))
    >>> back.settings == graphs.settings, bool((back.vector == graphs.vector).all())
    (True, True)
    """
    if hasattr(data, "to_data_list"):
        items = data.to_data_list()
    elif hasattr(data, "edge_index"):
        items = [data]
    else:
        items = list(data)
    given = {
        "cutoff": cutoff,
        "max_neighbors": max_neighbors,
        "neighbor_rule": neighbor_rule,
        "atom_features": atom_features,
        "symmetry": None,
    }
    settings = {}
    for name in SETTINGS:
        stored = {repr(getattr(item, name, None)) for item in items}
        if given[name] is not None:
            settings[name] = given[name]
        elif len(stored) > 1:
            raise ValueError(f"the crystals were made with different {name}: {sorted(stored)}")
        elif not items or getattr(items[0], name, None) is None:
            raise ValueError(f"{name} is not stored on the Data: pass it to from_pyg")
        else:
            settings[name] = getattr(items[0], name)
    parts = [_parts(item, i) for i, item in enumerate(items)]
    space_group = np.asarray([int(item.space_group.reshape(-1)[0]) for item in items])
    graphs = CrystalGraphs.from_parts(
        parts,
        get_atom_feature_table(settings["atom_features"]),
        float(settings["cutoff"]),
        int(settings["max_neighbors"]),
        str(settings["neighbor_rule"]),
        space_group=space_group,
    )
    graphs.symmetry = bool(settings["symmetry"])
    return graphs


def _parts(item: Any, i: int) -> GraphParts:
    needed = ("edge_index", "edge_attr", "species_count", "species_z", "species_occupancy")
    missing = [name for name in (*needed, "space_group") if getattr(item, name, None) is None]
    if missing:
        raise ValueError(
            f"Data #{i} has no {', '.join(missing)}: it was not made by skcrystal's to_pyg"
        )
    edge_index = item.edge_index.cpu().numpy()
    edge_attr = item.edge_attr.cpu().numpy()
    return GraphParts(
        species_count=item.species_count.cpu().numpy().astype(np.int16),
        species_z=item.species_z.cpu().numpy().astype(np.int16),
        species_occupancy=item.species_occupancy.cpu().numpy().astype(np.float32),
        center=edge_index[1].astype(np.int32),
        neighbor=edge_index[0].astype(np.int32),
        distance=edge_attr[:, 0].astype(np.float32),
        vector=edge_attr[:, 1:4].astype(np.float32),
    )
