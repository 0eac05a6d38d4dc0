"""The Lua scripts, read once from ``lua/``, each with the shared prelude.

Every script is sent as ``EVALSHA``; its text is the constants of
:mod:`wheel.core.states` and :mod:`wheel.core.buckets`, then the
definitions of ``lua/_prelude.lua`` that it uses, then the script
itself, so the SHA1 is fixed per release. The connection layer loads
them into a node when it answers ``NOSCRIPT``.
"""

from __future__ import annotations

import hashlib
import re
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


_DEFINITION = re.compile(r"local (?:function )?([A-Za-z_]\w*)")
"""A top-level definition of the prelude (indented ones are inside a
function)."""


_COMMENT = re.compile(r"--[^\n]*")


def prelude_parts(prelude: str) -> tuple[str, list[tuple[str, str]]]:
    """The prelude's opening comment, and its top-level definitions in
    order: (name, text from the comment lines just above it to the next
    one's)."""
    lines = prelude.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _DEFINITION.match(line)]
    begins = []
    for start in starts:
        begin = start
        while begin > 0 and lines[begin - 1].startswith("--"):
            begin -= 1
        begins.append(begin)
    parts = []
    for k, (start, begin) in enumerate(zip(starts, begins, strict=True)):
        end = begins[k + 1] if k + 1 < len(begins) else len(lines)
        found = _DEFINITION.match(lines[start])
        assert found is not None
        parts.append((found.group(1), "".join(lines[begin:end])))
    return "".join(lines[: begins[0]] if begins else lines), parts


def prelude_for(body: str, prelude: str) -> str:
    """The prelude's definitions that ``body`` uses, directly or through
    another definition it uses, in the prelude's order.

    Lua makes a script's local functions anew on every call, so an unused
    helper is not free: with all of them, an ``EVALSHA`` of ``get`` took
    1.3 us longer (6.9 against 5.6 us a call, in ``INFO commandstats``).
    """
    opening, parts = prelude_parts(prelude)
    used: set[str] = set()
    # A name in a comment is no use; one in a string only costs a helper.
    code = _COMMENT.sub("", body)
    grew = True
    while grew:
        grew = False
        for name, part in parts:
            if name not in used and re.search(rf"\b{name}\b", code):
                used.add(name)
                code += _COMMENT.sub("", part)
                grew = True
    return opening + "".join(part for name, part in parts if name in used)


def _build() -> dict[str, Script]:
    constants = _constants()
    prelude = _read("_prelude")
    scripts = {}
    for name in NAMES:
        body = _read(name)
        source = (constants + prelude_for(body, prelude) + body).encode()
        sha = hashlib.sha1(source).hexdigest().encode()
        scripts[name] = Script(name, source, sha)
    return scripts


SCRIPTS: dict[str, Script] = _build()
"""Every script by name."""
