"""The ``wheel`` import name is this project's, not the PyPA tool's."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

import wheel


def test_import_wheel_is_this_project(project_root: Path) -> None:
    """``import wheel`` gives this project's package from project_root."""
    package_file = Path(wheel.__file__).resolve()
    assert package_file == project_root / "wheel" / "__init__.py"
    assert (package_file.parent / "core" / "delays.py").is_file()


def test_pypa_wheel_distribution_is_not_installed() -> None:
    """The PyPA "wheel" distribution, which would shadow us, is absent."""
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("wheel")


def test_installed_distribution_matches_the_package() -> None:
    """The timer-wheel distribution's version is ``wheel.__version__``."""
    assert importlib.metadata.version("timer-wheel") == wheel.__version__


def test_no_installed_distribution_ships_a_wheel_package() -> None:
    """No other installed distribution provides a top-level ``wheel``."""
    owners = importlib.metadata.packages_distributions().get("wheel", [])
    assert set(owners) <= {"timer-wheel"}
