"""Write a benchmark's table into its own section of docs/benchmarks.md."""

from __future__ import annotations

import fcntl
import os
import platform
import re
from datetime import date
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
# Benchmarks read the staged data like the tests: $SKCRYSTAL_DATA, else ../shared/data.
os.environ.setdefault("SKCRYSTAL_DATA", str(REPO.parent / "shared" / "data"))
HEADER = """# Benchmarks

Every section below is written by the script named in it (`python benchmarks/<script>`),
on the machine it names; rerun the script to refresh it. Numbers are measured, not copied.

The bundled teacher `crysgnn-mp` was replaced on 2026-12-07 (docs/crysgnn.md): sections
dated before that which name `crysgnn-mp` measured skcrystal 0.1's teacher (sha256
`d5fb3a33...`, in the git history), called `crysgnn-mp-0.1` where both appear.
"""


CHECKPOINTS = REPO / "benchmarks" / "out" / "checkpoints"


def checkpoint_file(name: str) -> Path:
    """Where the run ``name`` keeps its training state (the estimators' ``checkpoint``), so
    that the same command continues it after an interruption (another session)."""
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    return CHECKPOINTS / f"{name}.pt"


def training_seconds(reg) -> float:
    """The training time of a fit: its epochs' durations, summed over every run of it."""
    return float(sum(reg.history_[:, "dur"]))


def machine(device: str = "cpu") -> str:
    """One line naming the hardware and software a number was measured on."""
    if str(device).startswith("cuda"):
        hardware = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        hardware = f"{platform.processor() or platform.machine()} CPU"
    return (
        f"{hardware}, torch {torch.__version__} with {torch.get_num_threads()} CPU threads, "
        f"Python {platform.python_version()}, {date.today()}"
    )


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts as a markdown table (floats with 4 significant digits)."""
    columns = columns or list(rows[0])

    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md, and print it."""
    section = f"<!-- {name}:start -->\n## {title}\n\n{body.strip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.S)
    DOC.parent.mkdir(exist_ok=True)
    with open(DOC.with_suffix(".lock"), "w") as lock:  # benchmarks may run side by side
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = DOC.read_text() if DOC.exists() else HEADER
        text = (
            pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text}\n{section}\n"
        )
        DOC.write_text(text)
    print(section)
