"""Self-supervised CrysGNN pretraining: the teacher of :class:`DistilledRegressor`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pooch
import torch

from skcrystal.datasets import get_cache_dir
from skcrystal.estimators.pretrainers import CrysAEPretrainer
from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer
from skcrystal.model_files import available_models, load_as, network_parts, write_model_file
from skcrystal.nn.crysgnn import CrysGNN, CrysGNNLoss
from skcrystal.nn.masking import AtomMaskingCrysGNN, MaskedAtomLoss

__all__ = [
    "CRYSGNN_800K_SHA256",
    "CRYSGNN_800K_URL",
    "CrysGNNPretrainer",
    "crysgnn_800k",
    "load_crysgnn",
]


class CrysGNNPretrainer(CrysAEPretrainer):
    """Pretrain CrysGNN (Das et al., AAAI 2023) on unlabelled crystals.

    A five-convolution CGCNN encoder with L2-normalised node embeddings, trained without
    property labels on four tasks (:class:`~skcrystal.nn.crysgnn.CrysGNNLoss`, 0.25 each
    by default): reconstructing each atom pair's connectivity and each atom's input
    features (node level), predicting the space group and pulling together the graph
    embeddings of crystals of the same crystal system with a supervised NT-Xent loss
    (graph level, temperature 0.07). The fitted pretrainer is the teacher of
    :class:`~skcrystal.estimators.DistilledRegressor`; :meth:`transform` gives graph
    embeddings and :meth:`node_embeddings` the per-atom ones.

    Space groups come from spglib through pymatgen
    (``CrystalGraphTransformer(symmetry=True)``, the default graph builder here), found
    once per structure and cached with its graph. A crystal whose symmetry cannot be
    determined (space group 0) still trains the node-level tasks and is left out of the
    graph-level ones; ``symmetry_coverage_`` records the fraction with a known group.

    ``pretraining="attribute_masking"`` trains the same encoder by Hu et al.'s attribute
    masking instead ("Pretrain-GNN", the baseline of CrysGNN's Table 3;
    :mod:`skcrystal.nn.masking`): ``int(mask_rate * n + 1)`` atoms of each crystal of
    ``n`` atoms hidden behind a learned token, their feature vectors predicted from the
    encoder's output. It needs no space groups. The encoder and its node embeddings are
    used as a CrysGNN's: as a teacher, or fine-tuned by
    :class:`~skcrystal.estimators.CrysGNNRegressor`.

    Parameters as :class:`~skcrystal.estimators.CrysAEPretrainer` (skorch parameters
    included), with ``n_conv=5``, ``lr=0.03``, and ``pretraining`` ({"crysgnn",
    "attribute_masking"}, default "crysgnn") and ``mask_rate`` (default 0.15). The rate is
    the CrysGNN authors' (their ``pretrain.py``); measured here (``benchmarks/
    teacher_recipe.py``), it beat CrysAE's 3e-3 on the held-out pretraining loss and on a
    probe of the embeddings, with and without the graph-level losses. Loss weights and
    temperature are set through
    ``criterion__connectivity_weight``, ``criterion__feature_weight``,
    ``criterion__contrastive_weight``, ``criterion__space_group_weight`` and
    ``criterion__temperature``.

    Attributes
    ----------
    module_ : CrysGNN
    symmetry_coverage_ : float
        Fraction of the training crystals whose space group was determined (CrysGNN
        pretraining only).
    history_, graph_builder_, graph_settings_, n_atom_features_
        As :class:`~skcrystal.estimators.CrysAEPretrainer`.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1)]
    >>> crystals.append(Structure(Lattice.tetragonal(4.0, 5.0), ["Cs", "Cl"],
    ...                           [[0, 0, 0], [0.5] * 3]))
    >>> teacher = CrysGNNPretrainer(max_epochs=2, early_stopping=False, random_state=0)
    >>> teacher.fit(crystals).transform(crystals).shape
    (4, 64)
    >>> sorted(teacher.loss_components(crystals))
    ['connectivity', 'contrastive', 'features', 'space_group']
    """

    foreign_heads = ("fc_edge.", "fc2.")

    #: The values of ``pretraining``.
    pretraining_options = ("crysgnn", "attribute_masking")

    def __init__(
        self,
        module: type[torch.nn.Module] = CrysGNN,
        *,
        criterion: type[torch.nn.Module] = CrysGNNLoss,
        n_conv: int = 5,
        lr: float = 0.03,
        pretraining: str = "crysgnn",
        mask_rate: float = 0.15,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, criterion=criterion, n_conv=n_conv, lr=lr, **kwargs)
        self.pretraining = pretraining
        self.mask_rate = mask_rate

    module_param_names = (*CrysAEPretrainer.module_param_names, "pretraining", "mask_rate")

    def _masking(self) -> bool:
        """Whether ``pretraining`` asks for attribute masking (checking its value)."""
        if self.pretraining not in self.pretraining_options:
            raise ValueError(
                f"pretraining must be one of {self.pretraining_options}, got {self.pretraining!r}"
            )
        if self.pretraining == "crysgnn":
            return False
        if (self.module, self.criterion) != (CrysGNN, CrysGNNLoss):
            raise ValueError(
                "pretraining='attribute_masking' brings its own network and loss; leave "
                "module and criterion at their defaults"
            )
        if not 0 < self.mask_rate < 1:
            raise ValueError(f"mask_rate must be in (0, 1), got {self.mask_rate!r}")
        return True

    def initialize_module(self):
        """CrysGNN, or its attribute-masking variant for ``pretraining="attribute_masking"``."""
        if not self._masking():
            return super().initialize_module()
        self.module_ = AtomMaskingCrysGNN(**self.module_params(), mask_rate=self.mask_rate)
        return self

    def initialize_criterion(self):
        """CrysGNN's four-task loss, or the masked atoms' feature loss."""
        if not self._masking():
            return super().initialize_criterion()
        self.criterion_ = MaskedAtomLoss()
        return self

    def default_graph_builder(self) -> CrystalGraphTransformer:
        """``CrystalGraphTransformer(symmetry=True)``: the graph-level tasks need space groups
        (attribute masking does not: then without symmetry search)."""
        return CrystalGraphTransformer(symmetry=not self._masking())

    def _training_graphs(self, X: Any) -> CrystalGraphs:
        graphs = super()._training_graphs(X)
        if self._masking():
            return graphs
        if not graphs.symmetry:
            raise ValueError(
                "CrysGNN pretraining needs the space group of each crystal: build the graphs "
                "with CrystalGraphTransformer(symmetry=True), or pass structures"
            )
        self.symmetry_coverage_ = float((graphs.space_group > 0).mean())
        return graphs

    def node_embeddings(self, X: Any) -> np.ndarray:
        """L2-normalised node embeddings of every atom of ``X``, in order.

        Returns
        -------
        ndarray of shape (total number of atoms, atom_fea_len), float32
            Rows ``graphs.node_ptr[i]:graphs.node_ptr[i + 1]`` belong to crystal ``i``.
        """
        with torch.no_grad():
            parts = [self.module_.node_embeddings(b).cpu().numpy() for b in self._batches(X)]
        return np.concatenate(parts)

    def loss_components(self, X: Any) -> dict[str, float]:
        """The pretraining losses on ``X`` (eval mode), each a mean over crystals: the four
        of CrysGNN, or ``masked_features`` for attribute masking."""
        totals: dict[str, float] = {}
        count = 0
        with torch.no_grad():
            for batch in self._batches(X):
                parts = self.criterion_.components(self.infer(batch))
                for name, value in parts.items():
                    totals[name] = totals.get(name, 0.0) + float(value) * len(batch)
                count += len(batch)
        return {name: total / count for name, total in totals.items()}


def load_crysgnn(spec: Any, role: str = "teacher") -> CrysGNNPretrainer:
    """The fitted CrysGNN that ``spec`` names: itself, a bundled name ("crysgnn-mp"), the
    authors' "crysgnn-800k", a ``.safetensors`` file, or an authors' checkpoint file.

    ``role`` names it in messages ("teacher", "encoder").

    Raises
    ------
    ValueError
        For anything else, a model file that holds another estimator, or an unfitted
        pretrainer.
    """
    if isinstance(spec, (str, os.PathLike)):
        name = str(spec)
        if name == "crysgnn-800k":
            return crysgnn_800k()
        if name.endswith(".safetensors") or name in available_models():
            return load_as(CrysGNNPretrainer, name, source=f"{role} {name!r}")
        if Path(name).is_file():
            return CrysGNNPretrainer.from_authors_checkpoint(name)
        raise ValueError(
            f"{role} {name!r} is not a bundled model ({', '.join(available_models())}), "
            "'crysgnn-800k', a .safetensors file or a CrysGNN checkpoint file"
        )
    if not hasattr(spec, "node_embeddings"):
        raise ValueError(
            f"{role} must be a fitted CrysGNNPretrainer (or a name or path of one), "
            f"got {type(spec).__name__}"
        )
    if not hasattr(spec, "module_"):
        raise ValueError(f"the {role} is not fitted: fit the CrysGNNPretrainer first")
    return spec


# --- the authors' CrysGNN teacher ---------------------------------------------------------
#: Where the authors publish their 800K-crystal CrysGNN teacher (GitHub kdmsit/crysgnn), at
#: a commit whose tree holds ``model/crysgnn_state_checkpoint_v1.pth.tar`` (checked in an
#: index of public GitHub files; the file itself could not be fetched here).
CRYSGNN_800K_URL = (
    "https://github.com/kdmsit/crysgnn/raw/eeb419ca4e793128f4e3786fdeeaeb0373cc6f1c/"
    "model/crysgnn_state_checkpoint_v1.pth.tar"
)
#: sha256 of that file. It could not be read where skcrystal was built (no network), so it
#: is None: the first download records its hash beside it and every later use checks the
#: file against that record. Set ``SKCRYSTAL_CRYSGNN_800K_SHA256`` to pin a known hash.
CRYSGNN_800K_SHA256: str | None = None


def crysgnn_800k(device: str = "cpu") -> CrysGNNPretrainer:
    """The authors' CrysGNN teacher (pretrained on 800K MP + OQMD crystals), ready to use.

    Downloaded once from :data:`CRYSGNN_800K_URL` into ``<cache>/crysgnn/`` (see
    :func:`skcrystal.datasets.get_cache_dir`), checked against its sha256, read without
    running pickled code (:func:`skcrystal.checkpoints.read_foreign_checkpoint`),
    converted into a :class:`~skcrystal.estimators.CrysGNNPretrainer` and saved as a
    safetensors file, which later calls load directly.

    Raises
    ------
    OSError
        At once when the file is absent and cannot be downloaded (offline), saying what
        to download and where to put it; or when the file does not match its checksum.
    """
    folder = get_cache_dir() / "crysgnn"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "crysgnn_state_checkpoint_v1.pth.tar"
    converted = folder / "crysgnn-800k.safetensors"
    record = folder / "crysgnn_state_checkpoint_v1.sha256"
    if not checkpoint.is_file():
        try:
            pooch.retrieve(
                CRYSGNN_800K_URL,
                known_hash=_expected_800k_hash(record),
                fname=checkpoint.name,
                path=folder,
                progressbar=False,
            )
        except Exception as err:
            raise OSError(
                f"the CrysGNN 800K teacher is not in {folder} and downloading it failed "
                f"({type(err).__name__}: {err}). Download {CRYSGNN_800K_URL} and save it as "
                f"{checkpoint}, then call again."
            ) from None
    actual = pooch.file_hash(str(checkpoint))
    expected = _expected_800k_hash(record)
    if expected is None:
        record.write_text(actual + "\n")
    elif actual != expected.removeprefix("sha256:"):
        raise OSError(
            f"{checkpoint} has sha256 {actual}, expected {expected}: delete it and download "
            f"{CRYSGNN_800K_URL} again"
        )
    if converted.is_file():
        return load_as(CrysGNNPretrainer, converted, device=device)
    teacher = CrysGNNPretrainer.from_authors_checkpoint(checkpoint, device=device)
    tensors, description = network_parts(teacher)
    card = {
        "data": "CrysGNN 800K teacher (Das et al., AAAI 2023)",
        "source": CRYSGNN_800K_URL,
        "sha256": actual,
    }
    write_model_file(converted, tensors, description, teacher, card)
    return teacher


def _expected_800k_hash(record: Path) -> str | None:
    pinned = os.environ.get("SKCRYSTAL_CRYSGNN_800K_SHA256") or CRYSGNN_800K_SHA256
    if pinned:
        return f"sha256:{pinned.removeprefix('sha256:')}"
    if record.is_file():
        return f"sha256:{record.read_text().strip()}"
    return None
