"""Parse the bodies of ``POST /timer`` and ``PATCH /timer/{id}``: a fast
path for the seed's shape, a full analysis for anything else (and on
refusal), naming every bad field."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, UnsetType

from wheel.api.json_body import (
    DELAY_FIELD,
    InvalidRequest,
    kind,
    load_object,
    unprocessable,
)
from wheel.api.models import MAX_URL_LENGTH, FieldError
from wheel.core.delays import parse_rfc3339
from wheel.core.urls import authority_end
from wheel.core.webhook_request import (
    RequestInvalid,
    WebhookRequest,
    normalized,
    parse_request,
)

__all__ = [
    "DELAY_FIELD",
    "MAX_URL_LENGTH",
    "InvalidRequest",
    "OriginVerdicts",
    "ScheduleInput",
    "TimerInput",
    "check_url",
    "origin_of",
    "parse_reschedule",
    "parse_timer_request",
]

PARTS = ("hours", "minutes", "seconds")
AT = "at"

ORIGINS_KEPT = 10_000
"""Verdicts on urls' origins remembered (a bounded cache)."""
ORIGIN_KEPT_MAX = 256
"""Longest origin whose verdict is remembered: a receiver's is short, and
the bound keeps a client's long made-up hosts from filling the cache
with 2 KiB keys."""

# A part past this is blamed on its own rather than on the total: no
# allowed delay comes near it in any unit. It never appears in a message.
_PART_BOUND = 10**12

# C0 and C1 control characters, DEL and any Unicode whitespace.
_BAD_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# Byte values, not b"\\": ``int in bytes`` is a memchr, 7x faster here.
_BACKSLASH = ord("\\")
_QUOTE = ord('"')


class TimerInput(msgspec.Struct, frozen=True):
    """A valid ``POST /timer`` body; a missing part is 0.

    ``at_ms`` is the instant given (then the parts are 0 and
    ``delay_ms`` is unused); ``request`` the timer's own request, None
    for the default webhook.
    """

    url: str
    hours: int
    minutes: int
    seconds: int
    delay_ms: int
    at_ms: int | None = None
    request: WebhookRequest | None = None


@dataclass(frozen=True, slots=True)
class ScheduleInput:
    """A valid ``PATCH /timer/{id}`` body: a delay from now, or ``at``."""

    delay_ms: int
    at_ms: int | None = None


# The fast path's shape. UNSET defaults (not 0) tell which parts the body
# holds, which the duplicate-key check needs.
_Part = Annotated[int, msgspec.Meta(ge=0)]


class _FastBody(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    hours: _Part | UnsetType = UNSET
    minutes: _Part | UnsetType = UNSET
    seconds: _Part | UnsetType = UNSET


_decode_fast = msgspec.json.Decoder(_FastBody).decode


def parse_timer_request(
    body: bytes, max_delay_s: int, now_ms: int | None = None
) -> TimerInput:
    """The timer a ``POST /timer`` body asks for.

    ``now_ms`` (default: this host's clock) is the instant an ``at`` may
    be at most ``max_delay_s`` after.

    Raises:
        InvalidRequest: 400 when the body is not UTF-8 JSON or repeats a
            key; 422, naming every bad field, when it breaks a rule.
    """
    try:
        fast = _decode_fast(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        # Anything but the seed's shape (at, request) goes this way too.
        return _analyse(body, max_delay_s, now_ms)
    hours, minutes, seconds = fast.hours, fast.minutes, fast.seconds
    keys = 1
    if hours is UNSET:
        hours = 0
    else:
        keys += 1
    if minutes is UNSET:
        minutes = 0
    else:
        keys += 1
    if seconds is UNSET:
        seconds = 0
    else:
        keys += 1
    # msgspec keeps the last of repeated keys silently. Without a
    # backslash every '"' delimits a string, and a valid body's strings
    # are its keys and the url, so a repeated key shows as extra quotes.
    # A body with escapes goes the slow way, which decodes them.
    if _BACKSLASH in body or body.count(_QUOTE) != 2 * keys + 2:
        return _analyse(body, max_delay_s)
    total_s = (hours * 60 + minutes) * 60 + seconds
    if total_s > max_delay_s or check_url(fast.url) is not None:
        return _analyse(body, max_delay_s)
    return TimerInput(fast.url, hours, minutes, seconds, total_s * 1000)


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be a webhook target, or None when it can."""
    if not url:
        return "must not be empty"
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if _BAD_URL_CHARS.search(url):
        return "must not contain whitespace or control characters"
    return _url_syntax(url)


def origin_of(url: str) -> str:
    """``url`` up to the end of its authority: all that the scheme, host
    and port are read from, and nothing after (the path starts at the
    first ``/``, ``?`` or ``#``).

    Unlike ``wheel.webhooks.sender.host_key`` it does not stop at
    ``\\``: ``urlsplit`` keeps that in the authority, so
    ``http://a.com\\@127.0.0.1/`` must not share ``http://a.com``'s
    verdict. A url without ``://`` is its own origin.
    """
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest[: authority_end(rest, "/?#")]


class OriginVerdicts:
    """A verdict on urls that depends on nothing after their origin (see
    :func:`origin_of`), remembered per origin.

    Parsing a url was a good share of a create, and a create's url is
    nearly always one of a few receivers'. At most ``kept`` verdicts are
    held (all are dropped when full); an origin over
    :data:`ORIGIN_KEPT_MAX` characters is judged each time and not kept.
    """

    def __init__(
        self, judge: Callable[[str], str | None], kept: int = ORIGINS_KEPT
    ) -> None:
        self._judge = judge
        self._kept = kept
        self._verdicts: dict[str, str | None] = {}

    def __call__(self, url: str) -> str | None:
        """``judge(url)``, or the verdict on an earlier url of its origin."""
        origin = origin_of(url)
        if len(origin) > ORIGIN_KEPT_MAX:
            return self._judge(url)
        try:
            return self._verdicts[origin]
        except KeyError:
            pass
        if len(self._verdicts) >= self._kept:
            self._verdicts.clear()
        verdict = self._verdicts[origin] = self._judge(url)
        return verdict

    def __len__(self) -> int:
        """Verdicts held."""
        return len(self._verdicts)


def _judge_syntax(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an absolute http or https URL"
    if not parts.hostname:
        return "must name a host"
    if port == 0:
        return "must not use port 0"
    return None


_url_syntax = OriginVerdicts(_judge_syntax)


def _analyse(
    body: bytes, max_delay_s: int, now_ms: int | None = None
) -> TimerInput:
    """The slow, complete verdict on a body the fast path did not pass."""
    document = load_object(body)
    errors: list[FieldError] = []
    url = None
    request: WebhookRequest | None = None
    when = _When(document, max_delay_s, now_ms)
    for key, value in document.items():
        if key == "url":
            reason = _url_problem(value)
            url = value
        elif key == "request":
            try:
                request = parse_request(value)
            except RequestInvalid as exc:
                errors += [FieldError(f, m) for f, m in exc.errors]
            reason = None
        elif key in PARTS or key == AT:
            reason = when.check(key, value)
        else:
            reason = "is not a known field"
        if reason is not None:
            errors.append(FieldError(key, reason))
    if "url" not in document:
        errors.append(FieldError("url", "is required"))
    errors += when.total()
    if errors:
        raise unprocessable(errors)
    assert isinstance(url, str)
    hours, minutes, seconds = when.parts
    return TimerInput(
        url,
        hours,
        minutes,
        seconds,
        when.delay_ms,
        when.at_ms,
        normalized(request),
    )


def parse_reschedule(
    body: bytes, max_delay_s: int, now_ms: int | None = None
) -> ScheduleInput:
    """The new time a ``PATCH /timer/{id}`` body asks for: a delay
    (``hours``, ``minutes``, ``seconds``) or ``at``, nothing else.

    Raises:
        InvalidRequest: as :func:`parse_timer_request`.
    """
    document = load_object(body)
    errors = []
    when = _When(document, max_delay_s, now_ms)
    for key, value in document.items():
        if key in PARTS or key == AT:
            reason = when.check(key, value)
        elif key in ("url", "request"):
            reason = (
                "cannot be changed (only the time: hours, minutes, "
                "seconds or at)"
            )
        else:
            reason = "is not a known field"
        if reason is not None:
            errors.append(FieldError(key, reason))
    if not any(key in document for key in (*PARTS, AT)):
        errors.append(
            FieldError(
                "$", "must give the new time: hours, minutes, seconds or at"
            )
        )
    errors += when.total()
    if errors:
        raise unprocessable(errors)
    return ScheduleInput(when.delay_ms, when.at_ms)


class _When:
    """When a body says a timer is due: a delay in parts, or ``at``
    (never both), checked field by field in body order."""

    def __init__(
        self, document: dict[str, Any], max_delay_s: int, now_ms: int | None
    ) -> None:
        self.max_delay_s = max_delay_s
        self.now_ms = now_ms
        self.given = [part for part in PARTS if part in document]
        self.both = AT in document and bool(self.given)
        self.parts = [0, 0, 0]
        self.parts_ok = True
        self.at_ms: int | None = None

    def check(self, key: str, value: object) -> str | None:
        """Why the field ``key`` is refused, or None."""
        if self.both:
            if key == AT:
                return f"cannot be given with {', '.join(self.given)}"
            return "cannot be given with at"
        if key == AT:
            at_ms, reason = _at_problem(value, self.max_delay_s, self.now_ms)
            self.at_ms = at_ms
            return reason
        reason = _part_problem(value, self.max_delay_s)
        if reason is None:
            assert isinstance(value, int)
            self.parts[PARTS.index(key)] = value
        self.parts_ok = self.parts_ok and reason is None
        return reason

    @property
    def delay_ms(self) -> int:
        """The delay the parts give, in ms (0 with ``at``)."""
        hours, minutes, seconds = self.parts
        return ((hours * 60 + minutes) * 60 + seconds) * 1000

    def total(self) -> list[FieldError]:
        """The error of a delay too long in total (each part fine)."""
        if self.both or not self.parts_ok:
            return []
        if self.delay_ms > self.max_delay_s * 1000:
            return [FieldError(DELAY_FIELD, _total_message(self.max_delay_s))]
        return []


def _at_problem(
    value: object, max_delay_s: int, now_ms: int | None
) -> tuple[int | None, str | None]:
    """The instant ``at`` names (epoch ms), or why it is refused."""
    if not isinstance(value, str):
        return None, f"must be a string, not {kind(value)}"
    try:
        at_ms = parse_rfc3339(value)
    except ValueError as exc:
        return None, str(exc)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if at_ms - now > max_delay_s * 1000:
        return None, f"must be at most {max_delay_s} seconds from now"
    return at_ms, None


def _url_problem(value: object) -> str | None:
    """Why ``value`` is not a webhook url, or None."""
    if not isinstance(value, str):
        return f"must be a string, not {kind(value)}"
    return check_url(value)


def _part_problem(value: object, max_delay_s: int) -> str | None:
    """Why ``value`` is not a part of the delay, or None."""
    if type(value) is not int:
        return f"must be a non-negative integer, not {kind(value)}"
    if value < 0:
        return "must be a non-negative integer, not a negative number"
    if value > _PART_BOUND:
        return f"is too large: {_total_message(max_delay_s)}"
    return None


def _total_message(max_delay_s: int) -> str:
    return f"the total delay must be at most {max_delay_s} seconds"
