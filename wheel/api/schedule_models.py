"""Wire types of the schedules API: msgspec Structs, the source of the
OpenAPI document's schemas (as :mod:`wheel.api.models` is for timers)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from wheel.api.models import MAX_URL_LENGTH, Instant, RequestSpec
from wheel.core.cron import MAX_CRON_CHARS


def _doc(text: str, json_format: str | None = None) -> msgspec.Meta:
    extra = {"format": json_format} if json_format else None
    return msgspec.Meta(description=text, extra_json_schema=extra)


Misfire = Literal["once", "skip", "all"]
ScheduleId = Annotated[
    str, _doc("The schedule's id, a UUID.", json_format="uuid")
]
Cron = Annotated[
    str,
    msgspec.Meta(
        description=(
            "5 fields (minute hour day-of-month month day-of-week), or 6 "
            "with the seconds first (*/10 * * * * *), read in timezone."
        ),
        max_length=MAX_CRON_CHARS,
    ),
]
Zone = Annotated[
    str, _doc("An IANA time zone name (Europe/Amsterdam); UTC by default.")
]
Url = Annotated[
    str,
    msgspec.Meta(
        description=(
            "Where each occurrence's webhook goes: an absolute http or "
            "https URL, as for a timer."
        ),
        max_length=MAX_URL_LENGTH,
        extra_json_schema={"format": "uri"},
    ),
]
Bound = Annotated[
    str,
    _doc(
        "An RFC 3339 date-time with an offset; occurrences at this "
        "instant count (inclusive).",
        json_format="date-time",
    ),
]
MisfirePolicy = Annotated[
    Misfire,
    _doc(
        "What fires for the occurrences missed while the service was "
        "down (longer than WHEEL_MISFIRE_GRACE): once (default), one "
        "catch-up fire, then on schedule; skip, none; all, every one "
        "(at most 100)."
    ),
]


class ScheduleRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /schedules``."""

    cron: Cron
    url: Url
    timezone: Zone | UnsetType = UNSET
    request: (
        Annotated[
            RequestSpec,
            _doc(
                "What each occurrence sends, as a timer's request; a body "
                'replaces the default {"id", "schedule_id", '
                '"scheduled_for"}.'
            ),
        ]
        | UnsetType
    ) = UNSET
    start_at: Bound | UnsetType = UNSET
    end_at: Bound | UnsetType = UNSET
    misfire: MisfirePolicy | UnsetType = UNSET


class ScheduleCreated(msgspec.Struct):
    """Reply of ``POST /schedules``."""

    id: ScheduleId
    next: Annotated[
        list[Instant], _doc("The next occurrences (up to 5), RFC 3339 UTC.")
    ]


class SchedulePatch(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``PATCH /schedules/{id}``: any of these, nothing else."""

    paused: (
        Annotated[bool, _doc("true pauses, false resumes (from now on).")]
        | UnsetType
    ) = UNSET
    cron: Cron | UnsetType = UNSET
    timezone: Zone | UnsetType = UNSET
    url: Url | UnsetType = UNSET
    request: (
        Annotated[
            RequestSpec | None,
            _doc("A new request; null or {} for the default webhook."),
        ]
        | UnsetType
    ) = UNSET


class LastOccurrence(msgspec.Struct):
    """The latest occurrence handed to the workers."""

    id: Annotated[str, _doc("Its timer's id.", json_format="uuid")]
    scheduled_for: Instant
    status: Annotated[
        str | None,
        _doc(
            "Its timer's status (pending, firing, fired, failed); null "
            "once its record has expired (WHEEL_RETENTION)."
        ),
    ]


class ScheduleView(msgspec.Struct):
    """Reply of ``GET /schedules/{id}``."""

    id: ScheduleId
    cron: str
    timezone: str
    url: str
    request: RequestSpec | None
    start_at: Instant | None
    end_at: Instant | None
    misfire: Misfire
    paused: bool
    next_at: Annotated[
        Instant | None,
        _doc("The one occurrence on the wheel; null when paused or ended."),
    ]
    last: LastOccurrence | None
    fired: Annotated[int, _doc("Occurrences whose webhook succeeded.")]
    failed: Annotated[int, _doc("Occurrences out of attempts.")]
    missed: Annotated[
        int, _doc("Occurrences missed while down that did not fire.")
    ]


class SchedulePage(msgspec.Struct):
    """Reply of ``GET /schedules``: a page of schedules and the cursor of
    the next one (null: complete). A page may hold fewer than ``limit``
    schedules, even none, while more follow."""

    items: list[ScheduleView]
    next_cursor: Annotated[
        str | None, _doc("Pass as cursor for the next page.")
    ]
