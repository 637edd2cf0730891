"""CrysGNNRegressor (issue 11): the pretrained CrysGNN fine-tuned end to end."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch.nn import functional as F

from skcrystal import CrysGNNRegressor, CrystalGraphTransformer
from skcrystal.estimators.crysgnn import load_crysgnn
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.hub import load_model, save_model

FAST = dict(max_epochs=2, early_stopping=False, random_state=0)


@pytest.fixture(scope="module")
def mp(mp_subset):
    structures = mp_subset.structure.tolist()[:60]
    return structures, CrystalGraphTransformer().transform(structures), mp_subset.e_form[:60]


def test_the_network_starts_as_the_pretrained_encoder_and_then_trains_every_weight(mp):
    _, graphs, y = mp
    teacher = load_crysgnn("crysgnn-mp")
    reg = CrysGNNRegressor(**{**FAST, "max_epochs": 0}, lr=1e-2).fit(graphs[:40], y[:40])
    inputs, _ = CrystalGraphDataset(graphs[:3], None).collate([0, 1, 2])
    reg.module_.eval()
    with torch.no_grad():
        start = F.normalize(reg.module_.encode(inputs), dim=1).numpy()
    np.testing.assert_allclose(start, teacher.node_embeddings(graphs[:3]), atol=1e-5)
    assert reg.graph_settings_ == (*teacher.graph_settings_[:3], "nearest")
    before = {k: v.clone() for k, v in reg.module_.state_dict().items()}
    reg.set_params(max_epochs=2).partial_fit(graphs[:40], y[:40])
    moved = [k for k, v in reg.module_.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("convs.0.") for k in moved) and "embedding.weight" in moved
    # the teacher itself is untouched
    np.testing.assert_allclose(teacher.node_embeddings(graphs[:3]), start, atol=1e-5)


def test_encoder_choices_and_refusals(mp):
    _, graphs, y = mp
    plain = CrysGNNRegressor(encoder=None, **FAST).fit(graphs[:20], y[:20])
    assert plain.transferred_params_ == () and len(plain.module_.convs) == 5
    with pytest.raises(ValueError, match="has 5 convolutions but the regressor has n_conv=3"):
        CrysGNNRegressor(n_conv=3, **FAST).fit(graphs[:20], y[:20])
    with pytest.raises(ValueError, match="encoder 'no-such-model' is not a bundled model"):
        CrysGNNRegressor(encoder="no-such-model", **FAST).fit(graphs[:20], y[:20])


def test_clones_share_the_encoder_and_saved_models_need_none(mp, tmp_path):
    structures, graphs, y = mp
    teacher = load_crysgnn("crysgnn-mp")
    reg = CrysGNNRegressor(encoder=teacher, **FAST)
    assert clone(reg).encoder is teacher
    reg.fit(structures[:30], y[:30])  # structures: the encoder's graph settings
    predicted = reg.predict(graphs[30:40])
    np.testing.assert_allclose(pickle.loads(pickle.dumps(reg)).predict(graphs[30:40]), predicted)
    loaded = load_model(save_model(reg, tmp_path / "crysgnn-regressor.safetensors"))
    assert isinstance(loaded, CrysGNNRegressor) and loaded.encoder is None
    np.testing.assert_allclose(loaded.predict(graphs[30:40]), predicted, atol=1e-5)
