"""``CrysGNNRegressor``: the pretrained CrysGNN network fine-tuned on a property."""

from __future__ import annotations

from typing import Any

import torch
from sklearn.base import clone

from skcrystal.estimators.crysgnn import CrysGNNPretrainer, load_crysgnn
from skcrystal.estimators.regressors import CGCNNRegressor
from skcrystal.estimators.transfer import copy_encoder_weights
from skcrystal.graphs import CrystalGraphTransformer
from skcrystal.nn.cgcnn import CGCNN

__all__ = ["CrysGNNRegressor"]


class CrysGNNRegressor(CGCNNRegressor):
    """A CrysGNN encoder with a regression head, fine-tuned end to end.

    The conventional pretrain-then-fine-tune use of CrysGNN (Das et al., AAAI 2023,
    Table 3's "fine-tuned CrysGNN"), against which distillation
    (:class:`~skcrystal.estimators.DistilledRegressor`) is compared: a CGCNN with the
    encoder's depth (five convolutions of width 64) whose embedding and convolutions,
    batch-norm statistics included, start from the pretrained encoder's; the head
    (``conv_to_fc``, ``fc_out``) starts at random, and every weight trains. The node
    vectors fed to the head are the encoder's before its L2 normalisation.

    Parameters
    ----------
    encoder : CrysGNNPretrainer or str, default="crysgnn-mp"
        A fitted :class:`~skcrystal.estimators.CrysGNNPretrainer`, a bundled name
        ("crysgnn-mp", the project's teacher), "crysgnn-800k" (the authors' teacher,
        downloaded once), a ``.safetensors`` file or an authors' checkpoint; read, never
        modified, when the network is initialised, and shared by clones. None starts
        from random weights (a 5-convolution CGCNN: what pretraining brings).
    n_conv : int, default=5
        Must equal the encoder's.
    graph_builder : CrystalGraphTransformer, default=None
        None means the encoder's graph settings (cutoff, neighbours, atom features)
        without symmetry search: the authors' 800K teacher, for example, reads the
        "cgcnn-authors" atom features.
    atom_fea_len, h_fea_len, n_h, gaussian_step, nonnegative, checkpoint, **kwargs
        As :class:`~skcrystal.estimators.CGCNNRegressor`.

    Attributes
    ----------
    transferred_params_ : tuple of str
        Names of the parameters and buffers initialised from the encoder.
    module_, history_, target_mean_, target_scale_, n_targets_, graph_builder_
        As :class:`~skcrystal.estimators.CGCNNRegressor`.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2, 4.3, 4.4)]
    >>> reg = CrysGNNRegressor(max_epochs=2, early_stopping=False, random_state=0)
    >>> reg.fit(crystals, [3.9, 4.0, 4.1, 4.2, 4.3, 4.4]).predict(crystals[:2]).shape
    (2,)
    >>> len(reg.transferred_params_), reg.transferred_params_[-2:]  # 5 convolutions, embedding
    (62, ('embedding.weight', 'embedding.bias'))
    """

    def __init__(
        self,
        module: type[torch.nn.Module] = CGCNN,
        *,
        encoder: CrysGNNPretrainer | str | None = "crysgnn-mp",
        n_conv: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, n_conv=n_conv, **kwargs)
        self.encoder = encoder

    shared_params = ("encoder",)

    def _encoder(self) -> CrysGNNPretrainer:
        """The fitted encoder, loaded once for the current ``encoder`` value."""
        cached = getattr(self, "_encoder_cache_", None)
        if cached is None or cached[0] is not self.encoder:
            cached = (self.encoder, load_crysgnn(self.encoder, role="encoder"))
            self._encoder_cache_ = cached
        return cached[1]

    def default_graph_builder(self) -> CrystalGraphTransformer:
        """The encoder's graph settings without symmetry search (the default rule's
        graphs, CGCNN's, when ``encoder=None``)."""
        if self.encoder is None:
            return super().default_graph_builder()
        return clone(self._encoder().graph_builder_).set_params(symmetry=False)

    def initialize_module(self):
        """Build the network and copy the encoder's embedding and convolutions in."""
        super().initialize_module()
        self.transferred_params_ = ()
        if self.encoder is not None:
            encoder = self._encoder()
            self.transferred_params_ = copy_encoder_weights(
                self.module_,
                encoder.module_.state_dict(),
                encoder.graph_settings_,
                self.graph_settings_,
                f"encoder {self.encoder!r}" if isinstance(self.encoder, str) else "the encoder",
            )
        return self

    def restore(self, graph_builder, state_dict, **fitted):
        """Make this estimator fitted from saved weights; sets ``encoder=None``."""
        self.encoder = None
        return super().restore(graph_builder, state_dict, **fitted)
