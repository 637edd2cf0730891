"""Tests for skcrystal.checkpoints: reading foreign torch checkpoints without running their code."""

from __future__ import annotations

import argparse
import builtins
import math
import os
import pickle
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from skcrystal.checkpoints import UnsafeCheckpointError, read_foreign_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]

# best_mae_error recorded in the original CGCNN files (SOURCES.md 6b); the classifier stores AUC.
CGCNN_FILES = {
    "formation-energy-per-atom.pth.tar": 0.0397,
    "final-energy-per-atom.pth.tar": 0.0793,
    "band-gap.pth.tar": 0.369,
    "efermi.pth.tar": 0.355,
    "bulk-moduli.pth.tar": 0.0553,
    "shear-moduli.pth.tar": 0.0908,
    "poisson-ratio.pth.tar": 0.0293,
    "semi-metal-classification.pth.tar": None,
}


def reference_file(*parts: str) -> Path:
    """A file under ``$SKCRYSTAL_DATA/reference_weights``; fails (never skips) when missing."""
    home = Path(os.environ.get("SKCRYSTAL_DATA", REPO_ROOT.parent / "shared" / "data"))
    path = home.joinpath("reference_weights", *parts)
    assert path.is_file(), f"reference checkpoint missing: {path} (set SKCRYSTAL_DATA)"
    return path


def conv_indices(state_dict: dict[str, torch.Tensor]) -> set[int]:
    return {int(key.split(".")[1]) for key in state_dict if key.startswith("convs.")}


# --- the staged reference weights ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CGCNN_FILES))
def test_reads_every_original_cgcnn_file(name):
    ckpt = read_foreign_checkpoint(reference_file("cgcnn_original", name))
    sd = ckpt["state_dict"]
    assert conv_indices(sd) == {0, 1, 2, 3}
    assert sd["embedding.weight"].shape == (64, 92)
    assert sd["convs.0.fc_full.weight"].shape == (128, 169)
    assert sd["conv_to_fc.weight"].shape == (32, 64)
    n_out = 2 if name.startswith("semi-metal") else 1
    assert sd["fc_out.weight"].shape == (n_out, 32)
    assert "mask" not in sd
    assert all(type(t) is torch.Tensor and t.device.type == "cpu" for t in sd.values())
    assert all(math.isfinite(ckpt["normalizer"][k]) for k in ("mean", "std"))
    assert ckpt["args"]["n_conv"] == 4
    assert ckpt["args"]["atom_fea_len"] == 64
    assert ckpt["args"]["h_fea_len"] == 32
    best = ckpt["meta"]["best_mae_error"]
    # The classifier's value is a pickled numpy float64, decoded without numpy's unpickler.
    assert type(best) is float
    if CGCNN_FILES[name] is not None:
        assert best == pytest.approx(CGCNN_FILES[name], abs=6e-4)
    assert isinstance(ckpt["meta"]["epoch"], int)
    assert "optimizer" not in ckpt["meta"]


def test_cgcnn_formation_energy_contents():
    ckpt = read_foreign_checkpoint(
        reference_file("cgcnn_original", "formation-energy-per-atom.pth.tar")
    )
    assert ckpt["normalizer"]["mean"] == pytest.approx(-1.6992, abs=1e-4)
    assert ckpt["normalizer"]["std"] == pytest.approx(1.0563, abs=1e-4)
    assert ckpt["meta"] == {"epoch": 968, "best_mae_error": pytest.approx(0.03972, abs=1e-5)}
    # These old args record the model and training, not the graph (no radius / neighbours).
    assert ckpt["args"]["n_h"] == 1
    assert ckpt["args"]["task"] == "regression"
    assert torch.isfinite(ckpt["state_dict"]["convs.3.fc_full.weight"]).all()


def test_crysxpp_model_best_contents():
    ckpt = read_foreign_checkpoint(reference_file("crysxpp", "model_best.pth.tar"))
    sd = ckpt["state_dict"]
    assert sd["mask"].shape == (92,)
    assert sd["embedding.weight"].shape == (64, 92)
    assert sd["embedding.bias"].shape == (64,)
    assert conv_indices(sd) == {0, 1, 2}
    assert sd["conv_to_fc.weight"].shape == (128, 64)
    assert sd["fc_out.weight"].shape == (1, 128)
    assert ckpt["meta"]["epoch"] == 91
    assert type(ckpt["meta"]["best_mae_error"]) is float  # a 0-d tensor in the file
    assert ckpt["meta"]["best_mae_error"] == pytest.approx(0.1423, abs=1e-4)
    assert ckpt["normalizer"] == {
        "mean": pytest.approx(-1.5573, abs=1e-4),
        "std": pytest.approx(1.1274, abs=1e-4),
    }
    args = ckpt["args"]
    assert (args["radius"], args["max_nbr"], args["n_conv"]) == (8, 12, 3)
    assert args["feature_selector"] is True


def test_crysae_whole_pickled_module():
    ckpt = read_foreign_checkpoint(reference_file("crysxpp", "model_pretrain.pth"))
    sd = ckpt["state_dict"]
    assert sd["embedding.weight"].shape == (64, 92)
    assert "embedding.bias" not in sd
    assert conv_indices(sd) == {0, 1, 2}
    for k in range(3):
        assert sd[f"convs.{k}.fc_full.weight"].shape == (128, 169)
        for bn, width in (("bn1", 128), ("bn2", 64)):
            for stat in ("weight", "bias", "running_mean", "running_var"):
                assert sd[f"convs.{k}.{bn}.{stat}"].shape == (width,)
            assert sd[f"convs.{k}.{bn}.num_batches_tracked"].shape == ()
    assert sd["fc_adj.weight"].shape == (6, 64, 64)
    assert sd["fc1.weight"].shape == (6, 6)
    assert sd["fc_atom_feature.weight"].shape == (92, 64)
    assert (ckpt["normalizer"], ckpt["args"], ckpt["meta"]) == (None, None, {})


# --- checkpoints made here -----------------------------------------------------------------------


class TinyNet(nn.Module):
    """Stands in for a foreign model class that the reader must never import."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Linear(3, 4, bias=False)
        self.convs = nn.ModuleList([nn.BatchNorm1d(4), nn.Softplus()])
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.register_buffer("scale", torch.ones(1))


@pytest.fixture(params=[True, False], ids=["zip", "legacy"])
def zip_format(request):
    return request.param


def test_whole_module_matches_its_state_dict(tmp_path):
    model = TinyNet()
    path = tmp_path / "model.pth"
    torch.save(model, path)
    sd = read_foreign_checkpoint(path)["state_dict"]
    expected = model.state_dict()
    assert list(sd) == list(expected)  # same names and order; non-persistent buffer left out
    for name, tensor in expected.items():
        torch.testing.assert_close(sd[name], tensor)


def test_namespace_args_and_numpy_scalars(tmp_path, zip_format):
    checkpoint = {
        "state_dict": {"w": torch.arange(3.0)},
        "normalizer": {"mean": torch.tensor(0.5), "std": torch.tensor(2.0)},
        "args": argparse.Namespace(radius=8, max_num_nbr=12),
        "best_mae_error": np.float64(0.125),
        "fraction": np.float32(0.5),
        "epoch": np.int64(7),
        "is_best": np.bool_(True),
        "optimizer": {"state": {}, "param_groups": []},
    }
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    ckpt = read_foreign_checkpoint(path)
    torch.testing.assert_close(ckpt["state_dict"]["w"], torch.arange(3.0))
    assert ckpt["normalizer"] == {"mean": 0.5, "std": 2.0}
    assert ckpt["args"] == {"radius": 8, "max_num_nbr": 12}
    assert ckpt["meta"] == {"best_mae_error": 0.125, "fraction": 0.5, "epoch": 7, "is_best": True}
    assert [type(v) for v in ckpt["meta"].values()] == [float, float, int, bool]


def test_bare_state_dict(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"a.weight": torch.ones(2, 2), "a.bias": nn.Parameter(torch.zeros(2))}, path)
    ckpt = read_foreign_checkpoint(path)
    assert list(ckpt["state_dict"]) == ["a.weight", "a.bias"]
    assert type(ckpt["state_dict"]["a.bias"]) is torch.Tensor  # Parameters come back plain
    assert (ckpt["normalizer"], ckpt["args"], ckpt["meta"]) == (None, None, {})


# --- refusing to run code ------------------------------------------------------------------------


class RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


class RunsSubprocess:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


class BuildsEvilModule(nn.Module):
    """Its own __setstate__ would write the marker; a reader that imports it would run that."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1)
        self.marker = str(marker)

    def __setstate__(self, state):
        Path(state["marker"]).touch()
        super().__setstate__(state)


PAYLOADS = [RunsShell, RunsEval, RunsSubprocess]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda cls: cls.__name__)
def test_payloads_are_live(tmp_path, payload):
    # Control: plain pickle runs each payload, so the refusals below are meaningful.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda cls: cls.__name__)
def test_malicious_pickle_is_refused_and_not_run(tmp_path, payload, zip_format):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth.tar"
    checkpoint = {"state_dict": {"w": torch.ones(1)}, "epoch": payload(marker)}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError, match=f"refused to load {re.escape(str(path))}"):
        read_foreign_checkpoint(path)
    assert not marker.exists()


def test_foreign_class_code_is_never_imported(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "model.pth"
    torch.save(BuildsEvilModule(marker), path)
    sd = read_foreign_checkpoint(path)["state_dict"]
    assert set(sd) == {"fc.weight", "fc.bias"}
    assert not marker.exists()


def test_refusal_names_the_called_global(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": RunsEval(tmp_path / "ran")}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.eval"):
        read_foreign_checkpoint(path)


def test_legacy_whole_module_is_refused(tmp_path):
    # The legacy format stores module classes as persistent ids, which torch never resolves.
    path = tmp_path / "model.pth"
    torch.save(TinyNet(), path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match=re.escape(str(path))):
        read_foreign_checkpoint(path)


def test_allow_list_is_restored(tmp_path):
    before = set(torch.serialization.get_safe_globals())
    path = tmp_path / "evil.pt"
    torch.save({"x": RunsEval(tmp_path / "ran")}, path)
    with pytest.raises(UnsafeCheckpointError):
        read_foreign_checkpoint(path)
    read_foreign_checkpoint(reference_file("crysxpp", "model_pretrain.pth"))
    assert set(torch.serialization.get_safe_globals()) == before


# --- bad input -----------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere.pth.tar"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_foreign_checkpoint(path)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(ValueError, match=re.escape(f"{path} is not a torch checkpoint")):
        read_foreign_checkpoint(path)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_checkpoint(tmp_path, zip_format):
    path = tmp_path / "cut.pth"
    torch.save(
        {"state_dict": {"w": torch.ones(1000)}}, path, _use_new_zipfile_serialization=zip_format
    )
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_foreign_checkpoint(path)


def test_checkpoint_without_weights(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(
        ValueError, match=re.escape(f"{path}: the file holds a list, not model weights")
    ):
        read_foreign_checkpoint(path)


def test_non_numeric_numpy_scalar_is_rejected(tmp_path):
    path = tmp_path / "text.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "note": np.str_("hi")}, path)
    with pytest.raises(ValueError, match="unsupported numpy scalar"):
        read_foreign_checkpoint(path)
