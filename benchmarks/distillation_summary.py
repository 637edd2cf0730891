"""Plain student against distilled student: test MAEs side by side, from docs/benchmarks.md.

Reads the ``accuracy_<target>_<model>[_<train fraction>]`` sections that
``benchmarks/accuracy_mp.py`` wrote (run it first for both models of a pair) and writes
the section ``distillation_summary``: for every target and training fraction measured for
both a plain model and its distilled version, the two test MAEs and the relative change.
Nothing is trained here.

    python benchmarks/distillation_summary.py
"""

from __future__ import annotations

import re

from report import DOC, markdown_table, write_section

SECTION = re.compile(
    r"<!-- accuracy_(?P<target>e_form|gap_pbe)_(?P<name>[\w.-]+?):start -->(?P<body>.*?)"
    r"<!-- accuracy_(?P=target)_(?P=name):end -->",
    re.S,
)
TARGET_GOAL = {"cgcnn": "at least 10 % lower", "crysxpp": "lower"}


def section_result(body: str) -> tuple[float, str, str]:
    """A section's test MAE, its hardware, and what was chosen on validation (if anything)."""
    header, _, row = [line for line in body.splitlines() if line.startswith("|")][:3]
    cells = dict(zip(_cells(header), _cells(row), strict=True))
    chosen = re.search(r"Chosen on the best validation MAE: (\{.*?\})", body)
    alphas = re.search(r"--alpha ([\d. ]+)", body)
    alpha = f"alpha {alphas.group(1).strip() if alphas else 0.5}"
    teacher = re.search(r"Teacher: `(.+?)`", body)
    note = ", ".join(
        part
        for part in (
            chosen.group(1) if chosen else alpha,
            f"teacher {teacher.group(1)}" if teacher else None,
        )
        if part
    )
    hardware = re.search(r"` on (.+?)(?: \(CUDA|, torch)", body)
    return float(cells["test MAE"]), hardware.group(1) if hardware else "?", note


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def main() -> None:
    results = {}
    for match in SECTION.finditer(DOC.read_text()):
        model, _, suffix = match["name"].partition("_")
        try:
            fraction = float(suffix or 0.2)
        except ValueError:  # a tagged run (atom features, a recipe...): not one of a pair
            continue
        results[match["target"], model, fraction] = section_result(match["body"])
    rows = []
    for (target, model, fraction), (distilled, hardware, note) in sorted(results.items()):
        student = model.removeprefix("distilled-")
        if student == model or (target, student, fraction) not in results:
            continue
        plain, plain_hardware, _ = results[target, student, fraction]
        rows.append(
            {
                "target": target,
                "train fraction": f"{fraction:.0%}",
                "student": student,
                "plain test MAE": plain,
                "distilled test MAE": distilled,
                "change": f"{(distilled - plain) / plain:+.1%}",
                "distilled run": note or "—",
                "measured on (plain / distilled)": f"{plain_hardware} / {hardware}",
            }
        )
    if not rows:
        raise SystemExit(f"no plain/distilled pair of accuracy sections in {DOC}")
    goals = "; ".join(f"{s}: {goal}" for s, goal in TARGET_GOAL.items())
    write_section(
        "distillation_summary",
        "Distillation: plain against distilled student (test MAE)",
        "`python benchmarks/distillation_summary.py`: collected from the accuracy sections "
        "of this page (same split, epochs and settings within a row; validation 10 %, "
        "test the rest; the hardware differs between some runs).\n\n"
        f"{markdown_table(rows)}\n\nTargets of the CrysGNN issue at 20 % "
        f"training data: {goals}.",
    )


if __name__ == "__main__":
    main()
