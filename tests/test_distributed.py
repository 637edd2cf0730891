"""Data-parallel pretraining: two CPU processes (gloo) end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skcrystal import CrysGNNPretrainer
from skcrystal.distributed import fit_data_parallel
from skcrystal.graphs import GraphStore
from skcrystal.hub import load_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pretrain_distributed.py"


def test_two_gloo_ranks_train_in_step(tmp_path, data_home):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(EXAMPLE), "--smoke", "--out", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "SKCRYSTAL_DATA": str(data_home)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["crystals"] == 60
    store = GraphStore.open(tmp_path / "graphs")  # rank 0 built it; both ranks read it
    assert (len(store), store.complete, store.symmetry) == (60, True, True)
    assert summary["identical_parameters_on_all_ranks"] is True
    losses = summary["epoch_losses_rank0"]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert isinstance(load_model(tmp_path / "crysgnn.safetensors"), CrysGNNPretrainer)


def test_refuses_without_a_process_group():
    with pytest.raises(RuntimeError, match="init_process_group"):
        fit_data_parallel(CrysGNNPretrainer(), [])


def test_refuses_a_checkpoint_it_would_not_write(tmp_path):
    with pytest.raises(ValueError, match="writes no training checkpoint"):
        fit_data_parallel(CrysGNNPretrainer(checkpoint=tmp_path / "fit.pt"), [])
    assert not (tmp_path / "fit.pt").exists()
