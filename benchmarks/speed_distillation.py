"""Distillation overhead: fit time of DistilledRegressor against its plain student.

On the first ``--n`` (default 2,000) MP crystals, with pre-built graphs, fits
``CGCNNRegressor`` and ``DistilledRegressor(student="cgcnn")`` (bundled teacher
``crysgnn-mp``) for the same ``--epochs``, batch 128, no early stopping, and
``CrysXPPRegressor`` against ``DistilledRegressor(student="crysxpp")``. The distilled fit
time includes computing the teacher's node embeddings (once per fit). Fits alternate
plain / distilled ``--repeats`` times so both see the same machine load; the table
reports the fastest of each. Target: distilled at most 1.3x plain.

    python benchmarks/speed_distillation.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch
from report import machine, markdown_table, write_section

from skcrystal import CGCNNRegressor, CrystalGraphTransformer, CrysXPPRegressor, DistilledRegressor
from skcrystal.datasets import load_mp_formation_energy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    df = load_mp_formation_energy(limit=args.n)
    graphs = CrystalGraphTransformer().transform(df.structure)
    y = df.e_form.to_numpy()
    common = dict(max_epochs=args.epochs, batch_size=128, early_stopping=False, random_state=0)
    pairs = {
        "cgcnn": (
            lambda: CGCNNRegressor(**common),
            lambda: DistilledRegressor(student="cgcnn", **common),
        ),
        "crysxpp": (
            lambda: CrysXPPRegressor(encoder="crysae-mp", l1=0.0, **common),
            lambda: DistilledRegressor(
                student="crysxpp", student_params={"encoder": "crysae-mp", "l1": 0.0}, **common
            ),
        ),
    }
    rows = []
    for student, (plain, distilled) in pairs.items():
        times = {"plain": [], "distilled": []}
        teacher_time = 0.0
        for _ in range(args.repeats):
            for kind, make in (("plain", plain), ("distilled", distilled)):
                model = make()
                start = time.perf_counter()
                model.fit(graphs, y)
                times[kind].append(time.perf_counter() - start)
                if kind == "distilled":
                    teacher_time = model.teacher_time_
        best = {kind: min(values) for kind, values in times.items()}
        rows.append(
            {
                "student": student,
                "plain fit (s)": round(best["plain"], 1),
                "distilled fit (s)": round(best["distilled"], 1),
                "of which teacher embeddings (s)": round(teacher_time, 1),
                "ratio": round(best["distilled"] / best["plain"], 2),
            }
        )
    write_section(
        "speed_distillation",
        "Distillation overhead (fit time, distilled / plain student)",
        f"`python benchmarks/speed_distillation.py --n {args.n} --epochs {args.epochs} "
        f"--threads {args.threads}` on {machine()}: {args.n} MP crystals, {args.epochs} "
        f"epochs, batch 128, fastest of {args.repeats} alternating fits.\n\n"
        f"{markdown_table(rows)}\n\nTarget: ratio at most 1.3.",
    )


if __name__ == "__main__":
    main()
