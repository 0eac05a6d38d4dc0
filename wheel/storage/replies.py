"""What the scripts and commands of a shard answer, as typed values.

Every reply is decoded here into a small frozen ``msgspec.Struct``
(built in C: about a tenth of a frozen dataclass's cost, which counted on
the paths that decode one per timer); nothing above the storage layer
sees a raw Redis reply.
"""

from __future__ import annotations

from typing import Any

import msgspec

from wheel.core.buckets import Bucket, Level
from wheel.core.schedules import Definition, unpack_definition
from wheel.core.states import (
    STATE_OF_CODE,
    Code,
    TimerState,
    Verdict,
)


def as_int(value: Any) -> int:
    """An integer reply (or bulk string holding one)."""
    return int(value)


def as_text(value: Any) -> str:
    """A bulk string reply as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Created(msgspec.Struct, frozen=True):
    """Reply of ``create``."""

    code: Code
    timer_id: bytes
    due_ms: int
    now_ms: int


class Completed(msgspec.Struct, frozen=True):
    """Reply of ``complete``: its code, and whether enough replicas
    confirmed it in time (always True without replica acks)."""

    code: Code
    replicated: bool = True


class PastAttempt(msgspec.Struct, frozen=True):
    """One webhook attempt as a timer's history keeps it."""

    sent_ms: int
    duration_ms: int
    result: str
    """The HTTP status (digits), or why no answer came."""


class Record(msgspec.Struct, frozen=True):
    """A timer as ``get`` reads it (from its record or finished record)."""

    state: TimerState
    due_ms: int
    attempts: int
    now_ms: int
    next_ms: int | None = None
    finished_ms: int | None = None
    result: str = ""
    url: str = ""
    """The webhook's URL; a finished record does not keep it."""
    request: bytes = b""
    """The timer's own request, packed; empty for the default webhook."""
    history: tuple[PastAttempt, ...] = ()
    claim_entry: bytes = b""
    """The ready-stream entry a firing timer was claimed from."""


class Advanced(msgspec.Struct, frozen=True):
    """Reply of ``advance``: ids moved; more due ids left behind; the
    earliest due time left in the buckets (None when they are empty)."""

    code: Code
    moved: int
    more: bool
    now_ms: int
    next_ms: int | None = None


class Cascaded(msgspec.Struct, frozen=True):
    """Reply of ``cascade``: members moved and still in the bucket."""

    code: Code
    moved: int
    left: int
    now_ms: int


class Entry(msgspec.Struct, frozen=True):
    """One ready-stream entry: its stream id, timer id and schedule."""

    entry_id: bytes
    timer_id: bytes
    sched_ms: int


class Claim(msgspec.Struct, frozen=True):
    """The claim script's verdict on one entry."""

    verdict: Verdict
    url: str = ""
    attempt: int = 0
    due_ms: int = 0
    wait_ms: int = 0
    request: bytes = b""
    """The timer's own request (packed), empty for the default webhook."""
    schedule_id: bytes = b""
    """The schedule whose occurrence the timer is; empty for a timer of
    its own."""
    deferral: int = 0
    """V_DEFERRED: which of the claim's saturated destinations (from 1)."""


class Consumer(msgspec.Struct, frozen=True):
    """A consumer of the workers' group on one ready stream."""

    name: str
    pending: int
    idle_ms: int


class DeadLetter(msgspec.Struct, frozen=True):
    """A timer that failed, as its shard's dead-letter stream keeps it."""

    entry_id: bytes
    timer_id: bytes
    url: str
    attempts: int
    error: str
    at_ms: int


class Survey(msgspec.Struct, frozen=True):
    """Figures of one shard; ``earliest_due_ms`` of a timer due or on its
    way (None when the shard has nothing in minute buckets or streams)."""

    unfinished: int
    ready: int
    in_flight: int
    earliest_due_ms: int | None
    dead_letters: int


def bucket_of(member: bytes) -> Bucket:
    """The bucket an index member names (``m29000000``)."""
    text = member.decode()
    return Bucket(Level(text[0]), int(text[1:]))


def entry_of(item: list[Any]) -> Entry:
    """A ready-stream entry from its ``XRANGE``/``XREADGROUP`` item."""
    entry_id, fields = item[0], item[1]
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return Entry(entry_id, values[b"i"], int(values[b"s"]))


def dead_letter_of(item: list[Any]) -> DeadLetter:
    """A dead letter from its stream item."""
    entry_id, fields = item[0], item[1]
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return DeadLetter(
        entry_id,
        values[b"i"],
        as_text(values.get(b"u", b"")),
        int(values[b"a"]),
        as_text(values[b"e"]),
        int(values[b"t"]),
    )


def claim_of(item: list[Any]) -> Claim:
    """One verdict of the claim script's reply."""
    verdict = Verdict(as_text(item[0]))
    if verdict is Verdict.FIRE:
        return Claim(
            verdict,
            as_text(item[1]),
            as_int(item[2]),
            due_ms=as_int(item[3]),
            request=item[4] if len(item) > 4 else b"",
            schedule_id=item[5] if len(item) > 5 else b"",
        )
    if verdict is Verdict.BUSY:
        return Claim(verdict, wait_ms=as_int(item[1]))
    if verdict is Verdict.EARLY:
        return Claim(verdict, due_ms=as_int(item[1]))
    if verdict is Verdict.DEFERRED:
        return Claim(
            verdict, wait_ms=as_int(item[1]), deferral=as_int(item[2])
        )
    return Claim(verdict)


def history_of(text: bytes | str) -> tuple[PastAttempt, ...]:
    """Attempts kept as lines of ``<sent ms>,<duration ms>,<result>``."""
    lines = as_text(text).split("\n") if text else []
    out = []
    for line in lines:
        sent, took, result = line.split(",", 2)
        out.append(PastAttempt(int(sent), int(took), result))
    return tuple(out)


def record_of(item: list[Any], now_ms: int) -> Record | None:
    """One timer of ``get.lua``'s reply."""
    if not item:
        return None
    if item[0] == b"r":
        _, state, due, attempts, next_ms, result, url, request, past, claim = (
            item
        )
        entry = as_text(claim).split("|")
        return Record(
            STATE_OF_CODE[as_text(state)],
            as_int(due),
            as_int(attempts),
            now_ms,
            next_ms=as_int(next_ms) if next_ms else None,
            result=as_text(result),
            url=as_text(url),
            request=request,
            history=history_of(past),
            claim_entry=entry[1].encode() if len(entry) == 3 else b"",
        )
    return unpack_finished(as_text(item[1]), now_ms, item[2], item[3])


def unpack_finished(
    packed: str, now_ms: int, request: bytes = b"", past: bytes = b""
) -> Record:
    """A finished record from its packed form
    ``<s><attempts>[:<duration ms>],due,+ms,result``, with the request
    and earlier attempts kept beside it.

    When the head names a duration the record ended with an attempt
    (fired, or failed by its receiver), which ends its history.
    """
    head, due, delta, result = packed.split(",", 3)
    due_ms = int(due)
    finished_ms = due_ms + int(delta)
    attempts, _, took = head[1:].partition(":")
    history = history_of(past)
    if took:
        history += (PastAttempt(finished_ms - int(took), int(took), result),)
    return Record(
        STATE_OF_CODE[head[0]],
        due_ms,
        int(attempts),
        now_ms,
        finished_ms=finished_ms,
        result=result,
        request=request,
        history=history,
    )


def consumer_of(item: list[Any]) -> Consumer:
    """One consumer of an ``XINFO CONSUMERS`` reply (RESP2 field list)."""
    values = dict(zip(item[::2], item[1::2], strict=True))
    return Consumer(
        as_text(values[b"name"]),
        as_int(values[b"pending"]),
        as_int(values[b"idle"]),
    )


HEALTHY_LAG_S = 2
"""A replica whose last ack is older than this is not counted healthy
(Redis reports the lag in whole seconds)."""


def healthy_replicas(info: bytes) -> int:
    """Replicas of a primary that are online and caught up, from its
    ``INFO replication``: a stopped replica stays connected for a while,
    but its lag grows."""
    count = 0
    for line in info.decode(errors="replace").splitlines():
        if not line.startswith("slave") or ":" not in line:
            continue
        fields = dict(
            part.split("=", 1)
            for part in line.split(":", 1)[1].split(",")
            if "=" in part
        )
        if (
            fields.get("state") == "online"
            and fields.get("lag", "0").isdigit()
            and int(fields.get("lag", "0")) <= HEALTHY_LAG_S
        ):
            count += 1
    return count


class ScheduleRecord(msgspec.Struct, frozen=True):
    """A schedule as its record holds it."""

    schedule_id: bytes
    version: bytes
    """As stored: the compare-and-set of an edit or a roll sends it
    back."""
    definition: Definition
    paused: bool
    next_ms: int | None
    """The one occurrence on the wheel; None when paused or ended."""
    last_id: bytes | None
    """The latest occurrence handed to the workers, if any."""
    fired: int
    failed: int
    missed: int


class Rolled(msgspec.Struct, frozen=True):
    """Reply of ``roll``: its code and the occurrences it created."""

    code: Code
    created: int
    now_ms: int


def schedule_of(schedule_id: bytes, reply: list[Any]) -> ScheduleRecord | None:
    """A schedule from its record's ``HGETALL`` (None: no such schedule,
    or only a deletion's marker).

    Raises:
        ValueError: the record's definition cannot be read.
    """
    fields: dict[bytes, bytes] = dict(
        zip(reply[::2], reply[1::2], strict=True)
    )
    version = fields.get(b"v")
    if version is None:
        return None
    count = int(fields.get(b"d", b"0"))
    packed = b"".join(fields.get(b"d%d" % i, b"") for i in range(1, count + 1))
    next_ms = fields.get(b"n")
    return ScheduleRecord(
        schedule_id,
        version,
        unpack_definition(packed),
        fields.get(b"p") == b"1",
        None if next_ms is None else int(next_ms),
        fields.get(b"l"),
        int(fields.get(b"f", b"0")),
        int(fields.get(b"x", b"0")),
        int(fields.get(b"m", b"0")),
    )
