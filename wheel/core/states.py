"""Values shared between Python and the Lua scripts, mapped in one table.

The scripts never spell these strings themselves: :func:`lua_prelude`
defines a Lua constant for each one, and ``wheel.storage.scripts`` puts that
prelude in front of every script. Records store the one-letter codes
(every byte of a pending timer is paid for); Python sees the enums.
"""

from __future__ import annotations

from enum import StrEnum


class TimerState(StrEnum):
    """Where a timer is in its life, as ``GET /timer/{id}`` reports it."""

    PENDING = "pending"
    FIRING = "firing"
    FIRED = "fired"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Verdict(StrEnum):
    """What the claim script decided for one ready entry."""

    FIRE = "fire"
    """Claimed: send the webhook now."""
    SKIP = "skip"
    """Finished, cancelled, gone, or a stale copy: acked and dropped."""
    BUSY = "busy"
    """Another worker's attempt is in flight; left alone for now."""
    DEAD = "dead"
    """Delivered too many times: the timer failed (dead-lettered)."""
    EARLY = "early"
    """Not yet due by this node's clock: to be put back on the wheel."""
    DEFERRED = "deferred"
    """Its destination is saturated: put back on the wheel unclaimed,
    without counting an attempt."""


class Outcome(StrEnum):
    """What follows a webhook attempt (the completion script applies it)."""

    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"
    DEFER = "defer"
    """Not attempted: the destination was saturated; try again later
    without counting an attempt."""


class Code(StrEnum):
    """Return codes shared by the scripts."""

    DONE = "done"
    STALE = "stale"
    """The caller's claim is no longer current: nothing changed."""
    EXISTS = "exists"
    MISMATCH = "mismatch"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    NOT_OURS = "not_ours"
    """A lease held by another ticker."""
    FULL = "full"
    """The shard's ready stream is at its bound (backpressure)."""
    EARLY = "early"
    """Not yet due by Redis' clock: nothing changed (try later)."""


# The one table: Python value -> the string the scripts use. States are
# one letter because records store them; the rest only travel in replies.
LUA_NAMES: dict[str, dict[StrEnum, str]] = {
    "S": {
        TimerState.PENDING: "p",
        TimerState.FIRING: "r",
        TimerState.FIRED: "f",
        TimerState.FAILED: "x",
        TimerState.CANCELLED: "c",
    },
    "V": {verdict: verdict.value for verdict in Verdict},
    "O": {outcome: outcome.value for outcome in Outcome},
    "C": {code: code.value for code in Code},
}

STATE_OF_CODE: dict[str, TimerState] = {
    code: state  # type: ignore[misc]
    for state, code in LUA_NAMES["S"].items()
}
"""A record's state letter -> :class:`TimerState`."""


def state_code(state: TimerState) -> str:
    """The letter a record stores for ``state``."""
    return LUA_NAMES["S"][state]


def lua_prelude() -> str:
    """Lua ``local`` constants for every shared value, e.g. ``S_PENDING``."""
    lines = []
    for group, table in LUA_NAMES.items():
        for member, text in table.items():
            lines.append(f"local {group}_{member.name} = '{text}'")
    return "\n".join(lines) + "\n"
