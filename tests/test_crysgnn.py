"""CrysGNN: symmetry labels, the four losses, the pretrainer, distillation, the hub."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from skcrystal import (
    CGCNNRegressor,
    CrysAEPretrainer,
    CrysGNNPretrainer,
    CrystalGraphTransformer,
    DistilledRegressor,
)
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.estimators.distill import STUDENTS, register_student
from skcrystal.graphs.symmetry import crystal_system, space_group_number
from skcrystal.hub import load_model, save_model
from skcrystal.nn.crysgnn import CrysGNNLoss, supervised_nt_xent
from skcrystal.teachers import crysgnn_800k

N_TRAIN, N_TEST = 200, 100
TEACHER_FAST = dict(max_epochs=6, batch_size=32, early_stopping=False, random_state=0)
REG_FAST = dict(max_epochs=15, batch_size=32, early_stopping=False, random_state=0)


@pytest.fixture(scope="module")
def data(mp_subset):
    y = mp_subset.e_form.to_numpy()
    return mp_subset.structure.tolist(), y


@pytest.fixture(scope="module")
def graphs(data):
    return CrystalGraphTransformer(symmetry=True).transform(data[0][: N_TRAIN + N_TEST])


@pytest.fixture(scope="module")
def teacher(graphs):
    return CrysGNNPretrainer(**TEACHER_FAST).fit(graphs[:N_TRAIN])


# --- symmetry -------------------------------------------------------------------------------
def test_space_groups_of_known_crystals():
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    zno = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.2),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]],
    )
    assert [space_group_number(si), space_group_number(zno)] == [227, 186]
    assert crystal_system([227, 186, 2, 0]).tolist() == [6, 5, 0, -1]


def test_undetermined_symmetry_gives_zero_and_is_left_out_of_graph_losses(graphs, monkeypatch):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    def fail(self):
        raise ValueError("spglib found no symmetry")

    cell = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    monkeypatch.setattr(SpacegroupAnalyzer, "get_space_group_number", fail)
    assert space_group_number(cell) == 0
    built = CrystalGraphTransformer(symmetry=True, cache=False).transform([cell])
    assert built.symmetry and built.space_group.tolist() == [0]
    monkeypatch.undo()
    model = CrysGNNPretrainer(**TEACHER_FAST).fit(graphs[:40]).module_.eval()
    loss = CrysGNNLoss()
    inputs = CrystalGraphDataset(graphs[:8]).collate(list(range(8)))[0]
    unknown = torch.zeros(8, dtype=torch.int64)
    out = model(inputs)._replace(space_group=unknown)
    parts = loss.components(out)
    assert float(parts["space_group"].detach()) == 0.0
    assert float(parts["contrastive"].detach()) == 0.0
    assert float(parts["connectivity"].detach()) > 0 and float(parts["features"].detach()) > 0


def test_graph_cache_keeps_space_groups(graphs, data):
    again = CrystalGraphTransformer(symmetry=True).transform(data[0][:10])
    assert again.symmetry and np.array_equal(again.space_group, graphs.space_group[:10])
    assert (graphs.space_group > 0).all()
    plain = CrystalGraphTransformer().transform(data[0][:10])
    assert not plain.symmetry and (plain.space_group == 0).all()


# --- losses ---------------------------------------------------------------------------------
def test_nt_xent_matches_a_direct_computation():
    torch.manual_seed(0)
    x, labels = torch.randn(7, 4), torch.tensor([0, 1, 0, 2, 1, 0, 2])
    unit = torch.nn.functional.normalize(x, dim=1)
    sim = unit @ unit.T / 0.07
    terms = []
    for i in range(7):
        negatives = [k for k in range(7) if labels[k] != labels[i]]
        for j in range(7):
            if j != i and labels[j] == labels[i]:
                denominator = torch.exp(sim[i, j]) + torch.exp(sim[i, negatives]).sum()
                terms.append(-torch.log(torch.exp(sim[i, j]) / denominator))
    assert float(supervised_nt_xent(x, labels)) == pytest.approx(float(torch.stack(terms).mean()))
    assert float(supervised_nt_xent(x, torch.arange(7))) == 0.0  # no positive pair


def test_pretraining_lowers_every_loss_on_unseen_crystals(graphs, teacher):
    untrained = CrysGNNPretrainer(**{**TEACHER_FAST, "max_epochs": 0}).fit(graphs[:N_TRAIN])
    before = untrained.loss_components(graphs[N_TRAIN:])
    after = teacher.loss_components(graphs[N_TRAIN:])
    assert set(after) == {"connectivity", "features", "contrastive", "space_group"}
    for name in ("connectivity", "features", "space_group"):
        assert after[name] < before[name], name
    assert teacher.symmetry_coverage_ == 1.0


def test_pretrainer_refuses_graphs_without_symmetry(data):
    plain = CrystalGraphTransformer().transform(data[0][:20])
    with pytest.raises(ValueError, match="symmetry=True"):
        CrysGNNPretrainer(**TEACHER_FAST).fit(plain)


def test_embeddings_are_normalised_and_the_teacher_round_trips_the_hub(graphs, teacher, tmp_path):
    nodes = teacher.node_embeddings(graphs[:5])
    assert nodes.shape == (int(graphs.n_atoms[:5].sum()), 64)
    assert np.allclose(np.linalg.norm(nodes, axis=1), 1.0, atol=1e-5)
    assert teacher.transform(graphs[:5]).shape == (5, 64)
    path = save_model(teacher, tmp_path / "teacher.safetensors")
    again = load_model(path)
    assert isinstance(again, CrysGNNPretrainer)
    assert np.allclose(again.node_embeddings(graphs[:5]), nodes, atol=1e-6)


# --- distillation ---------------------------------------------------------------------------
def test_distillation_pulls_student_embeddings_toward_the_teacher(graphs, data, teacher):
    y = data[1][:N_TRAIN]
    final = {}
    for alpha in (0.0, 0.9):
        reg = DistilledRegressor(teacher=teacher, alpha=alpha, **REG_FAST).fit(graphs[:N_TRAIN], y)
        final[alpha] = reg.history_[-1, "embedding_loss"]
        if alpha:
            losses = reg.history_[:, "embedding_loss"]
            assert losses[-1] < 0.98 * losses[0]
    # The embedding MSE is per element of unit vectors (about 0.007 here), so the pull is
    # slow (0.00673 -> 0.00646 in 15 epochs at alpha=0.9, torch 2.13); without
    # distillation (alpha=0) nothing pulls and the loss drifts up (0.0068 -> 0.0077).
    assert final[0.9] < 0.95 * final[0.0]


def test_distilled_model_beats_the_mean_predictor(graphs, data, teacher):
    y = data[1]
    reg = DistilledRegressor(teacher=teacher, **REG_FAST).fit(graphs[:N_TRAIN], y[:N_TRAIN])
    test = slice(N_TRAIN, N_TRAIN + N_TEST)
    mae = np.abs(reg.predict(graphs[test]) - y[test]).mean()
    baseline = np.abs(y[test] - y[:N_TRAIN].mean()).mean()
    assert mae < 0.75 * baseline  # 200 crystals, 15 epochs


def test_the_teacher_stays_frozen_and_in_eval_mode(graphs, data, teacher):
    state = {k: v.clone() for k, v in teacher.module_.state_dict().items()}
    DistilledRegressor(teacher=teacher, **{**REG_FAST, "max_epochs": 2}).fit(
        graphs[:N_TRAIN], data[1][:N_TRAIN]
    )
    after = teacher.module_.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # BN statistics included
    assert not teacher.module_.training


def test_students_of_other_widths_and_crysxpp(graphs, data, teacher):
    y = data[1][:N_TRAIN]
    narrow = DistilledRegressor(
        teacher=teacher, student_params={"atom_fea_len": 32}, **{**REG_FAST, "max_epochs": 1}
    ).fit(graphs[:N_TRAIN], y)
    assert narrow.module_.projection.weight.shape == (64, 32)
    encoder = CrysAEPretrainer(max_epochs=1, early_stopping=False).fit(graphs[:N_TRAIN])
    xpp = DistilledRegressor(
        teacher=teacher,
        student="crysxpp",
        student_params={"encoder": encoder, "l1": 0.5},
        **{**REG_FAST, "max_epochs": 1},
    ).fit(graphs[:N_TRAIN], y)
    assert xpp.student_.feature_importances_.shape == (92,)
    assert "convs.0.fc_full.weight" in xpp.student_.transferred_params_
    twin = clone(xpp)
    assert twin.teacher is teacher and twin.student_params["encoder"] is encoder


def test_a_registered_student_plugs_in(graphs, data, teacher):
    class WideHead(CGCNNRegressor):
        def __init__(self, **kwargs):
            super().__init__(h_fea_len=16, **kwargs)

    register_student("tiny-head", WideHead)
    try:
        reg = DistilledRegressor(
            teacher=teacher, student="tiny-head", **{**REG_FAST, "max_epochs": 1}
        )
        reg.fit(graphs[:N_TRAIN], data[1][:N_TRAIN])
        assert reg.module_.student.conv_to_fc.out_features == 16
    finally:
        STUDENTS.pop("tiny-head")
    with pytest.raises(ValueError, match="unknown student 'nope'"):
        DistilledRegressor(teacher=teacher, student="nope").fit(graphs[:20], data[1][:20])


def test_pipeline_pickle_and_hub(data, teacher, tmp_path):
    X, y = data[0][:60], data[1][:60]
    pipe = Pipeline(
        [
            ("graph", CrystalGraphTransformer()),
            ("reg", DistilledRegressor(teacher=teacher, **{**REG_FAST, "max_epochs": 2})),
        ]
    ).fit(X, y)
    again = pickle.loads(pickle.dumps(pipe))
    assert np.allclose(again.predict(X[:5]), pipe.predict(X[:5]))
    reg = pipe.named_steps["reg"]
    loaded = load_model(save_model(reg, tmp_path / "distilled.safetensors"))
    graphs = CrystalGraphTransformer().transform(X[:5])
    assert np.allclose(loaded.predict(graphs), reg.predict(graphs), atol=1e-5)


def test_grid_search_over_alpha_shares_one_teacher(data, teacher):
    X, y = data[0][:60], data[1][:60]
    pipe = Pipeline(
        [
            ("graph", CrystalGraphTransformer()),
            ("reg", DistilledRegressor(teacher=teacher, **{**REG_FAST, "max_epochs": 2})),
        ]
    )
    search = GridSearchCV(
        pipe, {"reg__alpha": [0.0, 0.5]}, cv=KFold(2), scoring="neg_mean_absolute_error"
    ).fit(X, y)
    assert search.best_params_["reg__alpha"] in (0.0, 0.5)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_.named_steps["reg"]
    assert best.teacher is teacher and best.teacher_ is not None
    assert search.predict(X[:3]).shape == (3,)


def test_default_teacher_is_bundled_and_mismatched_graphs_are_refused(data):
    y = data[1][:30]
    reg = DistilledRegressor(**{**REG_FAST, "max_epochs": 1}).fit(data[0][:30], y)
    assert isinstance(reg.teacher_.pretrainer, CrysGNNPretrainer) and reg.teacher_width_ == 64
    small = CrystalGraphTransformer(cutoff=6.0)
    with pytest.raises(ValueError, match="the teacher does not fit these graphs"):
        DistilledRegressor(graph_builder=small, **{**REG_FAST, "max_epochs": 1}).fit(
            data[0][:30], y
        )


def test_a_clone_of_a_regressor_that_loaded_its_teacher_loads_a_fitted_one(data):
    """The loaded teacher is a cache, not a parameter: clones (cross-validation,
    ensembles) must not carry an unfitted copy of it."""
    reg = DistilledRegressor(**{**REG_FAST, "max_epochs": 1})
    builder = reg.default_graph_builder()  # loads the bundled teacher
    assert not any("teacher_cache" in name for name in reg.get_params())
    twin = clone(reg)
    assert repr(twin.default_graph_builder()) == repr(builder)
    assert twin.fit(data[0][:20], data[1][:20]).teacher_width_ == 64


def test_students_build_graphs_with_the_teachers_atom_features(data):
    """A teacher trained on the authors' table (as the 800K one) gets graphs built with it."""
    structures, y = data[0][:40], data[1][:40]
    builder = CrystalGraphTransformer(atom_features="cgcnn-authors", symmetry=True)
    teacher = CrysGNNPretrainer(**{**TEACHER_FAST, "max_epochs": 1}).fit(
        builder.transform(structures)
    )
    reg = DistilledRegressor(teacher=teacher, **{**REG_FAST, "max_epochs": 1}).fit(structures, y)
    assert reg.graph_settings_ == (8.0, 12, "cgcnn-authors", "nearest")
    assert reg.predict(structures[:3]).shape == (3,)


def test_crysgnn_800k_offline_fails_at_once_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("SKCRYSTAL_CACHE", str(tmp_path))
    monkeypatch.setattr(
        "skcrystal.estimators.crysgnn.CRYSGNN_800K_URL", "http://127.0.0.1:9/crysgnn.pth.tar"
    )
    with pytest.raises(
        OSError, match=r"Download http://127\.0\.0\.1:9/crysgnn\.pth\.tar and save it as"
    ):
        crysgnn_800k()
    assert not (tmp_path / "crysgnn" / "crysgnn_state_checkpoint_v1.pth.tar").exists()


def test_crysgnn_800k_converts_a_checkpoint_in_the_authors_layout(tmp_path, monkeypatch, teacher):
    """A file with the published layout (here our own weights) is checked and converted."""
    monkeypatch.setenv("SKCRYSTAL_CACHE", str(tmp_path))
    folder = tmp_path / "crysgnn"
    folder.mkdir()
    state = {k: v for k, v in teacher.module_.state_dict().items() if k != "expansion.centres"}
    torch.save({"state_dict": state, "epoch": 3}, folder / "crysgnn_state_checkpoint_v1.pth.tar")
    converted = crysgnn_800k()
    assert isinstance(converted, CrysGNNPretrainer) and converted.n_conv == 5
    assert (folder / "crysgnn-800k.safetensors").is_file()
    recorded = (folder / "crysgnn_state_checkpoint_v1.sha256").read_text().strip()
    assert len(recorded) == 64
    # A file changed after its hash was recorded is refused.
    with open(folder / "crysgnn_state_checkpoint_v1.pth.tar", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(OSError, match="expected sha256"):
        crysgnn_800k()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pretrain_and_distil(graphs, data):
    teacher = CrysGNNPretrainer(device="cuda", **{**TEACHER_FAST, "max_epochs": 1})
    teacher.fit(graphs[:N_TRAIN])
    assert next(teacher.module_.parameters()).is_cuda
    reg = DistilledRegressor(teacher=teacher, device="cuda", **{**REG_FAST, "max_epochs": 2})
    reg.fit(graphs[:N_TRAIN], data[1][:N_TRAIN])
    assert next(reg.module_.parameters()).is_cuda
    assert np.isfinite(reg.predict(graphs[N_TRAIN:])).all()
