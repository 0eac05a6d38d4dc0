"""The code under test: a checkout with its own venv, and its commit.

Standard library only, like every helper of this folder.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
_SETTINGS_SCRIPT = """
import json
from wheel.settings import Settings, field_names
s = Settings()
print(json.dumps({f: getattr(s, f) for f in field_names()}, default=str))
"""


def clean_env() -> dict[str, str]:
    """This process' environment without any WHEEL_* variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Code:
    """A checkout whose own venv runs the roles (``DIR/.venv``).

    Only the ``WHEEL_*`` settings that this code knows are passed to it
    (an older release refuses unknown ones); the rest are dropped and
    listed in :attr:`dropped`.
    """

    root: Path
    dropped: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not self.timer_wheel.exists():
            raise SystemExit(
                f"{self.timer_wheel} is missing: run "
                f"'cd {self.root} && ~/.local/bin/uv sync --locked "
                "--group bench' first"
            )

    @property
    def python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    @property
    def timer_wheel(self) -> Path:
        return self.root / ".venv" / "bin" / "timer-wheel"

    @functools.cached_property
    def defaults(self) -> dict[str, object]:
        """Every setting of this code with its default value."""
        done = subprocess.run(
            [str(self.python), "-c", _SETTINGS_SCRIPT],
            cwd=self.root,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout)

    def knows(self, name: str) -> bool:
        """Whether setting ``name`` (field name) exists in this code."""
        return name in self.defaults

    @functools.cached_property
    def commit(self) -> str:
        return code_version(self.root)

    def env(self, passthrough: bool = True, **wheel: object) -> dict[str, str]:
        """A child environment with ``WHEEL_<NAME>`` for each of ``wheel``
        this code knows; with ``passthrough`` also the harness' own
        ``WHEEL_*`` variables (the explicit ones win)."""
        env = clean_env()
        if passthrough:
            for key, value in os.environ.items():
                if key.startswith("WHEEL_"):
                    self._put(env, key[6:].lower(), value)
        for name, value in wheel.items():
            if value is not None:
                self._put(env, name, value)
        return env

    def _put(self, env: dict[str, str], name: str, value: object) -> None:
        if not self.knows(name):
            self.dropped.add(f"WHEEL_{name.upper()}")
            return
        if isinstance(value, bool):
            value = int(value)
        env[f"WHEEL_{name.upper()}"] = str(value)

    def effective(self, env: dict[str, str]) -> dict[str, object]:
        """The settings a role started with ``env`` runs with."""
        out = dict(self.defaults)
        for key, value in env.items():
            if key.startswith("WHEEL_") and key[6:].lower() in out:
                out[key[6:].lower()] = value
        out.pop("redis_url", None)
        return out

    def describe(self) -> dict[str, object]:
        return {
            "dir": str(self.root),
            "commit": self.commit,
            "dropped_settings": sorted(self.dropped),
        }


def code_version(root: Path = REPO_DIR) -> str:
    """The commit of the checkout at ``root``, '+dirty' when its wheel/
    or api.py differ from it (others edit them while benchmarks run).

    A folder made with ``git archive`` has no history: its commit is
    read from a ``.commit-id`` file (``prepare_old.sh`` writes one).
    """
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if Path(top).resolve() != Path(root).resolve():
            raise subprocess.CalledProcessError(1, "git")
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "wheel", "api.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        marker = Path(root) / ".commit-id"
        if marker.exists():
            return marker.read_text().strip()[:12]
        return f"unknown ({root})"
    return commit + ("+dirty" if dirty else "")
