"""Dependencies point one way: core, then settings, then storage, then
runtime, then
webhooks, then engine and api, then roles, then commands, then cli.

Every ``import`` of every module of the package (at the top or inside a
function) is read from its source; a module may import its own part of
the package and the parts below it, never a part above it or beside it
(engine and api never import each other). The private redis-servers of
``wheel.embedded`` and the demo receiver serve development only: no
production module imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RANKS = {
    "wheel": -1,
    "wheel.core": 0,
    "wheel.settings": 1,
    "wheel.storage": 2,
    "wheel.runtime": 3,
    "wheel.webhooks": 4,
    "wheel.engine": 5,
    "wheel.api": 5,
    "api": 6,
    "wheel.roles": 6,
    "wheel.commands": 7,
    "wheel.cli": 8,
}
"""The rank of each part; ``wheel`` itself is the version string."""

DEV_ONLY = {
    "wheel.embedded": {"wheel.commands.dev"},
    "wheel.commands.receiver": {"wheel.cli"},
}
"""Development tooling, and the only modules allowed to import it."""


def part_of(module: str) -> str:
    """The part (a key of RANKS or DEV_ONLY) a module belongs to."""
    for name in sorted({*RANKS, *DEV_ONLY}, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    raise AssertionError(f"{module} belongs to no part of the layout")


def modules() -> dict[str, Path]:
    """Every module of the package (and ``api.py``) by dotted name."""
    found = {"api": ROOT / "api.py"}
    for path in sorted((ROOT / "wheel").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def absolute(package: str, level: int, module: str | None) -> str:
    """The module a relative ``from`` names: ``level`` dots in
    ``package`` (``from ..engine import x`` in wheel.api.app: wheel.engine).
    """
    base = package.split(".")[: len(package.split(".")) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports(path: Path, package: str = "") -> set[str]:
    """The ``wheel`` modules (and ``api``) that ``path`` imports;
    ``package`` is the one it belongs to, for its relative imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = absolute(package, node.level, node.module)
            # ``from wheel.core import ids`` imports wheel.core.ids.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(
            name
            for name in names
            if name == "api" or name == "wheel" or name.startswith("wheel.")
        )
    return found


def violations(module: str, imported: set[str], known: set[str]) -> list[str]:
    """Why each import of ``module`` breaks the layout."""
    source = part_of(module)
    wrong = []
    for target in sorted(imported):
        if target not in known:
            continue  # ``from wheel.core import X`` where X is a name
        part = part_of(target)
        allowed = DEV_ONLY.get(part)
        if allowed is not None:
            if part != source and not any(
                module == a or module.startswith(a + ".") for a in allowed
            ):
                wrong.append(f"{module} imports dev-only {target}")
            continue
        if source in DEV_ONLY or part == source:
            continue
        if RANKS[part] >= RANKS[source]:
            wrong.append(f"{module} ({source}) imports {target} ({part})")
    return wrong


MODULES = modules()


def test_every_module_belongs_to_a_part() -> None:
    """No module sits outside the parts this test knows."""
    for module in MODULES:
        part_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    """A module imports only its own part and the parts below it."""
    found = violations(
        module, imports(MODULES[module], package_of(module)), set(MODULES)
    )
    assert not found, "\n".join(found)


def package_of(module: str) -> str:
    """The package a module's relative imports start from."""
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


@pytest.mark.parametrize(
    ("source", "found", "wrong"),
    [
        ("from ..engine import firer", "wheel.engine.firer", True),
        ("from . import models", "wheel.api.models", False),
        ("from .models import Problem", "wheel.api.models", False),
        ("from ..core import ids", "wheel.core.ids", False),
        ("from ...api import app", "api", True),
    ],
)
def test_relative_imports_are_read_as_absolute(
    tmp_path: Path, source: str, found: str, wrong: bool
) -> None:
    """A relative import is checked as the module it names, so a
    sideways ``from ..engine import x`` in wheel.api cannot slip by."""
    path = tmp_path / "mod.py"
    path.write_text(source + "\n")
    imported = imports(path, "wheel.api")
    assert found in imported
    assert bool(violations("wheel.api.app", imported, set(MODULES))) is wrong


@pytest.mark.parametrize(
    ("module", "imported", "wrong"),
    [
        ("wheel.storage.shards", {"wheel.core.ids"}, False),
        ("wheel.core.ids", {"wheel.storage.keys"}, True),
        ("wheel.engine.firer", {"wheel.api.models"}, True),
        ("wheel.api.timers", {"wheel.engine.worker"}, True),
        ("wheel.roles", {"wheel.api.app"}, False),
        ("wheel.roles", {"wheel.embedded.server"}, True),
        ("wheel.commands.dev", {"wheel.embedded.server"}, False),
        ("wheel.commands.check", {"wheel.commands.receiver"}, True),
        ("wheel.cli", {"wheel.commands.receiver"}, False),
    ],
)
def test_the_rule_itself(module: str, imported: set[str], wrong: bool) -> None:
    """The check tells an upward or sideways import from a downward one."""
    assert bool(violations(module, imported, set(MODULES))) is wrong
