"""Wire types: msgspec Structs, the encoder built once.

These are the one source of truth of the HTTP API: the endpoints encode
them, and ``wheel.api.openapi`` derives the OpenAPI document's schemas from
them (the descriptions here are the document's).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from wheel.core import webhook_request

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


Part = Annotated[
    int, _doc("A non-negative JSON integer; a missing one counts as 0.", ge=0)
]
Instant = Annotated[str, _doc("An instant, RFC 3339 UTC with ms.")]
TimerId = Annotated[str, _doc("The timer's id, a UUID.", json_format="uuid")]
At = Annotated[
    str,
    _doc(
        "When the timer is due: an RFC 3339 date-time with an offset "
        "(2026-12-01T16:00:00Z, 2026-12-01T17:00:00.250+01:00). Instead "
        "of hours, minutes and seconds; one in the past is due at once; "
        "at most WHEEL_MAX_DELAY seconds ahead.",
        json_format="date-time",
    ),
]


Method = Literal["POST", "PUT", "PATCH", "GET", "DELETE"]


class RequestSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The request a timer sends when it fires, instead of ``POST
    {"id"}``; each part left out keeps its default. The same request is
    sent on every attempt, with the service's own headers
    (``Idempotency-Key``, ``User-Agent``, the ``webhook-*`` signature,
    which covers the body sent)."""

    method: Annotated[Method, _doc("The HTTP method; POST by default.")] = (
        "POST"
    )
    headers: Annotated[
        dict[str, str],
        _doc(
            "Extra headers: names are RFC 9110 tokens, values without "
            "control characters. Host, Content-Length, Transfer-Encoding, "
            "Connection and the other hop-by-hop headers, "
            "Idempotency-Key, User-Agent and webhook-* are the "
            "service's and are refused. Content-Type defaults to "
            "application/json when a body is sent.",
            max_length=webhook_request.MAX_HEADERS,
        ),
    ] = {}
    body: Annotated[
        str | None,
        _doc(
            "Sent verbatim (UTF-8), at most 32 KiB. Without it POST, PUT "
            'and PATCH send the default {"id": ...} JSON; GET and '
            "DELETE send no body (and take none).",
        ),
    ] = None


class TimerRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /timer``: when (a delay in parts, or ``at``), the
    webhook's URL, and optionally the request to send.

    The delay is ``hours * 3600 + minutes * 60 + seconds``; a missing part
    counts as 0; the total is at most ``WHEEL_MAX_DELAY`` seconds. ``at``
    with any part is refused. Unknown fields and duplicate keys are
    refused.
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
    # Declared without a default so that generated clients leave them
    # out (a part sent as 0 beside at is refused).
    hours: Part | UnsetType = UNSET
    minutes: Part | UnsetType = UNSET
    seconds: Part | UnsetType = UNSET
    at: At | UnsetType = UNSET
    request: RequestSpec | UnsetType = UNSET


class Reschedule(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``PATCH /timer/{id}``: the new time, as a delay from now
    in parts or as ``at`` (one of them; nothing else changes)."""

    hours: Part | UnsetType = UNSET
    minutes: Part | UnsetType = UNSET
    seconds: Part | UnsetType = UNSET
    at: At | UnsetType = UNSET


class HistoryEntry(msgspec.Struct):
    """One webhook attempt."""

    at: Annotated[str, _doc("When it was sent, RFC 3339 UTC with ms.")]
    status: Annotated[
        int | None, _doc("The HTTP status of the answer; null without one.")
    ]
    error: Annotated[
        str | None,
        _doc(
            "Why it failed (HTTP 503, timeout after 10.0s, ...); null on "
            "a 2xx."
        ),
    ]
    duration_ms: Annotated[int, _doc("How long it took.")]


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
    history: Annotated[
        list[HistoryEntry],
        _doc(
            "The last attempts (up to 5), oldest first; empty before the "
            "first."
        ),
    ]
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
    url: str | None = None
    """The webhook's URL, while the timer keeps it (pending, firing; and
    a failed timer in a listing, from its dead letter)."""
    request: RequestSpec | None = None
    """The timer's own request, when it has one."""


class TimerPage(msgspec.Struct):
    """Reply of ``GET /timers``: a page of timers and the cursor of the
    next one (null: the listing is complete). A page may hold fewer
    than ``limit`` timers, even none, while more follow."""

    items: Annotated[
        list[TimerView], _doc("Timers as GET /timer/{id} shows them.")
    ]
    next_cursor: Annotated[
        str | None,
        _doc("Pass as cursor (with the same parameters) for the next page."),
    ]


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
