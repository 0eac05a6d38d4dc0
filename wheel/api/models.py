"""Wire types: msgspec Structs, the encoder built once.

These are the one source of truth of the HTTP API: the endpoints encode
them, and ``wheel.api.openapi`` derives the OpenAPI document's schemas from
them (the descriptions here are the document's).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

MAX_URL_LENGTH = 2048


def _doc(
    text: str, json_format: str | None = None, **meta: object
) -> msgspec.Meta:
    extra = {"format": json_format} if json_format else None
    return msgspec.Meta(
        description=text,
        extra_json_schema=extra,
        **meta,  # type: ignore[call-overload]
    )


Part = Annotated[int, _doc("A non-negative JSON integer.", ge=0)]
Instant = Annotated[str, _doc("An instant, RFC 3339 UTC with ms.")]
TimerId = Annotated[str, _doc("The timer's id, a UUID.", json_format="uuid")]


class TimerRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /timer``: the delay in parts, and the webhook's URL.

    The delay is ``hours * 3600 + minutes * 60 + seconds``; a missing part
    counts as 0; the total is at most ``WHEEL_MAX_DELAY`` seconds. Unknown
    fields and duplicate keys are refused.
    """

    url: Annotated[
        str,
        _doc(
            "An absolute http or https URL without credentials; private "
            "and special addresses are refused unless allowed.",
            max_length=MAX_URL_LENGTH,
            json_format="uri",
        ),
    ]
    hours: Part = 0
    minutes: Part = 0
    seconds: Part = 0


class TimerCreated(msgspec.Struct):
    """Reply of ``POST /timer`` (and of a retry of a dead letter)."""

    id: TimerId
    time_left: Annotated[int, _doc("Whole seconds until due, rounded up.")]


class TimerView(msgspec.Struct, omit_defaults=True):
    """Reply of ``GET /timer/{id}``; the optional fields appear once they
    mean something."""

    id: TimerId
    time_left: Annotated[
        int, _doc("Whole seconds until due, rounded up; 0 once due.")
    ]
    status: Annotated[
        str,
        _doc(
            "pending, firing, fired, failed or cancelled.",
            pattern="^(pending|firing|fired|failed|cancelled)$",
        ),
    ]
    due_at: Instant
    attempts: Annotated[int, _doc("Webhook attempts made so far.")]
    next_attempt_at: Instant | None = None
    """When a retry is scheduled (status pending after an attempt)."""
    fired_at: Instant | None = None
    """When the webhook succeeded (status fired)."""
    finished_at: Instant | None = None
    """When the timer failed or was cancelled."""
    last_status: int | None = None
    """HTTP status of the last attempt, when it got an answer."""
    last_error: str | None = None
    """Why the last attempt failed."""


class FieldError(msgspec.Struct):
    """One invalid field of a request."""

    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document: every error of the API."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"
    errors: list[FieldError] = []
    id: (
        Annotated[
            str,
            _doc(
                "A create answered 503 whose outcome is unknown: the id "
                "it used. GET it (or retry with the same "
                "Idempotency-Key) to learn whether it exists.",
                json_format="uuid",
            ),
        ]
        | None
    ) = None


class Status(msgspec.Struct, omit_defaults=True):
    """Reply of ``/healthz`` and ``/readyz``."""

    status: str
    degraded: Annotated[
        list[str],
        _doc(
            "Redis primaries that serve but have fewer replicas than "
            "WHEEL_REPLICA_ACKS asks for: creates there answer 503 with "
            "their id until the replicas are back; firing goes on."
        ),
    ] = []


class DeadLetter(msgspec.Struct):
    """A timer that failed for good."""

    id: TimerId
    url: str
    attempts: int
    error: Annotated[str, _doc("The last attempt's error.")]
    at: Instant


class DeadLetters(msgspec.Struct):
    """Reply of ``GET /dead-letters``: newest first, across all shards."""

    items: list[DeadLetter]


class Member(msgspec.Struct):
    """A live ticker or worker."""

    name: str
    last_beat_at: Instant
    shards: Annotated[
        int, _doc("Shards it holds (tickers) or reads (workers).")
    ]


class MinuteStats(msgspec.Struct):
    """What the fleet did in one minute."""

    minute_at: Instant
    fired: int
    retried: int
    failed: int
    deferred: int


class Lateness(msgspec.Struct):
    """First-attempt lateness over the last 5 minutes (from a
    histogram, so the percentiles are estimates within a bucket)."""

    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


class Stats(msgspec.Struct):
    """Reply of ``GET /stats``: the fleet at a glance (the dashboard's)."""

    at: Instant
    pending: Annotated[int, _doc("Timers created and not finished yet.")]
    ready: Annotated[int, _doc("Due entries in the ready streams.")]
    in_flight: Annotated[int, _doc("Entries workers hold right now.")]
    oldest_overdue_s: Annotated[
        float, _doc("Age of the oldest due timer not yet fired; 0 if none.")
    ]
    dead_letters: int
    tickers: list[Member]
    workers: list[Member]
    minutes: Annotated[
        list[MinuteStats], _doc("The last 30 minutes, oldest first.")
    ]
    lateness: Lateness
    backlog_hour: Annotated[
        list[int], _doc("Timers due in each of the next 60 minutes.")
    ]
    backlog_day: Annotated[
        list[int], _doc("Timers due in each of the next 24 hours.")
    ]


encoder = msgspec.json.Encoder()
