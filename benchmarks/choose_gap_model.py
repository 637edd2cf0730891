"""Choose the bundled band-gap model among saved candidates, on validation crystals only.

The candidates are CrysXPP band-gap models written by ``benchmarks/accuracy_mp.py --save``
(the fixed 20/10/70 split of ``load_mp_band_gap``, seed 0), differing in the mask penalty
``l1`` and the ``nonnegative`` output. A bundled model must give predictions a user can
trust and importances that mean something, so the rule is:

1. keep the candidates whose feature mask is selective, ``mask_uniformity`` at most
   :data:`skcrystal.explain.UNSELECTIVE_UNIFORMITY` (0.9; an unpenalised mask is 0.99);
2. of those, take the lowest validation MAE of the predictions as ``predict`` returns them
   (clipped at 0 for ``"clip"``, softplus for ``"softplus"``).

The test crystals are only reported. Writes the section ``gap_model_choice`` of
docs/benchmarks.md and, with ``--out``, copies the chosen file there.

    python benchmarks/choose_gap_model.py gap_*.safetensors --out crysxpp-mp-band-gap.safetensors
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
from report import machine, markdown_table, write_section

from skcrystal import CrystalGraphTransformer
from skcrystal.datasets import benchmark_split, load_mp_band_gap
from skcrystal.explain import UNSELECTIVE_UNIFORMITY, mask_uniformity
from skcrystal.hub import load_model, model_card


def evaluate(path: Path, graphs, y: np.ndarray, valid: np.ndarray, test: np.ndarray) -> dict:
    """Validation and test MAE of one saved model, and its mask's uniformity."""
    model = load_model(path)
    predicted = {"valid": model.predict(graphs[valid]), "test": model.predict(graphs[test])}
    card = model_card(path)
    return {
        "file": path.name,
        "l1": card["card"]["chosen"].get("l1", model.l1),
        "nonnegative": model.nonnegative,
        "mask uniformity": mask_uniformity(model.feature_importances_),
        "valid MAE": float(np.abs(predicted["valid"] - y[valid]).mean()),
        "test MAE": float(np.abs(predicted["test"] - y[test]).mean()),
        "test predictions < 0": f"{(predicted['test'] < 0).mean():.1%}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", type=Path, help="saved CrysXPP gap models")
    parser.add_argument("--out", type=Path, help="copy the chosen file here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    df = load_mp_band_gap()
    y = df["gap_pbe"].to_numpy()
    graphs = CrystalGraphTransformer().transform(df.structure)
    _, valid, test = benchmark_split(len(df))
    rows = [evaluate(path, graphs, y, valid, test) for path in args.candidates]
    selective = [r for r in rows if r["mask uniformity"] <= UNSELECTIVE_UNIFORMITY]
    if not selective:
        raise SystemExit("no candidate has a selective mask: train with a larger l1")
    chosen = min(selective, key=lambda r: r["valid MAE"])
    for row in rows:
        row["chosen"] = "yes" if row is chosen else ""
    command = "python benchmarks/choose_gap_model.py " + " ".join(p.name for p in args.candidates)
    write_section(
        "gap_model_choice",
        "Choosing the bundled band-gap model (validation only)",
        f"`{command}` on {machine()}.\n\n{markdown_table(rows)}\n\n"
        f"Rule: among the candidates whose mask uniformity is at most {UNSELECTIVE_UNIFORMITY} "
        "(a selective mask), the lowest validation MAE of the predictions as `predict` "
        "returns them; test MAE only reported.",
    )
    if args.out:
        shutil.copyfile(args.candidates[[r is chosen for r in rows].index(True)], args.out)
        print(f"copied {chosen['file']} to {args.out}")


if __name__ == "__main__":
    main()
