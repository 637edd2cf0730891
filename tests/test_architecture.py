"""The package's structure: no import circles between its subpackages and modules."""

from __future__ import annotations

import ast
from pathlib import Path

import skcrystal

PACKAGE = Path(skcrystal.__file__).parent


def _unit(module: str) -> str | None:
    """The subpackage or top-level module a module belongs to (``skcrystal.hub``,
    ``skcrystal.estimators``); None for the package itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else None


def import_edges(package: Path) -> dict[str, set[str]]:
    """Which units import which, counting every import (function-level ones too)."""
    root = package.parent
    edges: dict[str, set[str]] = {}
    for file in package.rglob("*.py"):
        module = ".".join(file.relative_to(root).with_suffix("").parts)
        source = _unit(module.removesuffix(".__init__"))
        if source is None:
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                path = root.joinpath(*target.split("."))
                is_module = path.with_suffix(".py").exists() or (path / "__init__.py").exists()
                if target.startswith(f"{package.name}.") and is_module:
                    unit = _unit(target)
                    if unit != source:
                        edges.setdefault(source, set()).add(unit)
    return edges


def import_cycles(package: Path) -> list[str]:
    """``"a -> b"`` for each import of unit ``b`` by unit ``a`` that leads back to ``a``."""
    edges = import_edges(package)
    cycles = []
    for a in sorted(edges):
        for b in sorted(edges[a]):
            seen, stack = set(), [b]
            while stack:
                unit = stack.pop()
                if unit == a:
                    cycles.append(f"{a} -> {b}")
                    break
                if unit not in seen:
                    seen.add(unit)
                    stack.extend(edges.get(unit, ()))
    return cycles


def test_no_import_cycles_between_subpackages():
    cycles = import_cycles(PACKAGE)
    assert not cycles, "imports that lead back to the importer:\n" + "\n".join(cycles)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("def f():\n    from pkg.top import g\n")
    (package / "top.py").write_text("from pkg.sub import f\n")
    (package / "leaf.py").write_text("import pkg.top\n")
    assert import_cycles(package) == ["pkg.sub -> pkg.top", "pkg.top -> pkg.sub"]
