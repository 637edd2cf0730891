"""The ``skcrystal`` command: predict crystal properties from the command line.

Examples
--------
``skcrystal demo``                  predict bundled example crystals, write a plot
``skcrystal predict MODEL a.cif b.vasp folder/ 'data/**/*.cif' list.csv [--interval 0.9]``
    ``[--out predictions.csv [--resume]]``
``skcrystal models``                list the bundled models
``skcrystal fit --data DIR_OR_CSV --model cgcnn|crysxpp|distilled|alignn --out model.safetensors``
                                    (``--members 3 --calibrate 0.2``: an ensemble with
                                    conformal intervals, for ``predict --interval``)
``skcrystal pretrain --data DIR_OR_CSV --model crysae|crysgnn --out encoder.safetensors``
``skcrystal explain MODEL``          importance of each element property (CrysXPP models)

``predict`` takes files, folders (their ``*.cif``, ``*.vasp``, ``POSCAR*`` and ``CONTCAR*``
files, any case, not searched recursively), glob patterns, which the command expands
itself when quoted (``**`` matches any depth), and CSV files whose first column lists
structure files (relative to the CSV; a header line first); a folder or pattern without a
match is an error. It reads, builds and predicts ``--chunk-size`` files at a time, with a
progress bar, so memory stays bounded for any number of files. ``--out`` is written as
it goes; a file that cannot be read or turned into a graph does not stop the run: it is
listed with the reason in ``--errors`` (default ``OUT.errors.csv``; without ``--out``, on
stderr), and the command ends with exit code 1 saying how many failed. ``--resume``
continues an interrupted run, skipping the files already in either file.

``--data`` is a folder (or .tar.gz/.tar.xz archive) in the CGCNN layout (a headerless
``id_prop.csv`` of ``id,target`` rows, plus ``<id>.cif`` per crystal, or the file named by
the id itself as in ALIGNN/JARVIS folders), that folder's ``id_prop.csv`` itself (read the
same way), or a CSV file with a header line whose first column holds CIF/POSCAR paths
(relative to the CSV) and whose ``--target`` column (default: the second) the values. A
CSV whose header line looks like data (a number, or the name of a file beside it) is
refused: it would be lost as a header.
"""

from __future__ import annotations

import argparse
import glob
import importlib.resources
import sys
import time
from pathlib import Path

import numpy as np
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

    from skcrystal.explain import plot_importances
    from skcrystal.hub import load_model, model_card

    start = time.perf_counter()
    names = {"e_form": "cgcnn-mp-formation-energy", "gap": "crysxpp-mp-band-gap"}
    models = {key: load_model(name) for key, name in names.items()}
    crystals = _example_structures()
    structures = list(crystals.values())
    table = pd.DataFrame(
        {
            "formula": [s.composition.reduced_formula for s in structures],
            "sites": [len(s) for s in structures],
            "predicted e_form (eV/atom)": models["e_form"].predict(structures).round(3),
            "predicted PBE gap (eV)": models["gap"].predict(structures).round(2),
        },
        index=pd.Index(list(crystals), name="crystal"),
    )
    # The formation energy of a pure element is zero by definition (relative to its ground
    # state); that is the only reference known without a database.
    is_element = [len(s.composition.elements) == 1 for s in structures]
    table["reference e_form"] = ["≈0 (element)" if e else "" for e in is_element]
    for name in names.values():
        card = model_card(name)["card"]
        print(f"Model {name!r}: {card.get('data', '')}, test MAE {card['test_mae']:.3f}")
    print(table.to_string())
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    ordered = table.sort_values("predicted e_form (eV/atom)")
    left.barh(ordered.formula, ordered["predicted e_form (eV/atom)"], color="tab:blue")
    left.axvline(0, color="k", lw=0.8)
    left.set_xlabel("predicted formation energy (eV/atom)")
    left.set_title(names["e_form"])
    plot_importances(models["gap"], ax=right)
    right.set_title(f"{names['gap']}: importances")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"Wrote {args.out} ({time.perf_counter() - start:.1f} s)")


STRUCTURE_FILES = "*.cif, *.vasp, POSCAR*, CONTCAR*"


def _folder_files(folder: Path) -> list[Path]:
    """The structure files directly in ``folder`` (see ``STRUCTURE_FILES``), sorted."""
    from skcrystal.datasets import _structure_format

    files = sorted(p for p in folder.iterdir() if p.is_file() and _structure_format(p.name))
    if not files:
        raise ValueError(
            f"{folder}: the folder holds no {STRUCTURE_FILES} file (folders are not searched "
            f"recursively: quote a pattern such as '{folder / '**' / '*.cif'}')"
        )
    return files


def _pattern_files(pattern: str) -> list[Path]:
    """The files a glob pattern matches, sorted (``**``: any depth; folders are not files)."""
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise ValueError(f"{pattern}: the pattern matches no file")
    return files


def _listed_files(table: Path) -> list[Path]:
    """The files in the first column of a CSV (a header line first), relative to it."""
    listed = pd.read_csv(table, usecols=[0], dtype=str).iloc[:, 0]
    if listed.isna().any():
        row = int(np.flatnonzero(listed.isna())[0]) + 2
        raise ValueError(f"{table}, line {row}: the first column names no file")
    return [table.parent / name for name in listed]


def _expand_inputs(arguments: list[Path]) -> list[Path]:
    """The structure files named by ``predict``'s arguments: files, folders, patterns and
    CSV lists of files."""
    files = []
    for argument in arguments:
        if argument.is_dir():
            files += _folder_files(argument)
        elif argument.suffix.lower() == ".csv" and argument.is_file():
            files += _listed_files(argument)
        elif argument.exists():
            files.append(argument)
        elif any(char in str(argument) for char in "*?["):
            files += _pattern_files(str(argument))
        else:
            raise ValueError(f"{argument}: no such file or folder")
    return files


def _check_model(model, name: str, interval: float | None) -> None:
    from sklearn.base import is_regressor

    if not is_regressor(model):  # pretrainers have no property head
        raise ValueError(
            f"{name} is a {type(model).__name__}, a pretrained encoder without a "
            "property head; predict with a regressor (see `skcrystal models`)"
        )
    if interval is not None and not hasattr(model, "predict_interval"):
        raise ValueError(
            f"{name} is a {type(model).__name__}, which has no calibration for "
            "intervals; --interval needs a model saved from a ConformalRegressor "
            "(`skcrystal fit ... --calibrate 0.2`)"
        )


def _complete_lines(path: Path) -> None:
    """Cut a partly written last line (a run killed while writing it) off ``path``."""
    text = path.read_bytes()
    if text and not text.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(text.rfind(b"\n") + 1)


def _done_files(out: Path, errors: Path) -> set[str]:
    """The files an earlier run of ``predict --out`` already predicted or reported."""
    done: set[str] = set()
    for path in (out, errors):
        if path.exists():
            _complete_lines(path)
            if path.stat().st_size:
                done.update(pd.read_csv(path, usecols=["file"], dtype=str)["file"])
    return done


def _append_csv(frame: pd.DataFrame, path: Path) -> None:
    """Append rows to ``path`` in one write (with the header if the file is new)."""
    header = not path.exists() or path.stat().st_size == 0
    with open(path, "a") as f:
        f.write(frame.to_csv(header=header))
        f.flush()


def _predict(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from skcrystal.hub import load_model
    from skcrystal.screening import iter_predictions

    files = [str(f) for f in _expand_inputs(args.files)]
    model = load_model(args.model)
    _check_model(model, args.model, args.interval)
    out = args.out
    report = args.errors or (out.with_name(out.stem + ".errors.csv") if out else None)
    todo = files
    if args.resume:
        if out is None:
            raise ValueError("--resume continues the file of --out: give --out")
        done = _done_files(out, report)
        todo = [f for f in files if f not in done]
        print(f"Resuming: {len(files) - len(todo)} of {len(files)} files done before")
    else:  # a new run replaces the files of an earlier one
        for path in (out, report):
            if path is not None:
                path.unlink(missing_ok=True)
    tables, failed = [], []
    progress = tqdm(total=len(todo), unit="crystal", disable=None, desc="predict")
    chunks = iter_predictions(
        model, todo, ids=todo, chunk_size=args.chunk_size, coverage=args.interval
    )
    for chunk in chunks:
        table = chunk.table.rename_axis("file")
        errors = pd.DataFrame(chunk.errors, columns=["file", "error"]).set_index("file")
        if out is None:
            tables.append(table)
        elif len(table):
            _append_csv(table, out)
        if report is not None and len(errors):
            _append_csv(errors, report)
        failed += chunk.errors
        progress.update(len(table) + len(errors))
    progress.close()
    if out is not None:
        print(f"Wrote {out}")
    elif any(len(t) for t in tables):
        print(pd.concat([t for t in tables if len(t)]).to_string())
    if report is None:
        for file, message in failed:
            print(f"{file}: {message}", file=sys.stderr)
    elif report.exists():  # this run's failures and, resuming, the earlier ones
        failed = list(pd.read_csv(report, dtype=str).itertuples(index=False, name=None))
    if failed:
        where = f"listed in {report}" if report else "listed above"
        raise ValueError(
            f"{len(failed)} of {len(files)} files could not be predicted ({where}); "
            f"the first: {failed[0][1]}"
        )


def _models(args: argparse.Namespace) -> None:
    from skcrystal.hub import available_models, model_card

    for name in available_models():
        description = model_card(name)
        card = description["card"]
        quality = f"; test MAE {card['test_mae']:.4f}" if "test_mae" in card else ""
        print(f"{name} ({description['estimator']}): {card.get('data', '')}{quality}")


def _load_cgcnn(path: Path, target: str | None) -> tuple[list, pd.Series]:
    """Structures and targets of a CGCNN folder or archive."""
    from skcrystal.datasets import load_cgcnn_folder

    frame = load_cgcnn_folder(path, progress=True)
    columns = [c for c in frame.columns if c != "structure"]
    column = target or columns[0]
    if column not in frame:
        raise ValueError(f"--target {column!r}: the data has {', '.join(columns)}")
    return frame.structure.tolist(), frame[column]


def _looks_like_data(label: str, folder: Path) -> bool:
    """Whether a CSV header cell is rather a value: a number, or a file beside the CSV."""
    try:
        float(label)
    except ValueError:
        return (folder / label).is_file()
    return True


def _check_header(table: pd.DataFrame, path: Path) -> None:
    data_like = [str(c) for c in table.columns if _looks_like_data(str(c), path.parent)]
    if data_like:
        raise ValueError(
            f"--data {path}: the first line ({', '.join(map(str, table.columns))}) looks like "
            f"data, not a header ({data_like[0]!r} is a number or a file): add a header line "
            "such as 'file,target', or name a headerless file id_prop.csv (CGCNN layout)"
        )


def _load_data(path: Path, target: str | None) -> tuple[list, pd.Series | None]:
    """Structures and targets from a CGCNN folder/archive/id_prop.csv or a CSV of paths."""
    if not path.exists():
        raise ValueError(f"--data {path}: no such file or folder")
    if path.name == "id_prop.csv":
        return _load_cgcnn(path.parent, target)
    if path.suffix.lower() != ".csv":
        return _load_cgcnn(path, target)
    table = pd.read_csv(path)
    _check_header(table, path)
    if table.shape[1] < 2 and target is None:
        return [str(path.parent / f) for f in table.iloc[:, 0]], None
    column = target or table.columns[1]
    if column not in table:
        raise ValueError(f"--target {column!r}: {path} has {', '.join(map(str, table.columns))}")
    files = [str(path.parent / f) for f in table.iloc[:, 0]]
    return files, table[column]


def _epochs(text: str) -> int | str:
    """``--epochs``: a positive integer or "auto"."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return int(text)


def _members(text: str) -> int:
    """``--members``: a positive integer."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _coverage(text: str) -> float:
    """``--interval``: a coverage strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a coverage between 0 and 1, got {text!r}")
    return value


def _training_params(args: argparse.Namespace) -> dict:
    """The estimator parameters that ``fit`` and ``pretrain`` take from the command line."""
    return dict(
        max_epochs=args.epochs,
        random_state=0,
        verbose=1,
        device=args.device,
        checkpoint=args.checkpoint,
    )


def _fit(args: argparse.Namespace) -> None:
    from skcrystal import ALIGNNRegressor, CGCNNRegressor, CrysXPPRegressor, DistilledRegressor
    from skcrystal.hub import save_model
    from skcrystal.uncertainty import ConformalRegressor, EnsembleRegressor

    X, y = _load_data(args.data, args.target)
    if y is None:
        raise ValueError(f"--data {args.data}: no target column to fit")
    if args.checkpoint is not None and args.members > 1:
        raise ValueError(
            f"--checkpoint resumes one network's fit; an ensemble of {args.members} trains "
            "several: leave --checkpoint out or use --members 1"
        )
    common = _training_params(args)
    if args.model == "cgcnn":
        model = CGCNNRegressor(**common)
    elif args.model == "crysxpp":
        model = CrysXPPRegressor(encoder=args.encoder, l1=args.l1, **common)
    elif args.model == "alignn":
        model = ALIGNNRegressor(**common)
    else:
        model = DistilledRegressor(teacher=args.teacher, **common)
    if args.members > 1:
        model = EnsembleRegressor(model, n_estimators=args.members, random_state=0)
    if args.calibrate is not None:
        model = ConformalRegressor(model, calibration_fraction=args.calibrate, random_state=0)
    model.fit(X, y.to_numpy())
    fitted = getattr(model, "estimator_", model)
    networks = getattr(fitted, "estimators_", [fitted])
    best = float(np.mean([min(network.history_[:, "valid_mae"]) for network in networks]))
    save_model(
        model,
        args.out,
        data=str(args.data),
        target=str(y.name),
        valid_mae=best,
        command="skcrystal " + " ".join(sys.argv[1:]),
    )
    calibrated = (
        f"; {len(model.scores_)} crystals held out for calibration ({model.method_})"
        if args.calibrate is not None
        else ""
    )
    print(
        f"Validation MAE {best:.4g} (10 % of the training crystals, best epoch"
        f"{', mean over the members' if args.members > 1 else ''}){calibrated}; "
        f"wrote {args.out}"
    )


def _pretrain(args: argparse.Namespace) -> None:
    from skcrystal import CrysAEPretrainer, CrysGNNPretrainer
    from skcrystal.hub import save_model

    X, _ = _load_data(args.data, None)
    cls = CrysAEPretrainer if args.model == "crysae" else CrysGNNPretrainer
    model = cls(**_training_params(args)).fit(X)
    best = float(min(model.history_[:, "valid_loss"]))
    save_model(
        model, args.out, data=str(args.data), held_out_loss=best,
        command="skcrystal " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    print(f"Held-out reconstruction loss {best:.4g}; wrote {args.out}")


def _explain(args: argparse.Namespace) -> None:
    from skcrystal.hub import load_model

    model = load_model(args.model)
    if not hasattr(model, "explain"):
        raise ValueError(
            f"{args.model} is a {type(model).__name__}, which has no feature selector; "
            "explanations come from CrysXPPRegressor models"
        )
    table = model.explain()
    if args.csv:
        table.to_csv(args.csv)
        print(f"Wrote {args.csv}")
    else:
        print(table.to_string())


CHECKPOINT_HELP = (
    "save the training state to this file after every epoch; the same command, run again "
    "after an interruption, continues from the last epoch"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skcrystal", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="predict bundled example crystals, offline")
    demo.add_argument("--out", type=Path, default=Path("skcrystal-demo.png"), help="plot file")
    demo.set_defaults(run=_demo)
    predict = commands.add_parser("predict", help="predict crystals from CIF/POSCAR files")
    predict.add_argument("model", help="bundled model name or .safetensors path")
    predict.add_argument(
        "files",
        nargs="+",
        type=Path,
        help=f"CIF or POSCAR files, folders (their {STRUCTURE_FILES} files) or quoted glob "
        "patterns ('data/**/*.cif')",
    )
    predict.add_argument(
        "--interval",
        type=_coverage,
        metavar="COVERAGE",
        help="also print conformal intervals of this coverage, e.g. 0.9 (calibrated models)",
    )
    predict.add_argument(
        "--out",
        "--csv",
        type=Path,
        help="write the predictions to this CSV file as they are made (one row per file)",
    )
    predict.add_argument(
        "--errors",
        type=Path,
        help="CSV of the files that could not be predicted and why (default: beside --out, "
        "named OUT.errors.csv)",
    )
    predict.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: skip the files already in --out or --errors",
    )
    predict.add_argument(
        "--chunk-size", type=int, default=1000, help="files read and predicted at a time"
    )
    predict.set_defaults(run=_predict)
    models = commands.add_parser("models", help="list the bundled models")
    models.set_defaults(run=_models)

    fit = commands.add_parser("fit", help="train a property model and save it")
    fit.add_argument(
        "--data", type=Path, required=True, help="CGCNN folder/archive/id_prop.csv or CSV"
    )
    fit.add_argument("--target", help="target column (default: the first)")
    fit.add_argument(
        "--model", choices=["cgcnn", "crysxpp", "distilled", "alignn"], default="cgcnn"
    )
    fit.add_argument("--encoder", default="crysae-mp", help="CrysAE for crysxpp")
    fit.add_argument("--l1", type=float, default=0.01, help="crysxpp mask penalty")
    fit.add_argument("--teacher", help="CrysGNN teacher for distilled (default: bundled)")
    fit.add_argument(
        "--epochs",
        type=_epochs,
        default="auto",
        help="training epochs, or 'auto' (the default: from the number of crystals)",
    )
    fit.add_argument(
        "--members", type=_members, default=1, help="train an ensemble of this many seeds"
    )
    fit.add_argument(
        "--calibrate",
        type=float,
        metavar="FRACTION",
        help="hold out this fraction of the crystals to calibrate conformal intervals",
    )
    fit.add_argument("--device", default="cpu")
    fit.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    fit.add_argument("--out", type=Path, required=True, help=".safetensors file to write")
    fit.set_defaults(run=_fit)

    pretrain = commands.add_parser("pretrain", help="pretrain an encoder without labels")
    pretrain.add_argument(
        "--data", type=Path, required=True, help="CGCNN folder/archive/id_prop.csv or CSV"
    )
    pretrain.add_argument("--model", choices=["crysae", "crysgnn"], default="crysgnn")
    pretrain.add_argument("--epochs", type=int, default=20)
    pretrain.add_argument("--device", default="cpu")
    pretrain.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    pretrain.add_argument("--out", type=Path, required=True, help=".safetensors file")
    pretrain.set_defaults(run=_pretrain)

    explain = commands.add_parser("explain", help="importance of each element property")
    explain.add_argument("model", help="CrysXPP model: bundled name or .safetensors path")
    explain.add_argument("--csv", type=Path, help="write the table to this CSV file")
    explain.set_defaults(run=_explain)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; errors are one line on stderr and exit code 1."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"skcrystal {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
