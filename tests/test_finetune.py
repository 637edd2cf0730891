"""Fine-tuning the bundled band-gap model (skcrystal.finetune) on real MP crystals."""

from fnmatch import fnmatch

import numpy as np
import pytest
import torch

from skcrystal.finetune import ENCODER_PARAMETERS, FreezeEncoder, fine_tune
from skcrystal.hub import available_models, load_model, model_card

MODEL = "crysxpp-mp-band-gap"
FAST = dict(max_epochs=30, lr=3e-3)


@pytest.fixture(scope="module")
def crystals(data_home):
    """Five real MP semiconductors and insulators; new targets: PBE gap + 1 eV.

    A constant shift mimics correcting PBE's underestimate of gaps with measured ones.
    """
    from skcrystal.datasets import load_mp_band_gap

    data = load_mp_band_gap(limit=200)
    chosen = data[data.gap_pbe > 0.5].iloc[:5]
    assert len(chosen) == 5
    return list(chosen.structure), chosen.gap_pbe.to_numpy() + 1.0


def is_encoder(name):
    return name == "mask" or name.startswith(("embedding.", "convs."))


def state(model):
    return {k: v.detach().clone() for k, v in model.module_.state_dict().items()}


def changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_bundled_band_gap_model():
    assert MODEL in available_models()
    card = model_card(MODEL)
    assert card["estimator"] == "CrysXPPRegressor"
    assert card["card"]["chosen"] == {"l1": 0.1}
    assert card["card"]["test_mae"] == pytest.approx(0.418, abs=5e-4)
    model = load_model(MODEL)  # a selective mask, and gaps that are never negative
    assert model.nonnegative == "softplus" and model.l1 == 0.1


def test_encoder_patterns_name_the_encoder():
    names = [name for name, _ in load_model(MODEL).module_.named_parameters()]
    frozen = [n for n in names if any(fnmatch(n, p) for p in ENCODER_PARAMETERS)]
    assert frozen == [n for n in names if is_encoder(n)]
    assert set(names) - set(frozen) == {
        "conv_to_fc.weight",
        "conv_to_fc.bias",
        "fc_out.weight",
        "fc_out.bias",
    }


def test_frozen_encoder_keeps_encoder_and_batch_norm_statistics(crystals):
    X, y = crystals
    model = load_model(MODEL)
    before = state(model)
    fine_tune(model, X, y, **FAST)
    moved = changed(before, state(model))
    # Encoder weights and the running means/variances of its batch norms stay exactly.
    assert not {k for k in moved if is_encoder(k)}
    assert moved == {"conv_to_fc.weight", "conv_to_fc.bias", "fc_out.weight", "fc_out.bias"}
    # Afterwards everything is trainable again and no hook is left on the module.
    assert all(p.requires_grad for p in model.module_.parameters())
    assert not model.module_._forward_pre_hooks


def test_unfrozen_fine_tuning_changes_encoder_and_batch_norm_statistics(crystals):
    X, y = crystals
    model = load_model(MODEL)
    before = state(model)
    fine_tune(model, X, y, **FAST, freeze_encoder=False)
    moved = changed(before, state(model))
    assert {"embedding.weight", "convs.0.fc_full.weight", "convs.2.bn2.weight"} <= moved
    assert {"convs.0.bn1.running_mean", "convs.2.bn2.running_var"} <= moved


def test_predictions_move_toward_the_new_targets_and_scaling_is_kept(crystals):
    X, y = crystals
    model = load_model(MODEL)
    fitted = model_card(MODEL)["fitted"]
    error_before = np.abs(model.predict(X) - y).mean()
    fine_tune(model, X, y, **FAST)
    error_after = np.abs(model.predict(X) - y).mean()
    assert error_before > 0.8  # the model predicts PBE gaps: about 1 eV too low here
    assert error_after < 0.5 * error_before
    # The scaling of the original training (the 7,295 MP gaps), not that of the 5 new ones.
    assert model.target_mean_.tolist() == fitted["target_mean"]
    assert model.target_scale_.tolist() == fitted["target_scale"]
    assert model.target_mean_[0] != pytest.approx(y.mean(), abs=0.1)


def test_parameters_are_restored_and_a_second_fine_tuning_freezes_again(crystals):
    X, y = crystals
    model = load_model(MODEL)
    params = {k: getattr(model, k) for k in ("max_epochs", "lr", "early_stopping", "callbacks")}
    fine_tune(model, X, y, max_epochs=3)
    assert {k: getattr(model, k) for k in params} == params
    assert len(model.history) == 3
    # The history now has epochs; skorch's Freezer (at=1) would no longer freeze here.
    before = state(model)
    fine_tune(model, X, y, max_epochs=3)
    assert not {k for k in changed(before, state(model)) if is_encoder(k)}
    assert len(model.history) == 6


def test_failed_fine_tuning_leaves_the_model_trainable(crystals, monkeypatch):
    X, y = crystals
    model = load_model(MODEL)
    saved = (model.max_epochs, model.early_stopping)  # the training parameters of the file

    def fail(*args, **kwargs):
        raise RuntimeError("failed in training")

    # Fails inside the training loop, after the encoder was frozen: skorch then skips
    # on_train_end, and fine_tune must unfreeze by itself.
    monkeypatch.setattr(model, "get_loss", fail)
    with pytest.raises(RuntimeError, match="failed in training"):
        fine_tune(model, X, y, max_epochs=2)
    assert all(p.requires_grad for p in model.module_.parameters())
    assert not model.module_._forward_pre_hooks
    assert (model.max_epochs, model.early_stopping) == saved


def test_freeze_encoder_callback_with_partial_fit(crystals):
    X, y = crystals
    model = load_model(MODEL)
    before = state(model)
    model.set_params(max_epochs=3, early_stopping=False, callbacks=[("f", FreezeEncoder())])
    model.partial_fit(X, y)
    assert not {k for k in changed(before, state(model)) if is_encoder(k)}
