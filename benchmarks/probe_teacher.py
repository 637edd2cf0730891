"""How much of a property a frozen teacher's crystal embedding holds: a linear probe.

A diagnostic for distillation. The graph embeddings of a pretrained teacher
(``CrysGNNPretrainer.transform``: the mean of its L2-normalised node embeddings, 64
numbers per crystal) are fitted to the target by ridge regression on the training rows of
the fixed split of ``benchmarks/accuracy_mp.py`` (seed 0), the ridge penalty chosen on
the validation rows, and scored on the test rows. The same probe on a randomly
initialised, untrained network of the same shape says how much of that comes from
pretraining rather than from the architecture and the atom features.

    python benchmarks/probe_teacher.py --target e_form
    python benchmarks/probe_teacher.py --target gap_pbe --teacher crysgnn-mp

Writes the section ``probe_<teacher>_<target>`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from accuracy_mp import split
from report import machine, markdown_table, write_section
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcrystal import CrysGNNPretrainer, CrystalGraphTransformer
from skcrystal.datasets import load_mp_band_gap, load_mp_formation_energy
from skcrystal.hub import load_model

PENALTIES = [1e-3, 1e-2, 1e-1, 1, 10, 100]


def probe(embeddings: np.ndarray, y: np.ndarray, train, valid, test) -> tuple[float, float]:
    """Test MAE of the ridge probe whose penalty scores best on validation, and the penalty."""
    fitted = []
    for penalty in PENALTIES:
        model = make_pipeline(StandardScaler(), Ridge(alpha=penalty))
        model.fit(embeddings[train], y[train])
        fitted.append((np.abs(model.predict(embeddings[valid]) - y[valid]).mean(), penalty, model))
    _, penalty, model = min(fitted, key=lambda f: f[0])
    return float(np.abs(model.predict(embeddings[test]) - y[test]).mean()), penalty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["e_form", "gap_pbe"], default="e_form")
    parser.add_argument("--teacher", default="crysgnn-mp", help="bundled name or file")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load = load_mp_formation_energy if args.target == "e_form" else load_mp_band_gap
    df = load(n_jobs=args.jobs)
    y = df[args.target].to_numpy()
    teacher = load_model(args.teacher)
    graphs = teacher.graph_builder_.transform(df.structure)  # the teacher's own settings
    train, valid, test = split(len(df))
    rows = []
    fresh = CrysGNNPretrainer(max_epochs=1, random_state=0, early_stopping=False, lr=0.0)
    fresh.fit(CrystalGraphTransformer(symmetry=True).transform(df.structure.iloc[train[:512]]))
    for name, model in [("pretrained teacher", teacher), ("same network, untrained", fresh)]:
        mae, penalty = probe(model.transform(graphs), y, train, valid, test)
        rows.append({"embedding": name, "test MAE": mae, "ridge penalty (on validation)": penalty})
    rows.append(
        {
            "embedding": "none (mean of the training targets)",
            "test MAE": float(np.abs(y[test] - y[train].mean()).mean()),
            "ridge penalty (on validation)": "—",
        }
    )
    name = Path(args.teacher).stem
    write_section(
        f"probe_{name}_{args.target}",
        f"Linear probe of the {name} embedding: MP {args.target} (20/10/70 split, seed 0)",
        f"`python benchmarks/probe_teacher.py --target {args.target} --teacher "
        f"{args.teacher}` on {machine()}.\n\n{markdown_table(rows)}\n\nRidge regression on "
        "the standardised 64-number crystal embedding (mean of the L2-normalised node "
        "embeddings), fitted on the training rows; the untrained network had one epoch at "
        "learning rate 0 on 512 training crystals, which only sets its batch-norm "
        "statistics.",
    )


if __name__ == "__main__":
    main()
