"""Pure arithmetic of time: delays, retry backoff, RFC 3339 instants."""

from __future__ import annotations

import random
from datetime import UTC, datetime

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
