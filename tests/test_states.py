"""Values shared with the Lua scripts: one table, one prelude."""

from __future__ import annotations

import re
from enum import StrEnum
from importlib import resources

import pytest

from wheel.core.states import (
    LUA_NAMES,
    STATE_OF_CODE,
    Code,
    Outcome,
    TimerState,
    Verdict,
    lua_prelude,
    state_code,
)
from wheel.storage import scripts

LUA_DIR = resources.files("wheel.storage") / "lua"
LUA_FILES = sorted(p.name for p in LUA_DIR.iterdir() if p.name.endswith("lua"))
SHARED_NAME = re.compile(r"\b([SVOC]_[A-Z][A-Z0-9_]*)\b")
LOCAL_LINE = re.compile(r"local ([A-Z]_[A-Z_]+) = '([a-z_]+)'")

EXPECTED = {
    "S_PENDING": "p",
    "S_FIRING": "r",
    "S_FIRED": "f",
    "S_FAILED": "x",
    "S_CANCELLED": "c",
    "V_FIRE": "fire",
    "V_SKIP": "skip",
    "V_BUSY": "busy",
    "V_DEAD": "dead",
    "V_EARLY": "early",
    "V_DEFERRED": "deferred",
    "O_OK": "ok",
    "O_RETRY": "retry",
    "O_FAIL": "fail",
    "O_DEFER": "defer",
    "C_DONE": "done",
    "C_STALE": "stale",
    "C_EXISTS": "exists",
    "C_MISMATCH": "mismatch",
    "C_NOT_FOUND": "not_found",
    "C_CONFLICT": "conflict",
    "C_NOT_OURS": "not_ours",
    "C_FULL": "full",
    "C_EARLY": "early",
}


def _prelude_constants() -> dict[str, str]:
    lines = lua_prelude().splitlines()
    found = [LOCAL_LINE.fullmatch(line) for line in lines]
    assert all(found), lines
    return {m.group(1): m.group(2) for m in found if m}


def test_prelude_defines_every_constant() -> None:
    """The prelude has one Lua local per shared value, as documented."""
    assert _prelude_constants() == EXPECTED


@pytest.mark.parametrize(
    ("group", "enum"),
    [("S", TimerState), ("V", Verdict), ("O", Outcome), ("C", Code)],
)
def test_every_enum_member_is_in_the_table(
    group: str, enum: type[StrEnum]
) -> None:
    """Each enum member has a Lua string, and only members of its enum."""
    table = LUA_NAMES[group]
    assert set(table) == set(enum)
    for member, text in table.items():
        assert _prelude_constants()[f"{group}_{member.name}"] == text


@pytest.mark.parametrize("group", ["V", "O", "C"])
def test_reply_values_are_the_enum_values(group: str) -> None:
    """Verdicts, outcomes and codes travel as the enum's own value."""
    for member, text in LUA_NAMES[group].items():
        assert text == member.value


def test_prelude_runs_in_lua() -> None:
    """Lua 5.1 (as in Redis) reads each constant back as its string."""
    lua51 = pytest.importorskip("lupa.lua51")
    runtime = lua51.LuaRuntime()
    names = ", ".join(EXPECTED)
    values = runtime.execute(lua_prelude() + f"return {{{names}}}")
    assert list(values.values()) == list(EXPECTED.values())


@pytest.mark.parametrize("name", LUA_FILES)
def test_every_shared_name_a_script_uses_is_defined(name: str) -> None:
    """Every S_, V_, O_ and C_ name in a .lua file comes from the prelude."""
    used = set(SHARED_NAME.findall((LUA_DIR / name).read_text()))
    assert used <= set(_prelude_constants()), used - set(EXPECTED)


def test_the_scripts_use_the_shared_names() -> None:
    """The scan finds names at all (a broken regex would pass vacuously)."""
    used = set()
    for name in LUA_FILES:
        used |= set(SHARED_NAME.findall((LUA_DIR / name).read_text()))
    assert {"S_PENDING", "V_FIRE", "O_RETRY", "C_DONE"} <= used


@pytest.mark.parametrize("name", scripts.NAMES)
def test_every_script_compiles_with_its_prelude(name: str) -> None:
    """Each full script (constants, prelude, body) is valid Lua 5.1."""
    lua51 = pytest.importorskip("lupa.lua51")
    runtime = lua51.LuaRuntime()
    compile_error = runtime.eval(
        "function(s) local _, err = loadstring(s); return err end"
    )
    assert compile_error(scripts.SCRIPTS[name].source) is None


def test_state_letters_are_unique_single_letters() -> None:
    """Each state has its own one-letter code."""
    letters = list(LUA_NAMES["S"].values())
    assert len(set(letters)) == len(letters) == len(TimerState)
    assert all(len(letter) == 1 for letter in letters)


@pytest.mark.parametrize("state", list(TimerState))
def test_state_of_code_inverts_state_code(state: TimerState) -> None:
    """A state's letter maps back to the state."""
    assert STATE_OF_CODE[state_code(state)] is state


def test_state_of_code_has_only_the_state_letters() -> None:
    """STATE_OF_CODE knows exactly the letters records store."""
    assert set(STATE_OF_CODE) == {state_code(s) for s in TimerState}
    assert set(STATE_OF_CODE.values()) == set(TimerState)
