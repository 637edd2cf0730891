"""Training recipes: how the estimators' defaults size a fit, and published recipes by name.

The estimators train with one shared recipe unless told otherwise: AdamW at ``lr=3e-3``,
a cosine decay to 0 over all mini-batches (``lr_schedule="cosine"``), batch 64, and a
number of epochs that follows the number of training crystals (``max_epochs="auto"``,
:func:`auto_max_epochs`), with early stopping on the validation MAE after
``n_iter_no_change="auto"`` epochs without improvement (:func:`auto_n_iter_no_change`)
and the best epoch restored. The comparison that chose these values is in
``docs/training.md`` (``benchmarks/recipes.py``).

:func:`recipe` gives the parameters of other recipes, such as the CGCNN authors' (to
reproduce a paper) or skcrystal 0.1's defaults, for any estimator:
``CGCNNRegressor(**recipe("cgcnn-authors"))``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from sklearn.base import clone
from skorch.callbacks import LRScheduler

__all__ = [
    "LR_SCHEDULES",
    "RECIPES",
    "auto_max_epochs",
    "auto_n_iter_no_change",
    "check_recipe",
    "recipe",
]

#: The values of ``lr_schedule`` besides a skorch ``LRScheduler``
#: (see :class:`skcrystal.estimators.callbacks.LearningRateSchedule`).
LR_SCHEDULES = ("constant", "cosine", "onecycle", "plateau")

#: ``auto_max_epochs``: epochs at 1,000 training crystals, and the bounds.
EPOCHS_AT_1000 = 150
MIN_EPOCHS, MAX_EPOCHS = 200, 500

#: ``auto_n_iter_no_change``: patience as a fraction of the epochs, and its floor.
PATIENCE_FRACTION, MIN_PATIENCE = 0.5, 20


def auto_max_epochs(n_train: int) -> int:
    """Epochs of a fit on ``n_train`` crystals when ``max_epochs="auto"``.

    ``ceil(EPOCHS_AT_1000 * sqrt(1000 / n_train))`` kept within [``MIN_EPOCHS``,
    ``MAX_EPOCHS``]: sets of 563 crystals or more get 200 epochs, smaller sets more
    passes (their epochs are short and have few mini-batches), up to 500. Measured
    (docs/training.md): on 564 to 1,000 training crystals 150 to 200 epochs did as well on
    validation as twice as many; on 1,914 elasticity crystals 218 epochs beat 109 (log10 K
    by 4.8 %, log10 G by 1.4 %, Poisson ratio a tie), hence the floor of 200 (it was 100).
    Above 2,000 crystals the floor is not measured: on 7,300 MP crystals 100 cosine epochs
    did much better than 30.

    Examples
    --------
    >>> [auto_max_epochs(n) for n in (50, 190, 564, 1_000, 25_000)]
    [500, 345, 200, 200, 200]
    """
    epochs = math.ceil(EPOCHS_AT_1000 * math.sqrt(1000 / max(int(n_train), 1)))
    return int(min(max(epochs, MIN_EPOCHS), MAX_EPOCHS))


def auto_n_iter_no_change(max_epochs: int) -> int:
    """Early-stopping patience for a fit of ``max_epochs`` when ``n_iter_no_change="auto"``.

    ``PATIENCE_FRACTION`` of the epochs, at least ``MIN_PATIENCE``: with the cosine
    schedule the best epoch often comes late, and a quarter of the epochs stopped too
    soon on one of the measured sets (docs/training.md).

    Examples
    --------
    >>> [auto_n_iter_no_change(n) for n in (30, 100, 150, 500)]
    [20, 50, 75, 250]
    """
    return max(MIN_PATIENCE, math.ceil(PATIENCE_FRACTION * max_epochs))


def _int_or_auto(name: str, value: Any, minimum: int) -> None:
    if value == "auto":
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} or 'auto', got {value!r}")


def check_recipe(net: Any) -> None:
    """Refuse recipe parameters of ``net`` that training cannot use, saying why.

    Raises
    ------
    ValueError
        For an unknown ``lr_schedule``, a negative or misplaced ``warmup_epochs``, a
        negative ``weight_decay``, or ``max_epochs`` (``n_iter_no_change``) that is
        neither an integer >= 0 (>= 1) nor "auto".
    """
    _int_or_auto("max_epochs", net.max_epochs, 0)  # 0: set the network up without training
    _int_or_auto("n_iter_no_change", net.n_iter_no_change, 1)
    schedule = net.lr_schedule
    if not (schedule in LR_SCHEDULES or isinstance(schedule, LRScheduler)):
        raise ValueError(
            f"lr_schedule must be one of {', '.join(map(repr, LR_SCHEDULES))} or a skorch "
            f"LRScheduler, got {schedule!r}"
        )
    warmup = net.warmup_epochs
    if not isinstance(warmup, numbers.Real) or warmup < 0:
        raise ValueError(f"warmup_epochs must be a number >= 0, got {warmup!r}")
    if warmup and schedule not in ("constant", "cosine"):
        raise ValueError(
            f"warmup_epochs={warmup} works with lr_schedule 'constant' or 'cosine', not "
            f"{schedule!r} ('onecycle' warms up by itself)"
        )
    if not isinstance(net.weight_decay, numbers.Real) or net.weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {net.weight_decay!r}")


#: Named recipes: estimator parameters that override the defaults.
RECIPES: dict[str, dict[str, Any]] = {
    # Xie & Grossman's CGCNN code (txie-93/cgcnn main.py): SGD, lr 0.01, momentum 0.9,
    # lr x0.1 at epoch 100, batch 256, no weight decay; 300 epochs as in the paper's
    # runs, keeping the epoch with the best validation MAE (the code trains all epochs).
    "cgcnn-authors": {
        "optimizer": torch.optim.SGD,
        "optimizer__momentum": 0.9,
        "lr": 0.01,
        "lr_schedule": LRScheduler("MultiStepLR", milestones=[100], gamma=0.1),
        "warmup_epochs": 0,
        "weight_decay": 0.0,
        "max_epochs": 300,
        "n_iter_no_change": 300,
        "batch_size": 256,
    },
    # Choudhary & DeCost's ALIGNN (paper, Methods; usnistgov/alignn@v2021.11.16
    # train_props.py): AdamW, one-cycle to lr 1e-3 stepped per batch, weight decay 1e-5
    # off biases and norms, batch 64, 300 epochs; the code keeps the last epoch.
    "alignn-authors": {
        "optimizer": torch.optim.AdamW,
        "lr": 1e-3,
        "lr_schedule": "onecycle",
        "warmup_epochs": 0,
        "weight_decay": 1e-5,
        "max_epochs": 300,
        "early_stopping": False,
        "batch_size": 64,
    },
    # Louis et al.'s GATGNN (superlouis/GATGNN@3d3bad9 train.py): AdamW, lr 5e-3, weight
    # decay 0.1, batch 256, 200 epochs, lr x0.3 at epoch 150 (their second milestone,
    # 250, never comes), smooth L1 loss, the best validation epoch kept (patience 150).
    "gatgnn-authors": {
        "optimizer": torch.optim.AdamW,
        "criterion": torch.nn.SmoothL1Loss,
        "lr": 5e-3,
        "lr_schedule": LRScheduler("MultiStepLR", milestones=[150], gamma=0.3),
        "warmup_epochs": 0,
        "weight_decay": 0.1,
        "max_epochs": 200,
        "n_iter_no_change": 150,
        "batch_size": 256,
    },
    # Chen et al.'s MEGNet (materialsvirtuallab/megnet@f370576, models/base.py and the
    # README): Adam, lr 1e-3, constant, batch 128, 1000 epochs, patience 500, the best
    # validation epoch kept. Its gradient clipping (Keras clipnorm=3, per tensor) is not
    # reproduced.
    "megnet-authors": {
        "optimizer": torch.optim.Adam,
        "lr": 1e-3,
        "lr_schedule": "constant",
        "warmup_epochs": 0,
        "weight_decay": 0.0,
        "max_epochs": 1000,
        "n_iter_no_change": 500,
        "batch_size": 128,
    },
    # Jha et al.'s ElemNet (NU-CUCIS/ElemNet, train_and_evaluate.py and its sample
    # configuration): Adam, lr 1e-4, constant, batch 32, mean absolute error, up to 4,000
    # epochs, stopping after 200 without a better validation loss.
    "elemnet-authors": {
        "optimizer": torch.optim.Adam,
        "criterion": torch.nn.L1Loss,
        "lr": 1e-4,
        "lr_schedule": "constant",
        "warmup_epochs": 0,
        "weight_decay": 0.0,
        "max_epochs": 4000,
        "n_iter_no_change": 200,
        "batch_size": 32,
    },
    # skcrystal 0.1's defaults, for comparison.
    "skcrystal-0.1": {
        "optimizer": torch.optim.Adam,
        "lr": 1e-3,
        "lr_schedule": "constant",
        "warmup_epochs": 0,
        "weight_decay": 0.0,
        "max_epochs": 100,
        "n_iter_no_change": 20,
        "batch_size": 128,
    },
}


def recipe(name: str) -> dict[str, Any]:
    """The estimator parameters of the recipe ``name`` (a fresh copy), for ``**`` or ``set_params``.

    Parameters
    ----------
    name : {"cgcnn-authors", "alignn-authors", "gatgnn-authors", "megnet-authors", \
"elemnet-authors", "skcrystal-0.1"}
        "cgcnn-authors": the CGCNN authors' code (SGD 0.01, momentum 0.9, step decay x0.1
        at epoch 100, 300 epochs, batch 256, best validation epoch kept);
        "alignn-authors": the ALIGNN paper's (AdamW, one-cycle to 1e-3 per batch, weight
        decay 1e-5, batch 64, 300 epochs, all crystals trained on, last epoch kept);
        "gatgnn-authors": the GATGNN code's (AdamW 5e-3, weight decay 0.1, batch 256,
        200 epochs, lr x0.3 at epoch 150, smooth L1 loss, best validation epoch kept);
        "megnet-authors": the original MEGNet package's (Adam 1e-3, constant, batch 128,
        1,000 epochs, patience 500, best validation epoch kept);
        "elemnet-authors": the ElemNet code's (Adam 1e-4, constant, batch 32, mean
        absolute error, 4,000 epochs, patience 200, best validation epoch kept);
        "skcrystal-0.1": this library's defaults before 0.2 (Adam 1e-3, constant, 100
        epochs, patience 20, batch 128).

    Returns
    -------
    dict
        Parameter names and values, e.g. ``{"optimizer": torch.optim.SGD, "lr": 0.01, ...}``.

    Examples
    --------
    >>> from skcrystal import CGCNNRegressor
    >>> from skcrystal.recipes import recipe
    >>> reg = CGCNNRegressor(**recipe("cgcnn-authors"))
    >>> reg.lr, reg.max_epochs, reg.batch_size
    (0.01, 300, 256)
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return {key: clone(value, safe=False) for key, value in RECIPES[name].items()}
