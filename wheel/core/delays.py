"""Pure arithmetic of time: delays, retry backoff, RFC 3339 instants."""

from __future__ import annotations

import email.utils
import math
import random
import re
from datetime import UTC, datetime, timedelta

from wheel.core.states import Outcome

CLAIM_MARGIN_S = 2.0
"""A completion gives up this long before its claim lapses, so that a
worker never writes an outcome after another may have taken the entry."""
STALL_GRACE_S = 1.5
"""Most extra time a webhook gets when its deadline fires after the event
loop stalled (``wheel.webhooks.sender``: a few short graces to read an
answer already waiting), on top of ``WHEEL_WEBHOOK_TIMEOUT``."""


def ceil_seconds(ms: int) -> int:
    """Whole seconds left, rounded up; never negative."""
    if ms <= 0:
        return 0
    return -(-ms // 1000)


def delay_ms(hours: int, minutes: int, seconds: int) -> int:
    """The total delay of a timer request in milliseconds."""
    return ((hours * 60 + minutes) * 60 + seconds) * 1000


def backoff_s(
    retry: int,
    base_s: float,
    cap_s: float,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number ``retry`` (0 = the first retry).

    Exponential from ``base_s``, capped at ``cap_s``, with "equal jitter":
    the delay is uniform in ``[d/2, d]`` for the capped exponential ``d``,
    so callers that failed together spread out but none comes back sooner
    than half the nominal delay. The one backoff of the service: webhook
    retries and Redis call retries both use it.
    """
    if retry < 0:
        raise ValueError("retry counts from 0")
    nominal = min(cap_s, base_s * (2.0 ** min(retry, 62)))
    draw = (rng or random).random()
    return nominal / 2 + draw * nominal / 2


def outcome_of(
    ok: bool,
    attempt: int,
    max_attempts: int,
    base_s: float,
    cap_s: float,
    rng: random.Random | None = None,
) -> tuple[Outcome, int]:
    """What follows webhook attempt number ``attempt``: (outcome, delay ms).

    ``ok`` after a 2xx; ``retry`` after ``delay ms`` while attempts remain
    (attempt 1 failed: the first retry); ``fail`` once the last attempt
    failed.
    """
    if ok:
        return Outcome.OK, 0
    if attempt < max_attempts:
        return Outcome.RETRY, int(
            1000 * backoff_s(attempt - 1, base_s, cap_s, rng)
        )
    return Outcome.FAIL, 0


def rfc3339(epoch_ms: int) -> str:
    """An epoch ms instant as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# RFC 3339 date-time (section 5.6) with a mandatory offset; ``T`` or a
# space between date and time, any number of fraction digits.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_rfc3339(text: str) -> int:
    """Epoch ms of an RFC 3339 instant with an offset (``Z`` or ``+hh:mm``).

    A fraction finer than a millisecond rounds up, so the instant is
    never earlier than the one written.

    Raises:
        ValueError: saying what is wrong, without echoing the text.
    """
    found = _RFC3339.fullmatch(text)
    if found is None:
        raise ValueError(
            "must be an RFC 3339 date-time with an offset, such as "
            "2026-12-01T16:00:00Z or 2026-12-01T17:00:00.250+01:00"
        )
    year, month, day, hour, minute, second = (
        int(part) for part in found.group(1, 2, 3, 4, 5, 6)
    )
    fraction = found.group(7) or ""
    if found.group(8) is None:
        offset_h, offset_m = int(found.group(10)), int(found.group(11))
        if offset_h > 23 or offset_m > 59:
            raise ValueError(
                "has an offset out of range (hours 00-23, minutes 00-59)"
            )
        sign = -1 if found.group(9) == "-" else 1
        offset_ms = sign * (offset_h * 60 + offset_m) * 60_000
    else:
        offset_ms = 0
    if second == 60:
        raise ValueError("is a leap second, which is not supported")
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"is not a valid date-time ({exc})") from None
    digits = fraction[1:]
    micros = int((digits + "000000")[:6]) if digits else 0
    # Anything after the millisecond rounds the instant up.
    extra = 1 if digits[3:].strip("0") else 0
    whole_ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    return whole_ms + micros // 1000 + extra - offset_ms


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def retry_after_s(value: str, now_s: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait, from ``now_s``.

    The header is a number of seconds (digits) or an HTTP-date (RFC 9110
    section 10.2.3); a date in the past asks for no wait (0). None when
    the value is neither.
    """
    text = value.strip()
    if text.isdigit() and text.isascii():
        return float(int(text[:12]))
    try:
        moment = email.utils.parsedate_to_datetime(text)
        if moment.tzinfo is None:
            # RFC 9110: an HTTP-date is always GMT.
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - now_s)
    # The receiver writes this header: a year or an offset of twenty
    # digits overflows instead of failing to parse.
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


RETRY_AFTER_STATUSES = frozenset({429, 503})
"""Answers whose ``Retry-After`` sets the earliest next attempt."""


def honour_retry_after(
    delay_ms: int, status: int | None, wait_s: float | None, cap_s: float
) -> int:
    """The delay before a retry, pushed back to a receiver's
    ``Retry-After`` on a 429 or 503 (at most ``cap_s``)."""
    if status not in RETRY_AFTER_STATUSES or wait_s is None:
        return delay_ms
    return max(delay_ms, math.ceil(min(wait_s, cap_s) * 1000))
