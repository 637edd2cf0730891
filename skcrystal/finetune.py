"""Fine-tune a fitted crystal graph regressor on new data, optionally with a frozen encoder.

A regressor trained on many DFT values can be corrected with a few measured ones: keep
the encoder (the atom embedding, the CrysXPP feature ``mask`` and the convolutions) as
it is and retrain only the head that maps pooled crystal vectors to the property.
:func:`fine_tune` does this with :meth:`partial_fit` (the target scaling of the first fit
is kept); :class:`FreezeEncoder` is the skorch callback it uses, for hand-made loops.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any

from skorch.callbacks import Callback

__all__ = ["ENCODER_PARAMETERS", "FreezeEncoder", "fine_tune"]

#: Name patterns of the encoder parameters of ``CGCNN`` and ``MaskedCGCNN``.
ENCODER_PARAMETERS = ("mask", "embedding.*", "convs.*")


def _in_encoder(name: str) -> bool:
    return any(fnmatch(name, pattern) for pattern in ENCODER_PARAMETERS)


def _encoder_to_eval(module: Any, args: Any) -> None:
    # skorch puts the whole module in train mode before each training step; this
    # forward pre-hook then puts the convolutions (their batch norms) back in eval mode.
    module.convs.eval()


class FreezeEncoder(Callback):
    """skorch callback: train the head only, with the encoder fixed as in prediction.

    From the start to the end of a fit, the parameters matching
    :data:`ENCODER_PARAMETERS` get no gradient (``requires_grad=False``), so the
    optimizer leaves them as they are, and the batch normalisations of the convolutions
    stay in eval mode: they normalise with the running statistics of the original
    training, which therefore do not change, and the head is trained on exactly the
    crystal vectors that :meth:`predict` computes. Training-mode batch statistics of a
    handful of crystals would differ from those and would overwrite the running ones.
    After the fit every parameter is trainable again and the module behaves as before.

    Unlike skorch's ``Freezer``, it also freezes when ``partial_fit`` continues a model
    whose history already has epochs.
    """

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        names = [name for name, _ in net.module_.named_parameters()]
        if not hasattr(net.module_, "convs") or not any(map(_in_encoder, names)):
            raise TypeError(
                f"freezing the encoder knows the CGCNN-family networks (CGCNN, CrysXPP), "
                f"whose encoder is {', '.join(ENCODER_PARAMETERS)}; "
                f"{type(net.module_).__name__} is not one: fine-tune it with "
                "freeze_encoder=False"
            )
        self.frozen_ = [
            param
            for name, param in net.module_.named_parameters()
            if _in_encoder(name) and param.requires_grad
        ]
        for param in self.frozen_:
            param.requires_grad_(False)
        self.hook_ = net.module_.register_forward_pre_hook(_encoder_to_eval)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        """Make the frozen parameters trainable again and remove the hook (idempotent)."""
        for param in getattr(self, "frozen_", ()):
            param.requires_grad_(True)
        self.frozen_ = []
        if getattr(self, "hook_", None) is not None:
            self.hook_.remove()
            self.hook_ = None


def fine_tune(
    model: Any,
    X: Any,
    y: Any,
    *,
    max_epochs: int = 100,
    lr: float = 1e-3,
    freeze_encoder: bool = True,
    random_state: int | None = 0,
) -> Any:
    """Continue training a fitted regressor on ``(X, y)``, in place; return it.

    Runs :meth:`partial_fit` for ``max_epochs`` epochs with a fresh optimizer (the
    model's, AdamW by default) at a constant ``lr``, on all of ``X`` (no validation
    split, no early stopping: with a few crystals there is nothing to validate on, so fix
    the epochs and ``lr`` in advance). The target scaling of the first fit is kept. The
    model's parameters (``max_epochs``, ``lr``, ``lr_schedule``, ``callbacks``, ...) are
    restored afterwards; its weights
    and ``history`` keep the fine-tuning.

    Parameters
    ----------
    model : fitted CGCNNRegressor or CrysXPPRegressor (any regressor with freeze_encoder=False)
        For example ``skcrystal.hub.load_model("crysxpp-mp-band-gap")``.
    X : sequence of crystals or CrystalGraphs
    y : array-like of shape (n_crystals,) or (n_crystals, n_properties)
        New targets in the units of the original ones.
    max_epochs : int, default=100
    lr : float, default=1e-3
    freeze_encoder : bool, default=True
        Train only the head, with the encoder and its batch-norm statistics fixed
        (:class:`FreezeEncoder`). If False, every weight trains and the batch norms run in
        training mode, updating their running statistics with the new crystals.
    random_state : int or None, default=0
        Seed of the fine-tuning (batch order).

    Returns
    -------
    model
        The same object, fine-tuned.

    Examples
    --------
    >>> import numpy as np
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CGCNNRegressor
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2)]
    >>> model = CGCNNRegressor(max_epochs=2, early_stopping=False, random_state=0)
    >>> model = model.fit(crystals, [1.0, 2.0, 3.0, 4.0])
    >>> encoder = model.module_.convs[0].fc_full.weight.detach().clone()
    >>> before = model.predict(crystals)
    >>> model = fine_tune(model, crystals, [3.0, 4.0, 5.0, 6.0], max_epochs=20, lr=1e-2)
    >>> bool((model.module_.convs[0].fc_full.weight == encoder).all())  # frozen
    True
    >>> bool((model.predict(crystals) > before).all())  # moved up toward the new targets
    True
    """
    keys = (
        "max_epochs",
        "lr",
        "lr_schedule",
        "warmup_epochs",
        "early_stopping",
        "callbacks",
        "random_state",
    )
    saved = {key: getattr(model, key) for key in keys}
    freeze = FreezeEncoder() if freeze_encoder else None
    callbacks = [] if freeze is None else [("freeze_encoder", freeze)]
    model.set_params(
        max_epochs=max_epochs,
        lr=lr,
        lr_schedule="constant",
        warmup_epochs=0,
        early_stopping=False,
        callbacks=callbacks,
        random_state=random_state,
    )
    try:
        model.initialize_optimizer()
        model.partial_fit(X, y)
    finally:
        if freeze is not None:  # skorch skips on_train_end when training fails
            freeze.on_train_end(model)
        model.set_params(**saved)
    return model
