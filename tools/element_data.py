"""Write ``skcrystal/graphs/element_data.csv``: the mendeleev values the CGCNN table needs.

The 92-dim CGCNN atom features (:mod:`skcrystal.graphs.atom_features`) take three element
properties from the `mendeleev` package: Pauling electronegativity, Pyykko's single-bond
covalent radius (pm) and the electron affinity (eV). They are written once to a small CSV
shipped with the package, so that installing skcrystal does not pull in mendeleev and its
database stack. Run after upgrading mendeleev (``pip install mendeleev``) and review the diff:

    python tools/element_data.py

``tests/test_atom_features.py`` checks that the shipped file equals what this script writes.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "skcrystal" / "graphs" / "element_data.csv"
COLUMNS = ("en_pauling", "covalent_radius_pyykko", "electron_affinity")
MAX_Z = 100


def element_data_csv() -> str:
    """The CSV text: a comment naming the source, then ``Z,symbol`` and :data:`COLUMNS`."""
    import mendeleev
    from mendeleev.fetch import fetch_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = fetch_table("elements").set_index("atomic_number")
    lines = [
        f"# mendeleev {mendeleev.__version__}, written by tools/element_data.py; empty = no value",
        ",".join(("Z", "symbol", *COLUMNS)),
    ]
    for z in range(1, MAX_Z + 1):
        row = table.loc[z]
        values = ["" if _missing(row[c]) else repr(float(row[c])) for c in COLUMNS]
        lines.append(",".join((str(z), row["symbol"], *values)))
    return "\n".join(lines) + "\n"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


if __name__ == "__main__":
    OUTPUT.write_text(element_data_csv())
    print(f"wrote {OUTPUT}")
