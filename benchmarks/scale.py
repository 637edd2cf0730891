"""Beyond memory: a 200,000-crystal graph store, prediction and pretraining from it.

The crystals are the 36,737 of ``load_mp_formation_energy`` repeated with small random
strains (each copy's lattice stretched by a uniform random factor in [-1 %, +1 %] along
each axis, seed 0), so that every graph differs. Each phase runs in a fresh Python
process, whose peak resident memory (``ru_maxrss``, and the graph-building workers'
``VmHWM``) is reported:

* **build**: ``GraphStore.create(path, CrystalGraphTransformer(n_jobs=2), stream,
  chunk_size=10_000)`` from a generator of strained copies; time, size on disk, peak RSS.
  The generator's source, the 36,737 parsed MP structures, is in memory (the loader's
  cache): its RSS before the build is reported beside the peak.
* **predict**: ``load_model("cgcnn-mp-formation-energy").predict(GraphStore.open(path))``
  over all crystals; time and peak RSS (goal: under 2 GB).
* **pretrain**: one epoch of ``CrysGNNPretrainer(pretraining="attribute_masking")`` (the
  store has no space groups: a symmetry search of 200,000 crystals takes about 17 minutes
  on 2 cores) from the store, without a validation split; time and peak RSS (goal: under
  4 GB).

Writes the ``scale`` section of docs/benchmarks.md. Run::

    python benchmarks/scale.py --store /tmp/mp200k.graphs          # all phases
    python benchmarks/scale.py --n 20000 --store /tmp/s.graphs --no-pretrain   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from report import machine, markdown_table, write_section


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _descendant_peaks_mb() -> list[float]:
    """Peak RSS (VmHWM) of every live process below this one: the joblib workers."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    below, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - below
        below |= frontier
    peaks = []
    for pid in below:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(x.split()[1]) / 1024 for x in status.splitlines() if x.startswith("VmHWM:")]
    return peaks


def strained_copies(structures: list, n: int, seed: int = 0):
    """``n`` crystals: ``structures`` over and over, each copy strained by up to 1 %."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        crystal = structures[i % len(structures)].copy()
        crystal.apply_strain(rng.uniform(-0.01, 0.01, 3))
        yield crystal


def build(args) -> dict:
    from skcrystal import CrystalGraphTransformer
    from skcrystal.datasets import load_mp_formation_energy
    from skcrystal.graphs import GraphStore

    structures = load_mp_formation_energy().structure.tolist()
    source_rss = _current_rss_mb()
    shutil.rmtree(args.store, ignore_errors=True)
    start = time.perf_counter()
    transformer = CrystalGraphTransformer(n_jobs=args.n_jobs, cache=False)
    stream = strained_copies(structures, args.n)
    store = GraphStore.create(args.store, transformer, stream, chunk_size=10_000)
    seconds = time.perf_counter() - start
    workers = _descendant_peaks_mb()
    return {
        "phase": "build",
        "crystals": len(store),
        "seconds": seconds,
        "crystals/s": len(store) / seconds,
        "disk GB": store.nbytes / 1e9,
        "chunks": store.n_chunks,
        "peak RSS GB": _peak_rss_mb() / 1024,
        "input RSS GB": source_rss / 1024,
        "worker peak RSS GB": max(workers, default=0.0) / 1024,
        "refused": len(store.errors),
    }


def predict(args) -> dict:
    from skcrystal.graphs import GraphStore
    from skcrystal.hub import load_model

    model = load_model("cgcnn-mp-formation-energy")
    store = GraphStore.open(args.store)
    start = time.perf_counter()
    predictions = model.predict(store)
    seconds = time.perf_counter() - start
    assert len(predictions) == len(store) and np.isfinite(predictions).all()
    return _timed_phase("predict", len(store), seconds)


def _timed_phase(phase: str, crystals: int, seconds: float, **more) -> dict:
    """The row of one phase: its throughput and this process's peak memory."""
    return {
        "phase": phase,
        "crystals": crystals,
        "seconds": seconds,
        "crystals/s": crystals / seconds,
        "peak RSS GB": _peak_rss_mb() / 1024,
        **more,
    }


def pretrain(args) -> dict:
    from skcrystal import CrysGNNPretrainer
    from skcrystal.graphs import GraphStore

    store = GraphStore.open(args.store)
    pretrainer = CrysGNNPretrainer(
        pretraining="attribute_masking",
        max_epochs=1,
        early_stopping=False,
        train_split=None,
        random_state=0,
    )
    start = time.perf_counter()
    pretrainer.fit(store)
    seconds = time.perf_counter() - start
    loss = float(pretrainer.history_[-1, "train_loss"])
    return _timed_phase("pretrain (1 epoch)", len(store), seconds, loss=loss)


PHASES = {"build": build, "predict": predict, "pretrain": pretrain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="crystals in the store")
    parser.add_argument("--store", type=Path, required=True, help="store folder (rebuilt)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-pretrain", action="store_true")
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:  # one phase, in this fresh process
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(PHASES[args.phase](args)), flush=True)
        return
    phases = ["build", "predict"] + ([] if args.no_pretrain else ["pretrain"])
    rows = []
    for phase in phases:
        command = [sys.executable, __file__, "--phase", phase, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"phase {phase} failed:\n{done.stderr[-3000:]}")
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
        rows.append(json.loads(line.removeprefix("RESULT ")))
        print(rows[-1], flush=True)
    import torch

    torch.set_num_threads(args.threads)
    columns = ["phase", "crystals", "seconds", "crystals/s", "peak RSS GB"]
    build_row = rows[0]
    body = [
        f"`python benchmarks/scale.py --n {args.n} --store STORE"
        f"{' --no-pretrain' if args.no_pretrain else ''}`; {machine()}. ",
        "",
        f"{args.n:,} crystals: the 36,737 MP crystals of `load_mp_formation_energy` repeated, "
        "each copy strained by up to 1 % per axis (seed 0). Each phase in a fresh process; "
        "peak RSS is that process's `ru_maxrss`.",
        "",
        markdown_table(rows, columns),
        "",
        f"Store on disk: {build_row['disk GB']:.2f} GB in {build_row['chunks']} chunks of up "
        f"to 10,000 crystals; {build_row['refused']} crystals refused. The build's peak RSS "
        f"includes the 36,737 parsed source structures ({build_row['input RSS GB']:.2f} GB "
        f"before the build started); the graph workers peaked at "
        f"{build_row['worker peak RSS GB']:.2f} GB each.",
    ]
    write_section("scale", "Beyond memory: a graph store of many crystals", "\n".join(body))


if __name__ == "__main__":
    main()
