"""`braid.core` is sans-I/O (DESIGN §4): it imports no asyncio, threading, os, time, socket or
random, directly or through the braid modules it imports, so that the real node and the
simulator run the same code and a simulated run is decided by its inputs alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
CORE = SRC / "braid" / "core"
FORBIDDEN = {
    "asyncio",
    "threading",
    "os",
    "time",
    "socket",
    "random",
    "subprocess",
    "selectors",
    "multiprocessing",
    "concurrent",
    "sqlite3",
}


def imported_modules(path: Path, package: str = "") -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved against
    `package`). `from braid import limits` counts as importing `braid.limits`, the module
    used, not the package's `__init__` (which the import runs, but core does not use)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if module_path(submodule) is not None else base)
    return found


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])


def module_path(name: str) -> Path | None:
    """The source file of a braid module, or None for anything else."""
    if not name.startswith("braid"):
        return None
    relative = Path(*name.split("."))
    for candidate in (SRC / relative.with_suffix(".py"), SRC / relative / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def reachable_imports(start: Path) -> dict[str, Path]:
    """Every module imported from `start`, following braid's own modules: name → importer."""
    seen: dict[str, Path] = {}
    queue = [start]
    visited: set[Path] = set()
    while queue:
        path = queue.pop()
        if path in visited:
            continue
        visited.add(path)
        for name in imported_modules(path, package_of(path)):
            seen.setdefault(name, path)
            inner = module_path(name)
            if inner is not None and inner.name != "__init__.py":
                queue.append(inner)
    return seen


CORE_MODULES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_nothing_that_does_io_or_keeps_time(path: Path) -> None:
    """No module of braid.core reaches a forbidden module, directly or through braid's."""
    bad = {
        name: str(importer.relative_to(SRC))
        for name, importer in reachable_imports(path).items()
        if name.split(".")[0] in FORBIDDEN
    }
    assert not bad, f"{path.relative_to(SRC)} reaches {bad}"


def test_the_check_has_teeth(tmp_path: Path) -> None:
    """The import scan sees plain, dotted and from-imports (a check that finds nothing
    would pass on anything)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport asyncio.events\nfrom time import monotonic\nfrom . import limits\n"
    )
    assert {"os", "asyncio.events", "time", "braid.limits"} <= imported_modules(sample, "braid")
    assert len(CORE_MODULES) >= 8
