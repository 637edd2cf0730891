"""skorch callbacks shared by the crystal graph estimators."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
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


def warmup_cosine_factor(step: int, *, total_steps: int, warmup_steps: int, decay: bool) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (counted from 0).

    Linear warm-up from ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps,
    then 1 (``decay=False``) or a half cosine from 1 to 0 over the remaining steps.

    Examples
    --------
    >>> [round(warmup_cosine_factor(s, total_steps=6, warmup_steps=2, decay=True), 2)
    ...  for s in range(6)]
    [0.5, 1.0, 1.0, 0.85, 0.5, 0.15]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not decay:
        return 1.0
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class LearningRateSchedule(Callback):
    """Set the learning rate of every optimizer step from the estimator's ``lr_schedule``.

    The schedule spans the epochs the fit will run (``net.max_epochs_``, resolved in
    ``fit``) and the mini-batches of the training set, counted at the first epoch; each
    ``fit`` (or ``partial_fit``) starts it afresh. The schedules, on top of the base
    ``lr`` of the optimizer:

    - "constant": ``lr`` throughout;
    - "cosine": a half cosine from ``lr`` to 0 over all steps, stepped per mini-batch;
    - "onecycle": :class:`torch.optim.lr_scheduler.OneCycleLR` with ``max_lr=lr`` (up
      from ``lr / 25`` over the first 30 % of the steps, then down to ``lr / 1e4``; it
      also cycles Adam's beta1 or SGD's momentum);
    - "plateau": :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` on the watched
      validation score (``net.early_stopping_monitor``), halving ``lr`` after 10 epochs
      without improvement.

    "constant" and "cosine" take a linear warm-up over the first ``net.warmup_epochs``
    epochs. The learning rate of each epoch's first step is recorded as ``lr`` in the
    history. When training ends, the optimizer gets back the settings it started with.
    """

    def on_train_begin(self, net, **kwargs) -> None:
        self.scheduler_ = None
        self.step_ = 0

    def _build(self, net, total: int, warmup: int) -> None:
        """Make the scheduler of ``total`` optimizer steps, ``warmup`` of them warming up."""
        self.total_steps_, self.warmup_steps_ = total, warmup
        optimizer = net.optimizer_
        self.settings_ = [
            {key: value for key, value in group.items() if key != "params"}
            for group in optimizer.param_groups
        ]
        for group in optimizer.param_groups:
            group.pop("initial_lr", None)  # each fit starts from the optimizer's own lr
        schedules = torch.optim.lr_scheduler
        if net.lr_schedule == "onecycle":
            base = [group["lr"] for group in optimizer.param_groups]
            self.scheduler_ = schedules.OneCycleLR(optimizer, max_lr=base, total_steps=total)
        elif net.lr_schedule == "plateau":
            self.scheduler_ = schedules.ReduceLROnPlateau(optimizer, factor=0.5, patience=10)
        else:
            factor = functools.partial(
                warmup_cosine_factor,
                total_steps=total,
                warmup_steps=warmup,
                decay=net.lr_schedule == "cosine",
            )
            self.scheduler_ = schedules.LambdaLR(optimizer, factor)

    def get_training_state(self) -> dict:
        """Where the schedule stands (saved by a training checkpoint)."""
        if self.scheduler_ is None:
            return {}
        return {
            "step": self.step_,
            "total_steps": self.total_steps_,
            "warmup_steps": self.warmup_steps_,
            "scheduler": self.scheduler_.state_dict(),
        }

    def set_training_state(self, net, state: dict) -> None:
        """Rebuild the schedule where :meth:`get_training_state` left it.

        Called at the start of a resumed fit, before the optimizer gets its saved state
        back (which holds the learning rates of the step reached).
        """
        if not state:
            return
        self._build(net, state["total_steps"], state["warmup_steps"])  # on the fresh optimizer
        self.scheduler_.load_state_dict(state["scheduler"])
        self.step_ = state["step"]

    def on_epoch_begin(self, net, dataset_train=None, **kwargs) -> None:
        if self.scheduler_ is None:
            steps_per_epoch = max(math.ceil(len(dataset_train) / net.batch_size), 1)
            warmup = round(net.warmup_epochs * steps_per_epoch)
            self._build(net, steps_per_epoch * net.max_epochs_, warmup)
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])

    def on_batch_end(self, net, training, **kwargs) -> None:
        if training and net.lr_schedule in ("constant", "cosine", "onecycle"):
            self.step_ += 1
            if self.step_ < self.total_steps_:  # OneCycleLR refuses steps past its end
                self.scheduler_.step()

    def on_epoch_end(self, net, **kwargs) -> None:
        if net.lr_schedule == "plateau":
            score = net.history[-1].get(net.early_stopping_monitor)
            if score is None:
                score = net.history[-1, "train_loss"]
            self.scheduler_.step(score)

    def on_train_end(self, net, **kwargs) -> None:
        """Give the optimizer back its settings (lr, betas...) and drop the scheduler.

        The next ``fit`` / ``partial_fit`` then starts from the base ``lr`` (or from one
        changed with ``set_params``) rather than from where the schedule ended.
        """
        if self.scheduler_ is not None:
            for group, settings in zip(net.optimizer_.param_groups, self.settings_, strict=True):
                for key in set(group) - {"params"} - set(settings):
                    del group[key]
                group.update(settings)
        self.scheduler_ = None
