"""The README's configuration table matches the settings object."""

from __future__ import annotations

import re
from pathlib import Path

from wheel.settings import Settings, env_name, field_names

ROW = re.compile(r"^\| `(WHEEL_[A-Z_]+)` \| `([^`]*)` \|", re.MULTILINE)


def test_settings_table_lists_every_setting_with_its_default(
    project_root: Path,
) -> None:
    """Every setting is in the README table with its real default."""
    text = (project_root / "README.md").read_text()
    table = dict(ROW.findall(text))
    defaults = Settings()
    expected = {
        env_name(name): str(getattr(defaults, name)) for name in field_names()
    }
    assert table == expected


def test_readme_names_the_two_setup_commands(project_root: Path) -> None:
    """The README starts with the commands CI and new users run."""
    text = (project_root / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make dev" in quick_start
    assert "make test" in quick_start
    ci = (project_root / ".ci" / "run").read_text()
    assert "make test" in ci


def test_where_things_are_names_real_files(project_root: Path) -> None:
    """Every folder and file the "Where things are" map names exists, and
    every folder of the package is on it."""
    text = (project_root / "README.md").read_text()
    section = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    folders = set(re.findall(r"^\| `(wheel/[a-z_]+/)`", section, re.M))
    packages = {
        f"wheel/{path.name}/"
        for path in (project_root / "wheel").iterdir()
        if (path / "__init__.py").is_file()
    }
    assert folders == packages
    for folder in folders:
        row = next(
            line for line in section.splitlines() if f"`{folder}`" in line
        )
        for name in re.findall(r"`([a-z_]+\.py|[a-z_]+/)`", row):
            if name != folder:
                assert (project_root / folder / name).exists(), name
    for path in re.findall(r"`(wheel/[a-z_/]+\.py|api\.py)`", section):
        assert (project_root / path).exists(), path
