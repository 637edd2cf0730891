"""The Matbench v0.1 runner on a small local data folder in matminer's format."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from monty.json import MontyEncoder
from sklearn.model_selection import GridSearchCV

from skcrystal import CGCNNRegressor
from skcrystal.benchmarks import MatbenchTask, run_matbench

N = 40
FAST = dict(max_epochs=2, early_stopping=False, random_state=0, batch_size=16)


@pytest.fixture(scope="module")
def matbench_home(tmp_path_factory, mp_subset):
    """matbench_mp_e_form.json.gz as matminer stores it, and a two-fold split file."""
    home = tmp_path_factory.mktemp("matbench")
    rows = mp_subset.iloc[:N]
    stored = {
        "index": list(range(N)),
        "columns": ["structure", "e_form"],
        "data": [[s, float(y)] for s, y in zip(rows.structure, rows.e_form, strict=True)],
    }
    with gzip.open(home / "matbench_mp_e_form.json.gz", "wt") as f:
        json.dump(stored, f, cls=MontyEncoder)
    ids = [f"mb-mp-e-form-{i + 1:02d}" for i in range(N)]
    splits = {
        f"fold_{k}": {"train": ids[: N // 2] if k else ids[N // 2 :],
                      "test": ids[N // 2 :] if k else ids[: N // 2]}
        for k in range(2)
    }  # fmt: skip
    validation = home / "validation.json"
    validation.write_text(json.dumps({"splits": {"matbench_mp_e_form": splits}}))
    return home, validation, rows


def test_runner_records_every_fold_and_writes_results(matbench_home, tmp_path):
    home, validation, rows = matbench_home
    out = tmp_path / "results.json.gz"
    scores = run_matbench(
        CGCNNRegressor(**FAST), ["matbench_mp_e_form"], data_home=home,
        validation=validation, folds=[0, 1], results_file=out,
    )  # fmt: skip
    assert scores.fold.tolist() == [0, 1] and (scores.mae > 0).all()
    with gzip.open(out, "rt") as f:
        results = json.load(f)["tasks"]["matbench_mp_e_form"]["results"]
    fold0 = results["fold_0"]
    assert sorted(fold0["data"]) == [f"mb-mp-e-form-{i + 1:02d}" for i in range(N // 2)]
    truth = rows.e_form.to_numpy()[: N // 2]
    predicted = np.array([fold0["data"][f"mb-mp-e-form-{i + 1:02d}"] for i in range(N // 2)])
    assert fold0["scores"]["mae"] == pytest.approx(np.abs(predicted - truth).mean())
    # fold 0 trained on the second half only: its model never saw the first half
    direct = CGCNNRegressor(**FAST).fit(rows.structure[N // 2 :].tolist(), rows.e_form[N // 2 :])
    assert np.allclose(direct.predict(rows.structure[: N // 2].tolist()), predicted, atol=1e-5)


def test_tuning_is_nested_inside_the_training_fold(matbench_home):
    home, validation, _ = matbench_home
    search = GridSearchCV(CGCNNRegressor(**FAST), {"n_conv": [1, 2]}, cv=2,
                          scoring="neg_mean_absolute_error")  # fmt: skip
    scores = run_matbench(search, ["matbench_mp_e_form"], data_home=home,
                          validation=validation, folds=[1], results_file=None)  # fmt: skip
    assert len(scores) == 1 and np.isfinite(scores.mae).all()


def test_record_refuses_twice_wrong_length_and_nan(matbench_home):
    home, validation, _ = matbench_home
    from skcrystal.benchmarks import _load_task_data

    splits = json.loads(validation.read_text())["splits"]["matbench_mp_e_form"]
    task = MatbenchTask("matbench_mp_e_form", _load_task_data("matbench_mp_e_form", home), splits)
    with pytest.raises(ValueError, match="need 20 finite predictions"):
        task.record("fold_0", np.zeros(3))
    with pytest.raises(ValueError, match="1 not finite"):
        task.record("fold_0", np.r_[np.zeros(19), np.nan])
    task.record("fold_0", np.zeros(20))
    with pytest.raises(ValueError, match="already recorded"):
        task.record("fold_0", np.zeros(20))


def test_classification_and_unknown_tasks_are_refused(matbench_home):
    _, validation, _ = matbench_home
    with pytest.raises(ValueError, match="classification task"):
        run_matbench(CGCNNRegressor(), ["matbench_mp_is_metal"], validation=validation)
    with pytest.raises(ValueError, match="not a task"):
        run_matbench(CGCNNRegressor(), ["matbench_nope"], validation=validation)
