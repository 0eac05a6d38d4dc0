"""The Lua scripts, read once from ``lua/``, each with the shared prelude.

Every script is sent as ``EVALSHA``; its text is the constants of
:mod:`wheel.core.states` and :mod:`wheel.core.buckets`, then
``lua/_prelude.lua``, then the script itself, so the SHA1 is fixed per
release. The connection layer loads them into a node when it answers
``NOSCRIPT``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from wheel.core import buckets
from wheel.core.states import lua_prelude

NAMES = (
    "create",
    "get",
    "cancel",
    "reschedule",
    "walk",
    "advance",
    "cascade",
    "claim",
    "complete",
    "requeue",
    "retry",
    "acquire",
    "release",
    "beat",
    "drop_consumer",
    "create_schedule",
    "patch_schedule",
    "delete_schedule",
    "roll",
    "read_schedules",
    "import_finished",
)


def _read(name: str) -> str:
    return (
        resources.files("wheel.storage") / "lua" / f"{name}.lua"
    ).read_text()


def _constants() -> str:
    widths = {
        "MINUTE_MS": buckets.MINUTE_MS,
        "HOUR_MS": buckets.HOUR_MS,
        "DAY_MS": buckets.DAY_MS,
        "HOUR_LEAD_MS": buckets.HOUR_LEAD_MS,
        "DAY_LEAD_MS": buckets.DAY_LEAD_MS,
    }
    return lua_prelude() + "".join(
        f"local {name} = {value}\n" for name, value in widths.items()
    )


@dataclass(frozen=True, slots=True)
class Script:
    """One script: its name, full source and SHA1."""

    name: str
    source: bytes
    sha: bytes


def _build() -> dict[str, Script]:
    head = _constants() + _read("_prelude")
    scripts = {}
    for name in NAMES:
        source = (head + _read(name)).encode()
        sha = hashlib.sha1(source).hexdigest().encode()
        scripts[name] = Script(name, source, sha)
    return scripts


SCRIPTS: dict[str, Script] = _build()
"""Every script by name."""
