"""Parse the bodies of ``POST /schedules`` and ``PATCH /schedules/{id}``,
naming every bad field (the cron, zone and window rules are
:mod:`wheel.core.cron`'s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wheel.api.json_body import kind, load_object, unprocessable
from wheel.api.models import FieldError
from wheel.api.validation import check_url
from wheel.core.cron import (
    DEFAULT_TIMEZONE,
    InvalidSchedule,
    ScheduleSpec,
    validate_schedule,
)
from wheel.core.delays import parse_rfc3339
from wheel.core.occurrences import Misfire
from wheel.core.webhook_request import (
    RequestInvalid,
    WebhookRequest,
    normalized,
    parse_request,
)

FIELDS = (
    "cron",
    "timezone",
    "url",
    "request",
    "start_at",
    "end_at",
    "misfire",
)
EDITABLE = ("paused", "cron", "timezone", "url", "request")
MISFIRES = tuple(policy.value for policy in Misfire)


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A valid ``POST /schedules`` body."""

    spec: ScheduleSpec
    url: str
    request: WebhookRequest | None
    misfire: Misfire


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """A valid ``PATCH /schedules/{id}`` body; None: not given.
    ``request_given`` tells a request set back to the default (None)
    from none given."""

    paused: bool | None = None
    cron: str | None = None
    timezone: str | None = None
    url: str | None = None
    request: WebhookRequest | None = None
    request_given: bool = False

    @property
    def retimed(self) -> bool:
        """Whether the occurrences' instants change (cron or zone)."""
        return self.cron is not None or self.timezone is not None


def parse_new_schedule(body: bytes, now_ms: int) -> NewSchedule:
    """The schedule a ``POST /schedules`` body asks for; it must fire
    after ``now_ms``.

    Raises:
        InvalidRequest: 400 for a body that is not JSON; 422 naming every
            bad field (a bad cron, an unknown zone, end_at before
            start_at, a schedule that never fires, ...).
    """
    document = load_object(body)
    errors: list[FieldError] = []
    for key in document:
        if key not in FIELDS:
            errors.append(FieldError(key, "is not a known field"))
    for key in ("cron", "url"):
        if key not in document:
            errors.append(FieldError(key, "is required"))
    cron = _string(document, "cron", errors)
    timezone = _string(document, "timezone", errors)
    if timezone is None:
        timezone = DEFAULT_TIMEZONE
    url = _url(document, errors)
    request = _request(document, errors)
    bounds = {name: _instant(document, name, errors) for name in _BOUNDS}
    misfire = Misfire.ONCE
    if "misfire" in document:
        value = document["misfire"]
        if value in MISFIRES:
            misfire = Misfire(value)
        else:
            errors.append(
                FieldError("misfire", f"must be one of {', '.join(MISFIRES)}")
            )
    spec = None
    if cron is not None and not any(
        e.field in ("cron", "timezone", *_BOUNDS) for e in errors
    ):
        try:
            spec = validate_schedule(
                cron,
                timezone,
                bounds["start_at"],
                bounds["end_at"],
                now_ms=now_ms,
            )
        except InvalidSchedule as exc:
            errors += [FieldError(p.field, p.message) for p in exc.problems]
    if errors:
        raise unprocessable(errors)
    assert spec is not None and url is not None
    return NewSchedule(spec, url, request, misfire)


def parse_change(body: bytes) -> ScheduleChange:
    """What a ``PATCH /schedules/{id}`` body changes: ``paused`` and/or
    ``cron``, ``timezone``, ``url``, ``request``; nothing else.

    Raises:
        InvalidRequest: as :func:`parse_new_schedule` (the cron and zone
            rules are checked against the schedule, by the caller).
    """
    document = load_object(body)
    errors: list[FieldError] = []
    for key in document:
        if key in ("start_at", "end_at", "misfire"):
            errors.append(
                FieldError(
                    key,
                    "cannot be changed (only paused, cron, timezone, url "
                    "and request)",
                )
            )
        elif key not in EDITABLE:
            errors.append(FieldError(key, "is not a known field"))
    if not any(key in document for key in EDITABLE):
        errors.append(
            FieldError(
                "$",
                "must give what changes: paused, cron, timezone, url or "
                "request",
            )
        )
    paused = document.get("paused")
    if "paused" in document and not isinstance(paused, bool):
        errors.append(
            FieldError("paused", f"must be true or false, not {kind(paused)}")
        )
    cron = _string(document, "cron", errors)
    timezone = _string(document, "timezone", errors)
    url = _url(document, errors)
    request = None
    if document.get("request") is not None:
        request = _request(document, errors)
    if errors:
        raise unprocessable(errors)
    return ScheduleChange(
        paused, cron, timezone, url, request, "request" in document
    )


_BOUNDS = ("start_at", "end_at")


def _string(
    document: dict[str, Any], key: str, errors: list[FieldError]
) -> str | None:
    """The string field ``key``, None when absent or refused."""
    if key not in document:
        return None
    value = document[key]
    if not isinstance(value, str):
        errors.append(FieldError(key, f"must be a string, not {kind(value)}"))
        return None
    return value


def _url(document: dict[str, Any], errors: list[FieldError]) -> str | None:
    url = _string(document, "url", errors)
    if url is None:
        return None
    reason = check_url(url)
    if reason is not None:
        errors.append(FieldError("url", reason))
        return None
    return url


def _request(
    document: dict[str, Any], errors: list[FieldError]
) -> WebhookRequest | None:
    if "request" not in document:
        return None
    try:
        return normalized(parse_request(document["request"]))
    except RequestInvalid as exc:
        errors.extend(FieldError(f, m) for f, m in exc.errors)
        return None


def _instant(
    document: dict[str, Any], key: str, errors: list[FieldError]
) -> int | None:
    text = _string(document, key, errors)
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        errors.append(FieldError(key, str(exc)))
        return None
