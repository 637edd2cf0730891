"""Every script in examples/ runs end to end in its smoke mode (tiny data, few epochs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPECTED = {
    "cross_validation_dataframe.py": ("3-fold MAE", []),
    "grid_search.py": ("test MAE of the refitted best model", []),
    "pretrain_and_distil.py": ("distilled CGCNN: test MAE", ["distilled-parity.png"]),
    "explain_crysxpp.py": ("electronegativity", ["crysxpp-importances.png"]),
    "finetune_experimental_band_gaps.py": ("MAE", []),
}


def test_every_example_is_covered():
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"pretrain_distributed.py"}
    assert scripts == set(EXPECTED)  # pretrain_distributed.py: tests/test_distributed.py


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_smoke(script, tmp_path, data_home):
    text, files = EXPECTED[script]
    env = {**os.environ, "SKCRYSTAL_DATA": str(data_home), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--smoke"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert text in done.stdout
    for name in files:
        assert (tmp_path / name).stat().st_size > 1000
