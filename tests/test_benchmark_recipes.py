"""benchmarks/recipes.py: the arms, the patience replay and the report that chose the defaults."""

from __future__ import annotations

import pandas as pd
import pytest

from skcrystal.recipes import auto_max_epochs, auto_n_iter_no_change, recipe


@pytest.fixture(scope="module")
def recipes(benchmark_script):
    return benchmark_script("recipes")


def result(dataset="set", arm="new", n_train=1000, valid=(5.0, 4.0, 3.0), test=None, seed=0):
    """A run as ``recipes.run`` records it; test MAEs default to twice the valid ones."""
    valid, epochs = list(valid), auto_max_epochs(n_train)
    return {
        "dataset": dataset,
        "arm": arm,
        "seed": seed,
        "n_train": n_train,
        "max_epochs": 2 * epochs if arm == "epochs2" else epochs,
        "n_iter_no_change": auto_n_iter_no_change(epochs),
        "n_epochs": len(valid),
        "seconds": 60.0 * len(valid),
        "valid_mae": valid,
        "test_mae": list(test) if test is not None else [2 * v for v in valid],
    }


def settings(params: dict) -> dict:
    """Parameters with callbacks compared by their type and settings."""
    return {
        k: (type(v), v.get_params()) if hasattr(v, "get_params") else v for k, v in params.items()
    }


def test_sweep_arms_change_one_thing(recipes):
    n_train = 1000
    defaults = recipes.arm_params("new", n_train)
    assert defaults == {"max_epochs": 200, "n_iter_no_change": 200}
    for arm, changed in [
        ("lr1e-2", {"lr": 1e-2}),
        ("onecycle", {"lr_schedule": "onecycle"}),
        ("bs128", {"batch_size": 128}),
        ("wd1e-4", {"weight_decay": 1e-4}),
    ]:
        assert recipes.arm_params(arm, n_train) == {**defaults, **changed}
    # the epochs arms change the epochs, and run them all (the report replays patience)
    assert recipes.arm_params("epochs2", n_train) == {"max_epochs": 400, "n_iter_no_change": 400}
    # the named recipes as they are (the authors' step decay is a scheduler callback)
    for arm, name in [("authors", "cgcnn-authors"), ("old", "skcrystal-0.1")]:
        assert settings(recipes.arm_params(arm, n_train)) == settings(recipe(name))


def test_replay_stops_where_early_stopping_would(recipes):
    run = result(valid=[5, 4, 3, 3.5, 3.6, 3.7, 2], test=[9, 8, 7, 0, 0, 0, 6])
    # patience 2: epoch 4 (0-based) is the second without progress on epoch 2
    assert recipes.replay(run, 2) == (3.0, 7.0, 5)
    assert recipes.replay(run, 3) == (3.0, 7.0, 6)
    assert recipes.replay(run, None) == (2.0, 6.0, 7)


def test_runs_are_named_against_todays_defaults(recipes):
    assert recipes.label(result(arm="new")) == recipes.DEFAULTS
    assert recipes.label(result(arm="epochs2")) == "defaults, 400 ep"
    assert recipes.label(result(arm="lr1e-2")) == "lr1e-2, 200 ep"
    assert recipes.label(result(arm="authors")) == "authors"


def test_defaults_are_replayed_with_three_patiences(recipes):
    rows = recipes.summary_rows([result(valid=[5, 4, 3] + [3.5] * 120 + [2])])
    assert [r["arm"] for r in rows] == [
        recipes.DEFAULTS,
        f"{recipes.DEFAULTS}, patience 1/4",
        f"{recipes.DEFAULTS}, no early stop",
    ]
    # default patience 100 and 1/4 (50) both stop on the plateau; no early stop finds 2
    assert [(r["valid"], r["epochs"]) for r in rows] == [(3.0, 103), (3.0, 53), (2.0, 124)]
    assert rows[0]["minutes"] == pytest.approx(103.0)


@pytest.fixture()
def overview(recipes, monkeypatch):
    monkeypatch.setattr(recipes, "median_predictor_mae", lambda dataset: 10.0)

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip("|").split("|")]

    def table(runs):
        text = recipes.overview(pd.DataFrame(recipes.summary_rows(runs)))
        header, _, *lines = text.splitlines()
        return [dict(zip(cells(header), cells(line), strict=True)) for line in lines]

    return table


def test_overview_says_not_run_without_a_sweep(overview):
    (line,) = overview([result(valid=[3.0]), result(arm="authors", valid=[4.0])])
    assert line["new defaults (test)"] == "6"
    assert line["authors (test)"] == "8"
    assert line["old (test)"] == "not run"
    # the defaults' own patience replays are not a sweep: no ratio of 1.000 shown
    assert line["sweep best on valid (test)"] == "not run"
    assert line["defaults' valid / best valid"] == ""


def test_overview_ratio_to_the_sweep_best_on_validation(overview):
    (line,) = overview(
        [
            result(valid=[3.0]),
            result(arm="lr1e-2", valid=[2.5], test=[7.0]),  # best on valid, worse on test
            result(arm="authors", valid=[2.0], test=[1.0]),  # not part of the sweep
        ]
    )
    assert line["sweep best on valid (test)"] == "lr1e-2, 200 ep (7)"
    assert line["defaults' valid / best valid"] == "1.200"
