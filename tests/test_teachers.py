"""Distillation teachers (issue 12): the protocol, CHGNet, and probes against controls."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from skcrystal import CrystalGraphTransformer, DistilledRegressor
from skcrystal.datasets import load_mp_band_gap
from skcrystal.teachers import (
    CHGNetTeacher,
    CrysGNNTeacher,
    Teacher,
    crystal_embeddings,
    get_teacher,
    probe_teacher,
)

FAST = dict(max_epochs=2, early_stopping=False, random_state=0, batch_size=32)


@pytest.fixture(scope="module")
def gaps(data_home):
    """300 real MP crystals with their PBE band gaps (a fixed seed-0 sample)."""
    df = load_mp_band_gap(sample=300, random_state=0)
    return df.structure.tolist(), df.gap_pbe.to_numpy()


@pytest.fixture(scope="module")
def chgnet():
    return get_teacher("chgnet")


class ZTeacher:
    """A teacher written by a user: each atom's vector is a one-hot of its element."""

    name = "one-hot Z"
    graph_builder = None

    def node_embeddings(self, crystals, graphs):
        z = graphs.species_z[graphs.species_ptr[:-1]].astype(int)  # first species per site
        return np.eye(100, dtype=np.float32)[z]

    def untrained(self, random_state=0):
        return self


class LongZTeacher(ZTeacher):
    """The same directions, five times as long."""

    def node_embeddings(self, crystals, graphs):
        return 5 * super().node_embeddings(crystals, graphs)


class ShiftedZTeacher(ZTeacher):
    """The same one-hot vectors, rolled by one column: other inputs for a features model."""

    def node_embeddings(self, crystals, graphs):
        return np.roll(super().node_embeddings(crystals, graphs), 1, axis=1)


def test_chgnet_gives_its_own_atom_vectors_in_site_order(gaps, chgnet):
    structures = gaps[0][:12]
    graphs = CrystalGraphTransformer().transform(structures)
    nodes = chgnet.node_embeddings(structures, graphs)
    assert nodes.shape == (graphs.node_ptr[-1], 64) and nodes.dtype == np.float32
    # CHGNet's vectors as CHGNet itself returns them, not rescaled
    own = chgnet._model().predict_structure(structures[2], return_atom_feas=True)["atom_fea"]
    np.testing.assert_allclose(nodes[graphs.node_ptr[2] : graphs.node_ptr[3]], own, atol=1e-4)
    assert np.linalg.norm(nodes, axis=1).min() > 5
    # the atoms of crystal 3 alone, and in reversed site order, get the same vectors
    one = structures[3]
    reversed_sites = Structure.from_sites(list(one)[::-1])
    rows = nodes[graphs.node_ptr[3] : graphs.node_ptr[4]]
    alone = chgnet.node_embeddings([reversed_sites], CrystalGraphTransformer().transform([one]))
    np.testing.assert_allclose(alone[::-1], rows, atol=1e-4)
    assert isinstance(chgnet, Teacher) and chgnet.graph_builder is None


def test_chgnet_refuses_what_it_cannot_embed(chgnet):
    alloy = Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    graphs = CrystalGraphTransformer().transform([nacl, alloy])
    with pytest.raises(ValueError, match=r"X\[1\] \(Cu0.5Au0.5\): CHGNet takes ordered"):
        chgnet.node_embeddings([nacl, alloy], graphs)
    lonely = Structure(Lattice.cubic(14.0), ["Na"], [[0, 0, 0]])  # 14 Å from its images
    with pytest.raises(ValueError, match=r"X\[0\] \(Na\): CHGNet refused it: .*isolated"):
        chgnet.node_embeddings([lonely], CrystalGraphTransformer(cutoff=15).transform([lonely]))
    with pytest.raises(ValueError, match="embeds the structures themselves"):
        DistilledRegressor(teacher="chgnet", **FAST).fit(graphs[:1], [1.0])


def test_distilled_from_chgnet_pulls_the_student_toward_it(gaps):
    X, y = gaps[0][:96], gaps[1][:96]
    params = {**FAST, "max_epochs": 10}
    reg = DistilledRegressor(teacher="chgnet", alpha=0.9, **params).fit(X, y)
    unpulled = DistilledRegressor(teacher="chgnet", alpha=0.0, **params).fit(X, y)
    assert reg.teacher_width_ == 64 and reg.teacher_.name == "chgnet"
    losses = reg.history_[:, "embedding_loss"]
    free = unpulled.history_[:, "embedding_loss"]
    # the per-element MSE of unit vectors moves little; without the pull it does not fall
    assert losses[-1] < 0.98 * losses[0] and losses[-1] < 0.97 * free[-1], (losses, free)
    assert not hasattr(reg, "_teacher_crystals_")  # the crystals are not kept
    assert reg.predict(gaps[0][200:203]).shape == (3,)


def test_any_object_that_follows_the_protocol_teaches(gaps):
    X, y = gaps[0][:64], gaps[1][:64]
    reg = DistilledRegressor(teacher=ZTeacher(), **FAST).fit(X, y)
    assert reg.teacher_width_ == 100 and reg.module_.projection.weight.shape == (100, 64)

    class Broken(ZTeacher):
        def node_embeddings(self, crystals, graphs):
            return super().node_embeddings(crystals, graphs)[:-1]

    with pytest.raises(ValueError, match=r"teacher 'one-hot Z' gave node embeddings of shape"):
        DistilledRegressor(teacher=Broken(), **FAST).fit(X, y)
    failed = DistilledRegressor(teacher=ZTeacher(), **FAST)
    with pytest.raises(ValueError, match="not finite"):
        failed.fit(X, np.full(len(X), np.nan))
    assert not hasattr(failed, "_teacher_crystals_")  # not kept after a failed fit either
    with pytest.raises(ValueError, match="or one of the teachers chgnet"):
        get_teacher("no-such-teacher")


def test_untrained_twin_is_seeded_and_differs_from_the_teacher(gaps):
    teacher = get_teacher("crysgnn-mp")
    assert isinstance(teacher, CrysGNNTeacher)
    graphs = teacher.graph_builder.transform(gaps[0][:10])
    trained = crystal_embeddings(teacher, None, graphs)
    twin, again = teacher.untrained(3), teacher.untrained(3)
    np.testing.assert_array_equal(
        crystal_embeddings(twin, None, graphs), crystal_embeddings(again, None, graphs)
    )
    assert not np.allclose(crystal_embeddings(twin, None, graphs), trained, atol=1e-3)
    assert not np.allclose(
        crystal_embeddings(teacher.untrained(4), None, graphs),
        crystal_embeddings(twin, None, graphs),
        atol=1e-3,
    )


def test_probe_tells_a_knowing_teacher_from_its_untrained_twin(gaps, chgnet):
    X, y = gaps
    table = probe_teacher(chgnet, X, y, cv=3)
    assert list(table.columns) == ["embedding", "probe", "mae", "mae_std", "teacher"]
    mae = table.set_index(["embedding", "probe"])["mae"]
    assert len(mae) == 5 and (table.teacher == "chgnet").all()
    # the control row is the cross-validated mean predictor, computed here by hand
    from sklearn.model_selection import KFold

    by_hand = [
        np.abs(y[test] - y[train].mean()).mean()
        for train, test in KFold(3, shuffle=True, random_state=0).split(y)
    ]
    assert mae["none", "mean of the targets"] == pytest.approx(np.mean(by_hand))
    # CHGNet's embeddings know band gaps; a network of its shape with random weights less
    assert mae["teacher", "ridge"] < 0.8 * mae["untrained twin", "ridge"], mae
    assert mae["teacher", "ridge"] < 0.8 * mae["none", "mean of the targets"], mae


def test_probe_takes_graphs_for_a_graph_teacher_and_checks_y(gaps):
    teacher = get_teacher("crysgnn-mp")
    graphs = teacher.graph_builder.transform(gaps[0][:60])
    table = probe_teacher(teacher, graphs, gaps[1][:60], cv=2)
    assert isinstance(table, pd.DataFrame) and np.isfinite(table.mae).all()
    with pytest.raises(ValueError, match="X has 60 crystals and y 59 values"):
        probe_teacher(teacher, graphs, gaps[1][:59], cv=2)
    with pytest.raises(ValueError, match="one property per crystal"):
        probe_teacher(teacher, graphs, np.ones((60, 2)), cv=2)


def test_chgnet_teacher_pickles_its_weights_by_name(gaps, chgnet):
    import pickle

    structures = gaps[0][:3]
    graphs = CrystalGraphTransformer().transform(structures)
    nodes = chgnet.node_embeddings(structures, graphs)
    copy = pickle.loads(pickle.dumps(chgnet))
    assert copy._network is None and len(pickle.dumps(chgnet)) < 10_000
    np.testing.assert_allclose(copy.node_embeddings(structures, graphs), nodes, atol=1e-6)
    twin = chgnet.untrained(0)
    twin_copy = pickle.loads(pickle.dumps(twin))  # random weights travel with it
    np.testing.assert_allclose(
        twin_copy.node_embeddings(structures, graphs),
        twin.node_embeddings(structures, graphs),
        atol=1e-6,
    )
    assert isinstance(CHGNetTeacher(batch_size=8), Teacher)


def test_features_transfer_feeds_the_teachers_vectors_into_the_student(gaps):
    X, y = gaps[0][:64], gaps[1][:64]
    reg = DistilledRegressor(teacher=ZTeacher(), transfer="features", alpha=0.0, **FAST)
    reg.fit(X, y, validation_data=(gaps[0][64:80], gaps[1][64:80]))
    assert reg.module_.student.embedding.in_features == 92 + 100
    graphs = reg.graph_builder_.transform(X[:5])
    dataset = reg._dataset(graphs, None, X[:5])
    batch, _ = dataset.collate([0, 1, 2])
    z = graphs.species_z[graphs.species_ptr[:-1]].astype(int)
    atoms = slice(0, int(graphs.node_ptr[3]))
    np.testing.assert_array_equal(batch.atom_features[:, 92:].numpy(), np.eye(100)[z[atoms]])
    np.testing.assert_array_equal(
        batch.atom_features[:, :92].numpy(), graphs.batch([0, 1, 2])["atom_features"]
    )
    # the teacher runs again in predict: other vectors give other predictions
    before = reg.predict(X[:5])
    np.testing.assert_allclose(reg.predict(graphs), before, rtol=1e-5)  # graphs do for Z

    reg._teacher_cache_ = (reg.teacher, ShiftedZTeacher())
    assert not np.allclose(reg.predict(X[:5]), before, rtol=1e-3)


@pytest.mark.parametrize("student", ["crysxpp", "alignn", "gatgnn", "megnet"])
def test_features_transfer_works_with_every_student(gaps, student):
    """The teacher's vectors widen any student's input and its predictions follow them."""
    X, y = gaps[0][:48], gaps[1][:48]
    reg = DistilledRegressor(
        teacher=ZTeacher(), student=student, transfer="features", alpha=0.0, **FAST
    ).fit(X, y)
    assert reg.student_.n_atom_features_ == reg.n_atom_features_ + 100
    if student == "crysxpp":  # the encoder's embedding is too narrow now; its convolutions fit
        transferred = reg.student_.transferred_params_
        assert "convs.0.fc_full.weight" in transferred and "embedding.weight" not in transferred
    before = reg.predict(gaps[0][200:204])

    reg._teacher_cache_ = (reg.teacher, ShiftedZTeacher())
    assert np.abs(reg.predict(gaps[0][200:204]) - before).max() > 1e-6


def test_features_transfer_saves_its_teacher_by_name(gaps, tmp_path):
    from skcrystal.hub import load_model, save_model

    X, y = gaps[0][:48], gaps[1][:48]
    reg = DistilledRegressor(teacher="chgnet", transfer="features", alpha=0.0, **FAST).fit(X, y)
    path = save_model(reg, tmp_path / "features.safetensors")
    loaded = load_model(path)
    assert loaded.transfer == "features" and loaded.teacher == "chgnet"
    np.testing.assert_allclose(
        loaded.predict(gaps[0][200:204]), reg.predict(gaps[0][200:204]), rtol=1e-5
    )
    with pytest.raises(ValueError, match="embeds the structures themselves"):
        reg.predict(CrystalGraphTransformer().transform(gaps[0][200:204]))
    # a file from before CHGNet's vectors were given unnormalised is refused, not misread
    from safetensors.torch import load_file, save_file

    from skcrystal.model_files import read_description

    description = read_description(path)
    del description["fitted"]["teacher_features"]
    old = tmp_path / "unit-vectors.safetensors"
    save_file(load_file(str(path)), str(old), metadata={"skcrystal": json.dumps(description)})
    with pytest.raises(ValueError, match=r"gave them L2-normalised.*fit it again"):
        load_model(old)
    by_object = DistilledRegressor(teacher=ZTeacher(), transfer="features", **FAST).fit(X, y)
    with pytest.raises(TypeError, match="stores a teacher by name only"):
        save_model(by_object, tmp_path / "object.safetensors")
    with pytest.raises(ValueError, match="transfer must be one of 'nodes', 'nodes\\+crystal'"):
        DistilledRegressor(teacher=ZTeacher(), transfer="inputs", **FAST).fit(X, y)


def test_crystal_term_is_the_mse_of_normalised_mean_vectors():
    import torch

    from skcrystal.nn.batch import CrystalBatch

    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    index, n_atoms = torch.tensor([0, 0, 1]), torch.tensor([2, 1])
    batch = CrystalBatch(
        torch.zeros(3, 1), *[torch.zeros(0, dtype=torch.long)] * 2, torch.zeros(0), index, n_atoms
    )
    # crystal 0: student mean (0.5, 0.5) -> (0.7071, 0.7071), teacher (1, 0);
    # crystal 1: student (0.6, 0.8), teacher (0, 1)
    by_hand = np.mean([((0.7071068 - 1) ** 2 + 0.7071068**2) / 2, (0.6**2 + 0.2**2) / 2])
    loss = DistilledRegressor._crystal_loss(student, teacher, batch)
    assert float(loss) == pytest.approx(by_hand, rel=1e-5)
    weighted = dataclasses.replace(batch, sample_weight=torch.tensor([2.0, 0.0]))
    assert float(DistilledRegressor._crystal_loss(student, teacher, weighted)) == pytest.approx(
        ((0.7071068 - 1) ** 2 + 0.7071068**2) / 2, rel=1e-5
    )


def test_embedding_loss_reads_the_teachers_directions_only(gaps):
    """Unit vectors and five times longer ones teach the same: the loss normalises them."""
    X, y = gaps[0][:64], gaps[1][:64]
    unit, long = (
        DistilledRegressor(teacher=teacher, alpha=0.5, **FAST).fit(X, y)
        for teacher in (ZTeacher(), LongZTeacher())
    )
    np.testing.assert_allclose(
        long.history_[:, "embedding_loss"], unit.history_[:, "embedding_loss"], rtol=1e-5
    )
    assert max(unit.history_[:, "embedding_loss"]) < 2 / 100  # unit vectors, 100 wide


def test_nodes_plus_crystal_pulls_the_crystal_vectors(gaps):
    X, y = gaps[0][:96], gaps[1][:96]
    params = {**FAST, "max_epochs": 8}
    pulled = DistilledRegressor(teacher=ZTeacher(), transfer="nodes+crystal", alpha=0.9, **params)
    nodes = DistilledRegressor(teacher=ZTeacher(), transfer="nodes", alpha=0.9, **params)
    pulled.fit(X, y), nodes.fit(X, y)
    # the recorded embedding loss holds the crystal term on top of the node term
    assert pulled.history_[0, "embedding_loss"] > nodes.history_[0, "embedding_loss"]
    assert pulled.history_[-1, "embedding_loss"] < pulled.history_[0, "embedding_loss"]
