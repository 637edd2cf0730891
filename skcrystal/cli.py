"""The ``skcrystal`` command: predict crystal properties from the command line.

Examples
--------
``skcrystal demo``                  predict bundled example crystals, write a plot
``skcrystal predict MODEL a.cif b.vasp [--csv out.csv]``
``skcrystal models``                list the bundled models
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import time
from pathlib import Path

import pandas as pd


def _example_structures() -> dict:
    """The test crystals pymatgen ships (Si, SiO2, LiFePO4, SrTiO3, ...), by name."""
    from pymatgen.core import Structure

    folder = importlib.resources.files("pymatgen") / "util" / "structures"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".json"))
    return {p.name.removesuffix(".json"): Structure.from_file(str(p)) for p in files}


def _demo(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skcrystal.hub import load_model, model_card

    start = time.perf_counter()
    name = "cgcnn-mp-formation-energy"
    model = load_model(name)
    card = model_card(name)["card"]
    crystals = _example_structures()
    table = pd.DataFrame(
        {
            "formula": [s.composition.reduced_formula for s in crystals.values()],
            "sites": [len(s) for s in crystals.values()],
            "predicted e_form (eV/atom)": model.predict(list(crystals.values())).round(3),
        },
        index=pd.Index(list(crystals), name="crystal"),
    )
    # The formation energy of a pure element is zero by definition (relative to its ground
    # state); that is the only reference known without a database.
    is_element = [len(s.composition.elements) == 1 for s in crystals.values()]
    table["reference"] = ["≈0 (element)" if e else "" for e in is_element]
    print(f"Model {name!r}: {card.get('data', '')}, test MAE {card.get('test_mae', 0):.3f} eV/atom")
    print(table.to_string())
    fig, ax = plt.subplots(figsize=(7, 5))
    ordered = table.sort_values("predicted e_form (eV/atom)")
    ax.barh(ordered.formula, ordered["predicted e_form (eV/atom)"], color="tab:blue")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("predicted formation energy (eV/atom)")
    ax.set_title(f"skcrystal demo: {name}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"Wrote {args.out} ({time.perf_counter() - start:.1f} s)")


def _predict(args: argparse.Namespace) -> None:
    from skcrystal.hub import load_model

    model = load_model(args.model)
    predictions = model.predict([str(f) for f in args.files])
    frame = pd.DataFrame(
        predictions.reshape(len(args.files), -1),
        index=pd.Index([str(f) for f in args.files], name="file"),
    )
    frame.columns = ["prediction"] if frame.shape[1] == 1 else [f"prediction_{i}" for i in frame]
    if args.csv:
        frame.to_csv(args.csv)
        print(f"Wrote {args.csv}")
    else:
        print(frame.to_string())


def _models(args: argparse.Namespace) -> None:
    from skcrystal.hub import available_models, model_card

    for name in available_models():
        card = model_card(name)["card"]
        print(f"{name}: {card.get('data', '')}; test MAE {card.get('test_mae', float('nan')):.4f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skcrystal", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="predict bundled example crystals, offline")
    demo.add_argument("--out", type=Path, default=Path("skcrystal-demo.png"), help="plot file")
    demo.set_defaults(run=_demo)
    predict = commands.add_parser("predict", help="predict crystals from CIF/POSCAR files")
    predict.add_argument("model", help="bundled model name or .safetensors path")
    predict.add_argument("files", nargs="+", type=Path, help="CIF or POSCAR files")
    predict.add_argument("--csv", type=Path, help="write the table to this CSV file")
    predict.set_defaults(run=_predict)
    models = commands.add_parser("models", help="list the bundled models")
    models.set_defaults(run=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; errors are one line on stderr and exit code 1."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError, ImportError) as err:
        print(f"skcrystal {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
