"""Attribute masking, the Pretrain-GNN baseline (issue 11): which atoms are hidden, that
the network cannot see them, that pretraining learns, and that its encoder serves as a
CrysGNN's (saved, fine-tuned, distilled from)."""

import numpy as np
import pytest
import torch

from skcrystal import (
    CrysGNNPretrainer,
    CrysGNNRegressor,
    CrystalGraphTransformer,
    DistilledRegressor,
)
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.hub import load_model, save_model
from skcrystal.nn.masking import AtomMaskingCrysGNN, choose_masked_atoms

FAST = dict(max_epochs=2, early_stopping=False, random_state=0)


@pytest.fixture(scope="module")
def mp(mp_subset):
    structures = mp_subset.structure.tolist()[:160]
    return structures, CrystalGraphTransformer().transform(structures), mp_subset.e_form[:160]


def test_int_of_fifteen_percent_plus_one_atoms_are_hidden_per_crystal():
    n_atoms = torch.tensor([1, 6, 7, 20, 40])
    crystal = torch.repeat_interleave(torch.arange(5), n_atoms)
    draws = [choose_masked_atoms(crystal, n_atoms, 0.15) for _ in range(20)]
    for masked in draws:
        counts = torch.zeros(5, dtype=torch.long).index_add_(0, crystal, masked.long())
        assert counts.tolist() == [1, 1, 2, 4, 7]  # int(0.15 n + 1)
    assert len({tuple(m.tolist()) for m in draws}) > 1  # a fresh choice each time
    fixed = [
        choose_masked_atoms(crystal, n_atoms, 0.15, torch.Generator().manual_seed(0))
        for _ in range(2)
    ]
    assert torch.equal(*fixed)


def test_the_network_does_not_see_the_features_it_must_predict(mp):
    _, graphs, _ = mp
    torch.manual_seed(0)
    model = AtomMaskingCrysGNN(n_atom_features=92, cutoff=8.0).eval()  # eval: a fixed mask
    inputs, _ = CrystalGraphDataset(graphs[:4], None).collate([0, 1, 2, 3])
    out = model(inputs)
    generator = torch.Generator().manual_seed(0)
    masked = choose_masked_atoms(inputs.crystal_index, inputs.n_atoms, 0.15, generator)
    changed = inputs.atom_features.clone()
    changed[masked] = torch.rand(int(masked.sum()), 92)
    again = model(type(inputs)(**{**inputs.__dict__, "atom_features": changed}))
    torch.testing.assert_close(again.feature_logits, out.feature_logits)  # same predictions
    assert not torch.equal(again.feature_target, out.feature_target)  # other targets


def test_masking_pretraining_learns_and_its_encoder_serves_as_a_crysgnns(mp, tmp_path):
    _, graphs, y = mp
    masking = dict(
        pretraining="attribute_masking", batch_size=16, early_stopping=False, random_state=0
    )
    untrained = CrysGNNPretrainer(**masking, max_epochs=0).fit(graphs[:120])  # the start
    start = untrained.loss_components(graphs[120:])["masked_features"]
    pretrainer = CrysGNNPretrainer(**masking, max_epochs=60).fit(graphs[:120])
    assert pretrainer.default_graph_builder().symmetry is False  # no space groups needed
    end = pretrainer.loss_components(graphs[120:])
    assert list(end) == ["masked_features"]
    # the bar: each feature column predicted by its frequency among the training atoms,
    # what a network that ignores the masked atom's surroundings can do at best
    seen = torch.as_tensor(graphs[:120].node_features(np.arange(graphs[:120].n_atoms.sum())))
    held_out = torch.as_tensor(graphs[120:].node_features(np.arange(graphs[120:].n_atoms.sum())))
    frequency = seen.mean(0).clamp(1e-4, 1 - 1e-4).expand_as(held_out)
    bar = float(torch.nn.functional.binary_cross_entropy(frequency, held_out))
    # measured: 0.696 at the start, 0.222 after 60 epochs, bar 0.267
    assert end["masked_features"] < bar < start, (start, end, bar)  # crystals not trained on
    loaded = load_model(save_model(pretrainer, tmp_path / "masking.safetensors"))
    assert (
        isinstance(loaded.module_, AtomMaskingCrysGNN) and loaded.pretraining == "attribute_masking"
    )
    np.testing.assert_allclose(
        loaded.node_embeddings(graphs[:3]), pretrainer.node_embeddings(graphs[:3]), atol=1e-6
    )
    finetuned = CrysGNNRegressor(encoder=pretrainer, **FAST).fit(graphs[:60], y[:60])
    assert "convs.4.fc_full.weight" in finetuned.transferred_params_
    distilled = DistilledRegressor(teacher=pretrainer, **FAST).fit(graphs[:60], y[:60])
    assert distilled.predict(graphs[60:63]).shape == (3,)


def test_bad_pretraining_settings_are_refused(mp):
    _, graphs, _ = mp
    with pytest.raises(ValueError, match="pretraining must be one of"):
        CrysGNNPretrainer(pretraining="context_prediction", **FAST).fit(graphs[:20])
    with pytest.raises(ValueError, match=r"mask_rate must be in \(0, 1\)"):
        CrysGNNPretrainer(pretraining="attribute_masking", mask_rate=1.5, **FAST).fit(graphs[:20])
