"""Each script carries only the prelude definitions it uses (pure logic;
the scripts' behaviour against Redis is in test_scripts.py)."""

from __future__ import annotations

import importlib
import re

from wheel.storage import scripts
from wheel.storage.scripts import SCRIPTS, prelude_for, prelude_parts

PRELUDE = scripts._read("_prelude")


def _defined(source: str) -> set[str]:
    return set(
        re.findall(r"^local (?:function )?([A-Za-z_]\w*)", source, re.M)
    )


def test_the_split_loses_nothing() -> None:
    opening, parts = prelude_parts(PRELUDE)
    assert opening + "".join(text for _, text in parts) == PRELUDE
    assert opening.startswith("-- _prelude.lua")
    # Each part is one definition with the comment written above it.
    names = [name for name, _ in parts]
    assert "schedule" in names and "load_request" in names
    schedule = dict(parts)["schedule"]
    assert schedule.startswith("-- Put timer `id` due at `due` on the wheel")


def test_every_script_compiles_with_its_prelude() -> None:
    # lupa is a dev dependency: a missing one fails here, never skips.
    lua51 = importlib.import_module("lupa.lua51")
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    load = runtime.eval("loadstring")
    for name, script in SCRIPTS.items():
        # loadstring answers the function, or nil and the error.
        result = load(script.source.decode(), name)
        compiled, error = result if isinstance(result, tuple) else (result, "")
        assert compiled is not None, f"{name}: {error}"


def test_a_script_gets_what_it_uses_and_no_more() -> None:
    get = SCRIPTS["get"].source.decode()
    defined = _defined(get)
    assert {"now_ms", "load_request", "history_of", "HISTORY_FIELDS"} <= (
        defined
    )
    assert not {"schedule", "write_marks", "keep", "store_history"} & defined


def test_a_helper_brings_the_helpers_it_calls_in_order() -> None:
    prelude = prelude_for("schedule(i, m, 1, c, 'h', 2, id, 5, 0)", PRELUDE)
    order = [name for name, _ in prelude_parts(prelude)[1]]
    # schedule() calls place(), which reads WIDTH and calls cascade_ms().
    assert order == ["fmt", "WIDTH", "LEAD", "cascade_ms", "place", "schedule"]


def test_a_name_in_a_comment_brings_nothing() -> None:
    prelude = prelude_for("-- keep(), write_marks()\nreturn 1", PRELUDE)
    assert prelude_parts(prelude)[1] == []
