"""What can go wrong with a Redis call: every reply type, classified once.

redis-py raises its own classes for a few error replies and a plain
``ResponseError`` for the rest; inside a Lua script Redis 6.2 wraps the
error of a command in a script error (``ERR Error running script ...:
-NOREPLICAS ...``), 7 passes its code on. :func:`classify` reads all of
them into one :class:`Kind`, which says whether the call may be sent
again and whether it was applied. The connection layer acts on the kind
and raises the errors below; everything above it catches these names
only (and :data:`REDIS_ERRORS` where any failure of a call is meant).
"""

from __future__ import annotations

import asyncio
import re
from enum import Enum
from typing import Any

from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError


class Kind(Enum):
    """What a failed call means, and what the connection layer does."""

    LOST = "lost"
    """Transport: refused, reset, timed out. Sent again on a fresh
    connection; if it had been written, it may have been applied."""
    BUSY = "busy"
    """The node cannot serve now (LOADING, BUSY, MASTERDOWN, CLUSTERDOWN,
    TRYAGAIN, a demoted master's READONLY). Not applied; sent again after
    a pause, to a re-read slot map."""
    REFUSED = "refused"
    """The write was refused (NOREPLICAS, MISCONF): not applied; sent
    again after a pause until the caller's deadline."""
    FULL = "full"
    """Refused at maxmemory (OOM): not applied; :class:`StoreFull`."""
    MOVED = "moved"
    """The slot lives elsewhere now: follow it, update the map."""
    ASK = "ask"
    """The slot is migrating: ask the other node once (``ASKING``)."""
    NOSCRIPT = "noscript"
    """The node lacks the script: load every script there, send again."""
    BUG = "bug"
    """Anything else (a wrong type, a script error): the caller's bug,
    raised as it is and never sent again."""


_CODES = {
    "LOADING": Kind.BUSY,
    "BUSY": Kind.BUSY,
    "MASTERDOWN": Kind.BUSY,
    "CLUSTERDOWN": Kind.BUSY,
    "TRYAGAIN": Kind.BUSY,
    "READONLY": Kind.BUSY,
    "NOREPLICAS": Kind.REFUSED,
    "MISCONF": Kind.REFUSED,
    "OOM": Kind.FULL,
}
# The code of an error reply, at its start (7, and plain commands) or
# after a dash inside a 6.2 script error ("...: -NOREPLICAS Not enough").
# \b keeps BUSYGROUP and BUSYKEY (not transient) out of BUSY.
_CODE = re.compile(r"(?:^|-)(" + "|".join(_CODES) + r")\b")


def classify(exc: BaseException) -> Kind:
    """The kind of a failed call's error."""
    if isinstance(exc, MovedError):  # before AskError: a subclass of it
        return Kind.MOVED
    if isinstance(exc, AskError):
        return Kind.ASK
    if isinstance(exc, NoScriptError):
        return Kind.NOSCRIPT
    if isinstance(exc, OutOfMemoryError):
        return Kind.FULL
    if isinstance(exc, ClusterDownError | TryAgainError | ReadOnlyError):
        return Kind.BUSY  # MASTERDOWN is a ClusterDownError too
    if isinstance(exc, ResponseError):
        found = _CODE.search(str(exc))
        if found is None:
            # redis-py strips the code of the errors it maps to a class.
            code = getattr(exc, "status_code", None) or ""
            return _CODES.get(code, Kind.BUG)
        return _CODES[found.group(1)]
    # LOADING comes as BusyLoadingError, a ConnectionError subclass.
    if isinstance(exc, ConnectionError) and "loading" in str(exc).lower():
        return Kind.BUSY
    if isinstance(exc, ConnectionError | RedisTimeoutError | OSError):
        return Kind.LOST
    return Kind.BUG


def no_group(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis saying the consumer group (or its stream)
    does not exist: an answer, not a failure (a flushed Redis, a stream
    no ticker has written yet)."""
    text = str(exc)
    return isinstance(exc, ResponseError) and (
        text.startswith("NOGROUP") or "no such key" in text
    )


def group_exists(exc: BaseException) -> bool:
    """Whether ``exc`` is ``XGROUP CREATE`` finding the group there."""
    return isinstance(exc, ResponseError) and str(exc).startswith("BUSYGROUP")


class RedisUnavailable(Exception):
    """Redis did not apply the call within the caller's deadline.

    ``maybe_applied`` is True when some attempt was written to Redis and
    its reply never came (a lost reply, a paused node): the call may have
    run. False means no attempt ran: it was never sent, or every reply
    was a refusal.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class Overloaded(RedisUnavailable):
    """The node's queue of calls is full: refused at once, never sent."""


class StoreFull(Exception):
    """Redis refused a write: it is at ``maxmemory`` (noeviction)."""


class NotReplicated(Exception):
    """A write ran on the master but not enough replicas confirmed it.

    ``reply`` is the write's own reply: the write *was* applied on the
    master, and a caller that can live with that uses it.
    """

    def __init__(self, confirmed: int, wanted: int, reply: object) -> None:
        super().__init__(
            f"only {confirmed} of {wanted} replicas confirmed the write"
        )
        self.confirmed = confirmed
        self.wanted = wanted
        self.reply = reply


class OutcomeUnknown(Exception):
    """A create that may exist: sent and its reply lost, or applied on the
    master and not confirmed by enough replicas (it may not survive a
    failover). ``timer_id`` is the id it used: reading it tells.
    ``schedule``: the create was of a schedule (read at /schedules/{id},
    and no Idempotency-Key makes a second POST safe)."""

    def __init__(
        self, timer_id: bytes, reason: str, *, schedule: bool = False
    ) -> None:
        super().__init__(reason)
        self.timer_id = timer_id
        self.schedule = schedule


REDIS_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    RedisUnavailable,
    StoreFull,
    NotReplicated,
    OSError,
)
"""Every failure a Redis call can end in, for a caller that retries any."""


def describe(exc: BaseException) -> str:
    """A short one-line description of an error, for logs and replies."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a reply's error as seen, for a caller that stopped awaiting.

    A caller whose deadline passed no longer awaits its reply; asyncio
    would log each such error as never retrieved (a traceback per
    timed-out call after an outage).
    """
    if not future.cancelled():
        future.exception()
