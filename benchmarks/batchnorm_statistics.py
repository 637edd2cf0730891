"""Validation MAE during training under three batch-norm statistics (a diagnosis).

On carbon-24 the validation MAE of the defaults stays far above the training loss until
the cosine rate nears zero (docs/training.md). This script trains ``CGCNNRegressor``
(defaults, seed 0, ``--epochs`` epochs on the split of ``recipes.py``) and, every five
epochs, predicts the validation crystals with the same weights three ways: with the
running averages that ``predict`` uses, with each batch's own statistics, and with
statistics recomputed over the training crystals (a cumulative average,
``torch.optim.swa_utils.update_bn``). The table goes into docs/benchmarks.md.

    python benchmarks/batchnorm_statistics.py --datasets carbon24 mp-eform-1k --epochs 30
"""

from __future__ import annotations

import argparse
import copy
import sys

import numpy as np
import torch
from recipes import DATASETS
from report import machine, markdown_table, write_section
from skorch.callbacks import Callback
from torch.optim.swa_utils import update_bn

from skcrystal import CGCNNRegressor, CrystalGraphTransformer


class ThreeStatistics(Callback):
    """Every ``every`` epochs, the validation MAE under the three statistics (to ``rows``)."""

    def __init__(self, graphs, y, every: int = 5):
        self.graphs, self.y, self.every, self.rows = graphs, y, every, []

    def _mae(self, net, module) -> float:
        trained, net.module_ = net.module_, module
        try:
            return float(np.abs(net.predict(self.graphs) - self.y).mean())
        finally:
            net.module_ = trained

    def on_epoch_end(self, net, dataset_train=None, **kwargs):
        epoch = len(net.history)
        if epoch % self.every:
            return
        per_batch = copy.deepcopy(net.module_)
        for norm in per_batch.modules():
            if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                norm.track_running_stats = False
                norm.running_mean = norm.running_var = None
        recomputed = copy.deepcopy(net.module_)
        update_bn(net.get_iterator(dataset_train, training=False), recomputed)
        self.rows.append(
            {
                "epoch": epoch,
                "running averages (predict)": self._mae(net, net.module_),
                "each batch's own": self._mae(net, per_batch),
                "recomputed on training crystals": self._mae(net, recomputed),
            }
        )
        print(self.rows[-1], flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["carbon24", "mp-eform-1k"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = [
        f"`python benchmarks/batchnorm_statistics.py --datasets {' '.join(args.datasets)} "
        f"--epochs {args.epochs}`: `CGCNNRegressor` with its defaults (seed 0) and "
        f"max_epochs={args.epochs}; validation MAE of the same weights under three batch-norm "
        "statistics (see the script's docstring).",
        "",
    ]
    for dataset in args.datasets:
        data = DATASETS[dataset]()
        builder = CrystalGraphTransformer()
        graphs = {part: builder.transform(data[part][0]) for part in ("train", "valid")}
        valid = (graphs["valid"], data["valid"][1])
        probe = ThreeStatistics(*valid)
        CGCNNRegressor(
            random_state=0,
            max_epochs=args.epochs,
            n_iter_no_change=args.epochs,
            callbacks=[("three_statistics", probe)],
        ).fit(graphs["train"], data["train"][1], validation_data=valid)
        lines += [f"**{dataset}** (validation MAE)", "", markdown_table(probe.rows), ""]
    write_section(
        "batchnorm_statistics",
        "Batch-norm statistics during training",
        "\n".join(lines) + f"\n{machine()}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
