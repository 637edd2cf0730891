"""Distillation teachers: the protocol, CrysGNN as a teacher, and teachers by name.

A teacher is anything that gives every atom of a crystal a vector.

:class:`~skcrystal.estimators.DistilledRegressor` pulls its student's atom vectors
toward a teacher's. A teacher is any object with these four members (a structural
protocol: no base class to inherit):

``name`` : str
    How messages and tables name it.
``graph_builder`` : CrystalGraphTransformer or None
    The graph settings (cutoff, neighbours, atom features) the student must use so that
    its atoms are the teacher's, or None when the teacher does not mind (it reads the
    structures themselves).
``node_embeddings(crystals, graphs)`` -> ndarray of shape (total atoms, width)
    One row per atom of ``graphs``, in its order (rows ``graphs.node_ptr[i]`` to
    ``graphs.node_ptr[i + 1]`` belong to crystal ``i``), at the teacher's own scale: the
    distiller L2-normalises each row for its embedding loss and appends the rows as they
    are with ``transfer="features"``. ``crystals`` are the items the
    student is fitted on (Structures, files, ...), or None when it is given graphs only;
    a teacher that needs structures refuses None with a ValueError saying so. A teacher
    never trains here: it is evaluated, the same way for every call.
``untrained(random_state)`` -> teacher
    The same network with freshly initialised weights, the control of
    :func:`skcrystal.teachers.probe_teacher`: what the architecture alone knows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.base import clone

from skcrystal.estimators.base import seeded
from skcrystal.estimators.crysgnn import CrysGNNPretrainer, load_crysgnn
from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer

__all__ = [
    "TEACHERS",
    "CrysGNNTeacher",
    "Teacher",
    "check_node_embeddings",
    "get_teacher",
    "register_teacher",
]


@runtime_checkable
class Teacher(Protocol):
    """The protocol of a distillation teacher (see the module's description)."""

    name: str
    graph_builder: CrystalGraphTransformer | None

    def node_embeddings(self, crystals: Any, graphs: CrystalGraphs) -> np.ndarray:
        """One vector per atom of ``graphs``, in order."""

    def untrained(self, random_state: int = 0) -> Teacher:
        """The same network, freshly initialised."""


def check_node_embeddings(teacher: Teacher, nodes: Any, graphs: CrystalGraphs) -> np.ndarray:
    """``nodes`` as float32, or a ValueError when they are not one finite row per atom."""
    nodes = np.asarray(nodes, dtype=np.float32)
    n_atoms = int(graphs.node_ptr[-1])
    if nodes.ndim != 2 or len(nodes) != n_atoms:
        raise ValueError(
            f"teacher {teacher.name!r} gave node embeddings of shape {nodes.shape}; "
            f"expected one row per atom of the graphs ({n_atoms} atoms)"
        )
    if not np.isfinite(nodes).all():
        row = int(np.flatnonzero(~np.isfinite(nodes).all(axis=1))[0])
        crystal = int(np.searchsorted(graphs.node_ptr, row, side="right") - 1)
        raise ValueError(
            f"teacher {teacher.name!r} gave a NaN or inf embedding for an atom of X[{crystal}]"
        )
    return nodes


class CrysGNNTeacher:
    """A fitted :class:`~skcrystal.estimators.CrysGNNPretrainer` as a teacher.

    Its node embeddings (L2-normalised, ``atom_fea_len`` wide) of the student's graphs,
    which must have the pretrainer's graph settings; a student on ALIGNN's "shell"
    graphs is given the "nearest" graphs they contain (:meth:`CrystalGraphs.nearest`).

    Parameters
    ----------
    pretrainer : CrysGNNPretrainer
        Fitted.

    Examples
    --------
    >>> from skcrystal.hub import load_model
    >>> teacher = CrysGNNTeacher(load_model("crysgnn-mp"))
    >>> teacher.name, teacher.graph_builder.cutoff
    ('crysgnn', 8.0)
    """

    name = "crysgnn"

    def __init__(self, pretrainer: CrysGNNPretrainer) -> None:
        self.pretrainer = pretrainer

    @property
    def graph_builder(self) -> CrystalGraphTransformer:
        """The pretrainer's graph builder."""
        return self.pretrainer.graph_builder_

    def node_embeddings(self, crystals: Any, graphs: CrystalGraphs) -> np.ndarray:
        """The pretrainer's node embeddings of ``graphs`` (``crystals`` is not needed).

        Raises
        ------
        ValueError
            When ``graphs`` do not have the pretrainer's settings.
        """
        return self.pretrainer.node_embeddings(self._fitting(graphs))

    def _fitting(self, graphs: CrystalGraphs) -> CrystalGraphs:
        """The graphs the pretrainer embeds: ``graphs``, or the "nearest" graphs that
        "shell" graphs contain; a ValueError when neither fits."""
        cutoff, max_neighbors, table, rule = self.pretrainer.graph_settings_
        if (
            graphs.neighbor_rule == "shell"
            and rule == "nearest"
            and (graphs.cutoff, graphs.atom_features.name) == (cutoff, table)
            and max_neighbors <= graphs.max_neighbors
        ):
            graphs = graphs.nearest(max_neighbors)
        try:
            self.pretrainer._check_settings(graphs)
        except ValueError as err:
            raise ValueError(f"the teacher does not fit these graphs: {err}") from None
        return graphs

    def untrained(self, random_state: int = 0) -> CrysGNNTeacher:
        """The same network and graph settings, weights freshly initialised (seeded by
        ``random_state``), batch-norm statistics at their initial values."""
        twin = clone(self.pretrainer).set_params(random_state=random_state)
        twin._restore_graph_settings(self.pretrainer.graph_builder_)
        with seeded(random_state, twin.device):
            twin.initialize()
        twin.module_.eval()
        return CrysGNNTeacher(twin)

    def __repr__(self) -> str:
        return f"CrysGNNTeacher({self.pretrainer.__class__.__name__})"


def _chgnet() -> Teacher:
    from skcrystal.estimators.chgnet_teacher import CHGNetTeacher  # imports chgnet lazily

    return CHGNetTeacher()


#: Teachers by name, besides CrysGNN's (bundled names, "crysgnn-800k", files): a function
#: that makes the teacher. Add one with :func:`register_teacher`.
TEACHERS: dict[str, Callable[[], Teacher]] = {"chgnet": _chgnet}


def register_teacher(name: str, make: Callable[[], Teacher]) -> None:
    """Make ``DistilledRegressor(teacher=name)`` and ``probe_teacher(name, ...)`` use the
    teacher that ``make()`` returns (an object that follows
    :class:`Teacher`)."""
    if not callable(make):
        raise TypeError(f"make must be callable, got {make!r}")
    TEACHERS[name] = make


def get_teacher(spec: Any) -> Teacher:
    """The teacher that ``spec`` names.

    Parameters
    ----------
    spec : str, path, CrysGNNPretrainer or Teacher
        A name of :data:`TEACHERS` ("chgnet"); an object that follows the teacher
        protocol, returned as it is; else a CrysGNN as
        :func:`~skcrystal.estimators.crysgnn.load_crysgnn` takes it (a fitted
        pretrainer, a bundled name such as "crysgnn-mp", "crysgnn-800k", a
        ``.safetensors`` file or an authors' checkpoint), wrapped in
        :class:`CrysGNNTeacher`.

    Raises
    ------
    ValueError
        For anything else, or an unfitted pretrainer.

    Examples
    --------
    >>> get_teacher("crysgnn-mp").name
    'crysgnn'
    """
    if isinstance(spec, str) and spec in TEACHERS:
        return TEACHERS[spec]()
    if isinstance(spec, Teacher):
        return spec
    try:
        return CrysGNNTeacher(load_crysgnn(spec))
    except ValueError as err:
        raise ValueError(f"{err}; or one of the teachers {', '.join(sorted(TEACHERS))}") from None
