"""skorch callbacks shared by the crystal graph estimators."""

from __future__ import annotations

import numpy as np
from skorch.callbacks import Callback


class ValidMAE(Callback):
    """Record ``valid_mae``: the validation mean absolute error in the target's units.

    Computed from the predictions the validation loop already made, so it costs no extra
    forward pass. With several targets it is the mean over targets of their MAEs. Crystals
    with a ``sample_weight`` count with it: the weighted mean of their errors.
    """

    def on_epoch_begin(self, net, **kwargs) -> None:
        self.abs_error_sum_ = 0.0
        self.count_ = 0

    def on_batch_end(self, net, batch, training, y_pred=None, **kwargs) -> None:
        inputs, y_true = batch
        if isinstance(y_true, (tuple, list)):  # targets plus extra training signals
            y_true = y_true[0]
        if training or y_true is None or y_pred is None:
            return
        error = (y_pred.detach() - y_true.to(y_pred.device)).abs().cpu().numpy()
        per_crystal = (error * net.target_scale_).mean(axis=1)
        weight = getattr(inputs, "sample_weight", None)
        weight = np.ones(len(error)) if weight is None else weight.cpu().numpy()
        self.abs_error_sum_ += float((weight * per_crystal).sum())
        self.count_ += float(weight.sum())

    def on_epoch_end(self, net, **kwargs) -> None:
        if self.count_:
            net.history.record("valid_mae", self.abs_error_sum_ / self.count_)
