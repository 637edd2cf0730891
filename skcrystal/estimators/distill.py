"""Knowledge distillation from a pretrained teacher into any property predictor."""

from __future__ import annotations

import dataclasses
import inspect
import time
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from skorch.callbacks import PassthroughScoring
from skorch.utils import to_tensor
from torch import nn
from torch.nn import functional as F

from skcrystal.estimators.alignn import ALIGNNRegressor
from skcrystal.estimators.base import CrystalGraphRegressorBase
from skcrystal.estimators.crysxpp import CrysXPPRegressor
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.estimators.gatgnn import GATGNNRegressor
from skcrystal.estimators.megnet import MEGNetRegressor
from skcrystal.estimators.network import GraphNetworkRegressor
from skcrystal.estimators.regressors import CGCNNRegressor
from skcrystal.estimators.teachers import check_node_embeddings, get_teacher
from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer, GraphStore
from skcrystal.graphs.container import _ranges
from skcrystal.nn.batch import CrystalBatch
from skcrystal.nn.layers import mean_pool
from skcrystal.nn.protocol import check_network

__all__ = ["DEFAULT_TEACHER", "STUDENTS", "DistilledRegressor", "register_student"]

#: The teacher used when ``teacher=None``: pretrained by the project, bundled.
DEFAULT_TEACHER = "crysgnn-mp"

#: Student architectures by name: regressor classes whose network follows the protocol of
#: :mod:`skcrystal.nn.protocol` (``node_width``, ``encode``, ``readout``).
STUDENTS: dict[str, type[CrystalGraphRegressorBase]] = {
    "cgcnn": CGCNNRegressor,
    "crysxpp": CrysXPPRegressor,
    "alignn": ALIGNNRegressor,
    "gatgnn": GATGNNRegressor,
    "megnet": MEGNetRegressor,
}


def register_student(name: str, regressor: type[CrystalGraphRegressorBase]) -> None:
    """Make ``DistilledRegressor(student=name)`` train a ``regressor``'s network.

    ``regressor`` is a :class:`~skcrystal.estimators.base.CrystalGraphRegressorBase`
    subclass whose ``initialize_module`` builds a network that follows
    :mod:`skcrystal.nn.protocol` (``node_width``, ``encode(batch)`` -> atom vectors,
    ``readout(nodes, batch)`` -> predictions). Its ``regularization()`` is added to the
    training loss, and its ``default_graph_builder()`` says which neighbour rule the
    student's graphs follow. The distillation code does not change.
    """
    if not (isinstance(regressor, type) and issubclass(regressor, CrystalGraphRegressorBase)):
        raise TypeError(f"{regressor!r} is not a CrystalGraphRegressorBase subclass")
    STUDENTS[name] = regressor


class DistillationModule(nn.Module):
    """A student network plus the projection of its node vectors onto the teacher's width.

    In training mode ``forward`` returns ``(predictions, node embeddings)``, the latter
    projected (identity when the widths match; a linear map, used in training only,
    when they differ, as ALIGNN's 256 against the teacher's 64) and
    L2-normalised; in eval mode only the predictions.
    """

    def __init__(self, student: nn.Module, teacher_width: int) -> None:
        super().__init__()
        check_network(student, type(student).__name__)
        self.student = student
        width = student.node_width
        self.projection = (
            nn.Identity() if width == teacher_width else nn.Linear(width, teacher_width)
        )

    @property
    def node_width(self) -> int:
        return self.student.node_width

    def encode(self, batch: CrystalBatch) -> torch.Tensor:
        """The student's atom vectors (not projected)."""
        return self.student.encode(batch)

    def readout(self, nodes: torch.Tensor, batch: CrystalBatch) -> torch.Tensor:
        return self.student.readout(nodes, batch)

    def forward(self, batch: CrystalBatch):
        nodes = self.student.encode(batch)
        predictions = self.student.readout(nodes, batch)
        if not self.training:
            return predictions
        return predictions, F.normalize(self.projection(nodes), dim=1)


class DistillationDataset(CrystalGraphDataset):
    """Crystals with their targets and the teacher's node embeddings.

    ``as_targets``: batches carry ``(targets, teacher node embeddings)`` as targets, the
    embedding loss's reference (training). ``as_features``: the embeddings are appended
    to each atom's input features (``transfer="features"``; training, validation and
    prediction alike).
    """

    def __init__(
        self,
        graphs: CrystalGraphs,
        y,
        target_mean,
        target_scale,
        teacher_nodes: np.ndarray,
        *,
        as_targets: bool = True,
        as_features: bool = False,
    ):
        super().__init__(graphs, y, target_mean, target_scale)
        self.teacher_nodes = teacher_nodes
        self.as_targets = as_targets
        self.as_features = as_features

    def collate(self, indices: list[int]):
        inputs, targets = super().collate(indices)
        index = np.asarray(indices, dtype=np.int64)
        nodes = torch.from_numpy(
            self.teacher_nodes[_ranges(self.graphs.node_ptr[index], self.graphs.n_atoms[index])]
        )
        if self.as_features:
            features = torch.cat([inputs.atom_features, nodes], dim=1)
            inputs = dataclasses.replace(inputs, atom_features=features)
        if self.as_targets and targets is not None:
            targets = (targets, nodes)
        return inputs, targets


class DistilledRegressor(CrystalGraphRegressorBase):
    """A property predictor trained with knowledge distilled from a pretrained teacher.

    CrysGNN (Das et al., AAAI 2023): a teacher pretrained without labels on many crystals
    (:class:`~skcrystal.estimators.CrysGNNPretrainer`), or any other network that gives
    each atom a vector (:mod:`skcrystal.teachers`: CHGNet, for one), guides the training
    of a student of any architecture on a small labelled set. The training loss is
    ``(1 - alpha) * MSE(standardised targets) + alpha * MSE(student, teacher node
    embeddings)`` (with ``sample_weight``, both terms are weighted per crystal: each atom
    counts with its crystal's weight), both node embeddings L2-normalised, the student's
    first projected onto the teacher's width by a learned linear map when the widths
    differ. The teacher is
    frozen and in eval mode; its node embeddings are computed once per ``fit``.
    Predictions need the student only.

    Target scaling, validation split, early stopping on ``valid_mae``, ``warm_start`` and
    ``partial_fit`` are those of :class:`~skcrystal.estimators.CGCNNRegressor`.

    Parameters
    ----------
    teacher : CrysGNNPretrainer, str, path, Teacher or None, default=None
        A fitted pretrainer; a bundled name or ``.safetensors`` file of one (see
        :mod:`skcrystal.hub`); ``"crysgnn-800k"``, the authors' teacher pretrained on 800K
        crystals (downloaded once, see :func:`skcrystal.teachers.crysgnn_800k`); or the path of
        such a ``.pth.tar`` checkpoint. ``"chgnet"``: the universal potential CHGNet's atom
        vectors (``pip install "skcrystal[chgnet]"``; fit on structures, not on
        CrystalGraphs). Or any object that follows
        :class:`skcrystal.estimators.teachers.Teacher`. None means :data:`DEFAULT_TEACHER`,
        the project's teacher bundled with the package (offline). Shared, not copied, by
        :func:`sklearn.base.clone`.
    student : str or network class, default="cgcnn"
        A name in :data:`STUDENTS` ("cgcnn", "crysxpp", "alignn", "gatgnn", "megnet", or
        one added with :func:`register_student`), or a torch module class that follows
        :mod:`skcrystal.nn.protocol` (trained as by
        :class:`~skcrystal.estimators.GraphNetworkRegressor`).
    student_params : dict, optional
        Parameters of the student regressor (e.g. ``{"n_conv": 4}``; a "crysxpp"
        student starts from the bundled ``"crysae-mp"`` encoder unless
        ``{"encoder": ...}`` says otherwise), or of the network class. Training
        parameters (lr, epochs, ...) are this estimator's own.
    alpha : float, default=0.5
        Weight of the embedding loss, in [0, 1).
    transfer : {"nodes", "nodes+crystal", "features"}, default="nodes"
        How the teacher's knowledge reaches the student. "nodes": the paper's loss above,
        the student's atom vectors pulled toward the teacher's. "nodes+crystal": the
        embedding loss also has a crystal-level term, the MSE of the two networks'
        mean atom vectors (each L2-normalised), so the student's crystal vector, which
        its head reads, is pulled too. "features": the teacher's atom vectors, as the
        teacher gives them (not normalised), are also appended to the student's input
        atom features, in training and in prediction,
        so ``predict`` runs the teacher on the crystals it is given (a model of this
        kind is no longer a teacher-free student; use ``alpha=0`` for the input
        features alone). Every student takes them; a "crysxpp" student's embedding, now
        wider than its encoder's, starts fresh while its convolutions are transferred.
    nonnegative, graph_builder, early_stopping, validation_fraction, n_iter_no_change,
    restore_best, random_state, optimizer, lr, lr_schedule, warmup_epochs, weight_decay,
    max_epochs, batch_size, checkpoint, device, **kwargs
        As :class:`~skcrystal.estimators.CGCNNRegressor`. The graphs must be built like
        the teacher's (cutoff, neighbours, atom features); by default they follow the
        student's neighbour rule (ALIGNN's "shell"), and the teacher embeds the
        "nearest" graphs they contain (:meth:`~skcrystal.CrystalGraphs.nearest`).

    Attributes
    ----------
    module_ : DistillationModule
        ``module_.student`` is the student network.
    student_ : CrystalGraphRegressorBase
        The student regressor whose network is trained (for its ``feature_importances_``
        with a CrysXPP student, say).
    teacher_ : Teacher
        The resolved teacher (a :class:`~skcrystal.estimators.teachers.CrysGNNTeacher`
        wraps a pretrainer, as ``teacher_.pretrainer``).
    teacher_width_ : int
    teacher_time_ : float
        Seconds spent computing the teacher's embeddings in the last ``fit``.
    history_
        Also records ``embedding_loss``, the mean training embedding loss per epoch.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2, 4.3, 4.4)]
    >>> reg = DistilledRegressor(student="cgcnn", alpha=0.5, max_epochs=2,
    ...                          early_stopping=False, random_state=0)
    >>> reg.fit(crystals, [3.9, 4.0, 4.1, 4.2, 4.3, 4.4]).predict(crystals[:2]).shape
    (2,)
    >>> reg.teacher_width_, len(reg.history_[:, "embedding_loss"])
    (64, 2)
    """

    def __init__(
        self,
        module: type[nn.Module] = DistillationModule,
        *,
        teacher: Any = None,
        student: str = "cgcnn",
        student_params: dict | None = None,
        alpha: float = 0.5,
        transfer: str = "nodes",
        **kwargs: Any,
    ) -> None:
        super().__init__(module, **kwargs)
        self.teacher = teacher
        self.student = student
        self.student_params = student_params
        self.alpha = alpha
        self.transfer = transfer

    module_param_names = ("student", "student_params", "alpha", "transfer")

    #: The values of ``transfer``.
    transfer_options = ("nodes", "nodes+crystal", "features")

    # --- scikit-learn plumbing ------------------------------------------------------------
    shared_params = ("teacher", "student_params")

    def scoring_callbacks(self) -> list:
        embedding = PassthroughScoring(name="embedding_loss", on_train=True)
        return [*super().scoring_callbacks(), ("embedding_loss", embedding)]

    def saved_params(self) -> dict[str, Any]:
        """Parameters to rebuild the network; a student's encoder is not needed for that.

        A student given as a network class is refused: a model file never imports code.
        """
        if not isinstance(self.student, str):
            raise TypeError(
                f"a DistilledRegressor of the network class {self.student.__name__} cannot be "
                "saved with skcrystal.hub.save_model (loading it would have to import the "
                "class's code); pickle or joblib.dump the fitted estimator instead"
            )
        student_params = dict(self.student_params or {})
        student_params.pop("encoder", None)
        params = {**super().saved_params(), "student_params": student_params}
        if self.transfer == "features":  # predictions need the teacher: keep its name
            if self.teacher is not None and not isinstance(self.teacher, str):
                raise TypeError(
                    "a DistilledRegressor with transfer='features' needs its teacher to "
                    "predict, and skcrystal.hub.save_model stores a teacher by name only "
                    f"(a bundled name, 'chgnet', a file path), got {type(self.teacher).__name__}; "
                    "pickle or joblib.dump the fitted estimator instead"
                )
            params["teacher"] = self.teacher
        return params

    def fitted_state(self) -> dict[str, Any]:
        state = {**super().fitted_state(), "teacher_width": int(self.teacher_width_)}
        if self.transfer == "features":
            state["teacher_features"] = "as given"  # not the unit vectors of earlier files
        return state

    def restore(
        self,
        graph_builder,
        state_dict,
        *,
        teacher_width: int,
        teacher_features: str | None = None,
        **fitted,
    ):
        """Make this estimator fitted from saved weights (see :mod:`skcrystal.hub`).

        A student that takes an ``encoder`` (CrysXPP) gets ``encoder=None`` in
        ``student_params``: its weights come from ``state_dict``, not from an encoder.

        Raises
        ------
        ValueError
            For a CHGNet features model written before 2026-12-06 (no
            ``teacher_features``): it was trained on CHGNet's vectors L2-normalised,
            which the teacher no longer gives, so its predictions would be wrong.
        """
        if self.transfer == "features" and self.teacher == "chgnet" and teacher_features is None:
            raise ValueError(
                "this model file takes CHGNet's atom vectors as input features and was "
                "written when the chgnet teacher gave them L2-normalised; it now gives them "
                "as CHGNet computes them, so the model would predict wrongly: fit it again"
            )
        self.teacher_width_ = teacher_width
        student = STUDENTS.get(self.student) if isinstance(self.student, str) else None
        if student is not None and "encoder" in inspect.signature(student).parameters:
            self.student_params = {**(self.student_params or {}), "encoder": None}
        return super().restore(graph_builder, state_dict, **fitted)

    # --- teacher and student --------------------------------------------------------------
    def default_graph_builder(self) -> CrystalGraphTransformer:
        """The teacher's graph settings (cutoff, neighbours, atom features), no symmetry,
        with the student's neighbour rule; the student's own default graphs for a teacher
        that reads structures (CHGNet).

        The student must see the graphs the teacher embeds: the authors' 800K teacher,
        for example, was trained on the ``"cgcnn-authors"`` atom features.
        """
        builder = self._resolve_teacher().graph_builder
        rule = self._student_class().default_neighbor_rule
        if builder is None:
            return CrystalGraphTransformer(neighbor_rule=rule)
        return clone(builder).set_params(symmetry=False, neighbor_rule=rule)

    def _resolve_teacher(self):
        """The teacher that ``teacher`` names (``skcrystal.teachers.get_teacher``), loaded
        once for that value."""
        resolved = getattr(self, "_teacher_cache_", None)
        if resolved is None or resolved[0] is not self.teacher:
            spec = DEFAULT_TEACHER if self.teacher is None else self.teacher
            resolved = (self.teacher, get_teacher(spec))
            self._teacher_cache_ = resolved
        return resolved[1]

    def _student_class(self) -> type[CrystalGraphRegressorBase]:
        """The regressor class that trains the student network."""
        if isinstance(self.student, type) and issubclass(self.student, nn.Module):
            return GraphNetworkRegressor
        if not isinstance(self.student, str) or self.student not in STUDENTS:
            raise ValueError(
                f"unknown student {self.student!r}; known: {', '.join(sorted(STUDENTS))}, "
                "or a network class that follows skcrystal.nn.protocol (add a name with "
                "skcrystal.estimators.distill.register_student)"
            )
        return STUDENTS[self.student]

    def _check_params(self) -> type[CrystalGraphRegressorBase]:
        """Check ``alpha``, ``transfer`` and ``student``; the student's regressor class."""
        cls = self._student_class()
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha!r}")
        if self.transfer not in self.transfer_options:
            raise ValueError(
                f"transfer must be one of {', '.join(map(repr, self.transfer_options))}, "
                f"got {self.transfer!r}"
            )
        return cls

    def _student_regressor(self) -> CrystalGraphRegressorBase:
        cls = self._check_params()
        params = dict(self.student_params or {})
        if cls is GraphNetworkRegressor:
            params = {"module": self.student, **{f"module__{k}": v for k, v in params.items()}}
        student = cls(**params, device=self.device)
        fitted = ("n_atom_features_", "n_targets_", "graph_settings_", "graph_builder_")
        for name in (*fitted, "target_mean_", "target_scale_", "y_was_1d_"):
            setattr(student, name, getattr(self, name))
        if self.transfer == "features":  # the teacher's vectors follow the atom features
            student.n_atom_features_ = self.n_atom_features_ + self.teacher_width_
        return student

    def initialize_module(self):
        """Build the student's network (with its own initialisation) and the projection."""
        student = self._student_regressor()
        student._initialize_module()  # skorch lets a net set module_ only in this context
        self.student_ = student
        self.module_ = DistillationModule(student.module_, self.teacher_width_).to(self.device)
        return self

    # --- training -------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, **fit_params):
        """Fit as :meth:`CGCNNRegressor.fit`, the teacher embedding ``X`` once.

        Returns
        -------
        self
        """
        self._check_params()  # before the teacher embeds anything
        try:
            return super().fit(X, y, **fit_params)
        finally:  # never keep the user's crystals, whatever stopped the fit
            self.__dict__.pop("_teacher_crystals_", None)

    def _training_graphs(self, X: Any) -> CrystalGraphs:
        """The student's graphs of ``X``; ``X`` itself is kept until the teacher has
        embedded it (a teacher such as CHGNet reads the structures)."""
        graphs = super()._training_graphs(X)
        self._teacher_crystals_ = None if isinstance(X, (CrystalGraphs, GraphStore)) else X
        return graphs

    def _training_dataset(self, graphs: CrystalGraphs, y: np.ndarray) -> CrystalGraphDataset:
        """Targets plus the teacher's node embeddings, computed once, in eval mode."""
        crystals = self.__dict__.pop("_teacher_crystals_", None)
        self.teacher_ = self._resolve_teacher()
        start = time.perf_counter()
        teacher_nodes = self._teacher_nodes(crystals, graphs)
        self.teacher_time_ = time.perf_counter() - start
        if not (self.warm_start and self.initialized_):
            self.teacher_width_ = teacher_nodes.shape[1]
        elif teacher_nodes.shape[1] != self.teacher_width_:
            raise ValueError("the teacher's width changed since the network was initialised")
        return DistillationDataset(
            graphs,
            y,
            self.target_mean_,
            self.target_scale_,
            teacher_nodes,
            as_features=self.transfer == "features",
        )

    def _teacher_nodes(self, crystals: Any, graphs: CrystalGraphs) -> np.ndarray:
        """The teacher's checked node embeddings of ``graphs`` (built from ``crystals``)."""
        if isinstance(graphs, GraphStore):
            raise ValueError(
                "the teacher embeds crystals held in memory; a GraphStore cannot be distilled "
                "from (build CrystalGraphs from the structures instead)"
            )
        teacher = self._resolve_teacher()
        if isinstance(crystals, (CrystalGraphs, GraphStore)):
            crystals = None
        return check_node_embeddings(teacher, teacher.node_embeddings(crystals, graphs), graphs)

    def _dataset(self, graphs, y, crystals=None) -> CrystalGraphDataset:
        """With ``transfer="features"``, the teacher's vectors of ``crystals`` ride along
        as input features (validation crystals, predictions); otherwise plain graphs."""
        if self.transfer != "features":
            return super()._dataset(graphs, y, crystals)
        nodes = self._teacher_nodes(crystals, graphs)
        width = getattr(self, "teacher_width_", None)  # None: validation crystals of a first fit
        if width is not None and nodes.shape[1] != width:
            raise ValueError(
                f"the teacher gives {nodes.shape[1]}-wide atom vectors, but the model was "
                f"fitted on {width}-wide ones"
            )
        return DistillationDataset(
            graphs,
            y,
            self.target_mean_,
            self.target_scale_,
            nodes,
            as_targets=False,
            as_features=True,
        )

    def get_loss(self, y_pred, y_true, X=None, training=False) -> torch.Tensor:
        """``(1 - alpha) * property MSE + alpha * embedding MSE`` (+ the student's penalty)."""
        teacher_nodes = None
        if isinstance(y_true, (tuple, list)):
            y_true, teacher_nodes = y_true
        student_nodes = None
        if isinstance(y_pred, tuple):
            y_pred, student_nodes = y_pred
        loss = self.target_loss(y_pred, y_true, X)
        if not training:
            return loss
        if student_nodes is not None and teacher_nodes is not None:
            # teachers give their vectors at their own scale (CHGNet's are not unit vectors)
            target = F.normalize(to_tensor(teacher_nodes, device=self.device), dim=1)
            embedding = self._embedding_loss(student_nodes, target, X)
            if self.transfer == "nodes+crystal":
                embedding = embedding + self._crystal_loss(student_nodes, target, X)
            self.history.record_batch("embedding_loss", float(embedding.detach()))
            loss = (1 - self.alpha) * loss + self.alpha * embedding
        return loss + self.student_.regularization()

    @staticmethod
    def _crystal_loss(student_nodes, teacher_nodes, X) -> torch.Tensor:
        """MSE of the crystals' mean atom vectors (L2-normalised), weighted per crystal."""
        student, teacher = (
            F.normalize(mean_pool(nodes, X.crystal_index, X.n_atoms), dim=1)
            for nodes in (student_nodes, teacher_nodes)
        )
        per_crystal = (student - teacher).pow(2).mean(dim=1)
        weight = getattr(X, "sample_weight", None)
        if weight is None:
            return per_crystal.mean()
        return (weight.to(per_crystal) * per_crystal).mean()

    @staticmethod
    def _embedding_loss(student_nodes, teacher_nodes, X=None) -> torch.Tensor:
        """MSE of the node embeddings; each atom weighted by its crystal's sample weight."""
        weight = getattr(X, "sample_weight", None)
        if weight is None:
            return F.mse_loss(student_nodes, teacher_nodes)
        per_atom = (student_nodes - teacher_nodes).pow(2).mean(dim=1)
        atom_weight = weight.to(per_atom)[X.crystal_index.to(per_atom.device)]
        return (atom_weight * per_atom).mean()
