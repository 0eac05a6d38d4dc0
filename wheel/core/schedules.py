"""A schedule's stored definition, and what one hand-over of it does.

A schedule is stored once, in a record of its own (``wheel.storage``
spells it); its definition (cron, zone, url, own request, window,
misfire policy) is one MessagePack value kept in 60-byte chunks, so the
record stays a Redis listpack. Only Python reads the definition: the
scripts store its chunks and compare a version.

A **roll** is one hand-over: the schedule's next occurrence has come
due, so the occurrences that fire now become timers (ids from
:func:`~wheel.core.occurrences.occurrence_id`, each with its webhook's
request) and the successor becomes the schedule's next occurrence.
:func:`plan_roll` decides it from the misfire policy
(:func:`~wheel.core.occurrences.catch_up`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import msgspec

from wheel.core import ids
from wheel.core.cron import ScheduleSpec, next_occurrences, parse_schedule
from wheel.core.delays import rfc3339
from wheel.core.occurrences import (
    Misfire,
    Occurrence,
    catch_up,
    occurrence_id,
)
from wheel.core.webhook_request import BODYLESS, WebhookRequest, pack, unpack

CHUNK_BYTES = 60
"""Bytes of one chunk of a packed value in a record (listpack-sized)."""
NEXT_SHOWN = 5
"""Occurrences a create answers with."""
SPECS_CACHED = 4096
"""Parsed definitions kept per process (a roll parses none it knows)."""


class Definition(msgspec.Struct, array_like=True, frozen=True):
    """What a schedule was created (or last edited) with.

    ``request`` is the packed own request (:func:`wheel.core.webhook_request.
    pack`), None for the default webhook.
    """

    cron: str
    timezone: str
    url: str
    request: bytes | None
    start_at_ms: int | None
    end_at_ms: int | None
    misfire: str = Misfire.ONCE.value

    def spec(self) -> ScheduleSpec:
        """The parsed schedule (cached: a roller parses each once)."""
        return _spec(
            self.cron, self.timezone, self.start_at_ms, self.end_at_ms
        )

    def own_request(self) -> WebhookRequest | None:
        """The schedule's own request, None for the default webhook."""
        return None if self.request is None else unpack(self.request)

    def edited(self, **changes: object) -> Definition:
        """A copy with ``changes`` (field names) applied."""
        return msgspec.structs.replace(self, **changes)


@functools.lru_cache(maxsize=SPECS_CACHED)
def _spec(
    cron: str, timezone: str, start_at_ms: int | None, end_at_ms: int | None
) -> ScheduleSpec:
    return parse_schedule(cron, timezone, start_at_ms, end_at_ms)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Definition).decode


def pack_definition(definition: Definition) -> bytes:
    """The definition as stored (MessagePack)."""
    return _encode(definition)


def unpack_definition(data: bytes) -> Definition:
    """The definition :func:`pack_definition` made.

    Raises:
        ValueError: the bytes are not a packed definition.
    """
    try:
        return _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a packed definition: {exc}") from None


def chunks(data: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes (none if empty):
    a record field longer than 64 bytes would make the whole record a
    hash table, about three times its size."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def default_body(
    occurrence: bytes, schedule_id: bytes, scheduled_ms: int
) -> str:
    """The webhook body of an occurrence without a body of its own."""
    return msgspec.json.encode(
        {
            "id": ids.to_text(occurrence),
            "schedule_id": ids.to_text(schedule_id),
            "scheduled_for": rfc3339(scheduled_ms),
        }
    ).decode()


def occurrence_request(
    own: WebhookRequest | None,
    occurrence: bytes,
    schedule_id: bytes,
    scheduled_ms: int,
) -> bytes:
    """The packed request an occurrence's timer sends: the schedule's own
    method and headers, its body when it set one, else the default body
    ``{"id", "schedule_id", "scheduled_for"}`` (none for GET, DELETE)."""
    request = own or WebhookRequest()
    if request.body is None and request.method not in BODYLESS:
        body = default_body(occurrence, schedule_id, scheduled_ms)
        request = dataclasses.replace(request, body=body)
    return pack(request)


@dataclass(frozen=True, slots=True)
class RollPlan:
    """What one hand-over does: the occurrences to create now (oldest
    first), how many missed occurrences fire not, and the successor
    (None: the schedule has ended)."""

    fire: tuple[Occurrence, ...]
    missed: int
    next_ms: int | None


def plan_roll(
    schedule_id: bytes,
    definition: Definition,
    scheduled_ms: int,
    now_ms: int,
    shards: int,
    grace_ms: int = 0,
) -> RollPlan:
    """The hand-over of the occurrence at ``scheduled_ms``, due by
    ``now_ms``, under the schedule's misfire policy.

    Lateness is not downtime: while the occurrence after this one is
    late by ``grace_ms`` or less (a ticker's lease moving to another
    after a crash, a Redis failover), this occurrence fires and that one
    follows (it is due, so it fires next, late, and so on: every
    occurrence fires, in order). Past the grace the service was down,
    and :func:`~wheel.core.occurrences.catch_up` applies the policy to
    every overdue occurrence.

    Raises:
        ValueError: the occurrence is not due at ``now_ms``.
    """
    spec = definition.spec()
    if now_ms < scheduled_ms:
        raise ValueError("the occurrence is not due")
    following = next_occurrences(spec, scheduled_ms, 1)
    if not following or following[0] >= now_ms - grace_ms:
        fire_ms: tuple[int, ...] = (scheduled_ms,)
        missed, next_ms = 0, (following[0] if following else None)
    else:
        decided = catch_up(spec, scheduled_ms, now_ms, definition.misfire)
        fire_ms, missed, next_ms = (
            decided.fire_ms,
            decided.missed,
            decided.next_ms,
        )
    fire = tuple(
        Occurrence(occurrence_id(schedule_id, instant, shards), instant)
        for instant in fire_ms
    )
    return RollPlan(fire, missed, next_ms)
