"""Pure arithmetic of delays and retries."""

from __future__ import annotations

import random

from wheel.states import Outcome


def ceil_seconds(ms: int) -> int:
    """Whole seconds left, rounded up; never negative."""
    if ms <= 0:
        return 0
    return -(-ms // 1000)


def delay_ms(hours: int, minutes: int, seconds: int) -> int:
    """The total delay of a timer request in milliseconds."""
    return ((hours * 60 + minutes) * 60 + seconds) * 1000


def backoff_s(
    attempt: int,
    base_s: float,
    cap_s: float,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number ``attempt`` (1 = first retry).

    Exponential from ``base_s``, capped at ``cap_s``, with "equal jitter":
    the delay is uniform in ``[d/2, d]`` for the capped exponential ``d``,
    so retries of timers that failed together spread out but never come
    sooner than half the nominal delay.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    exponent = min(attempt - 1, 62)
    nominal = min(cap_s, base_s * (2.0**exponent))
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

    ``ok`` after a 2xx; ``retry`` after ``delay ms`` while attempts remain;
    ``fail`` once the last attempt failed.
    """
    if ok:
        return Outcome.OK, 0
    if attempt < max_attempts:
        return Outcome.RETRY, int(
            1000 * backoff_s(attempt, base_s, cap_s, rng)
        )
    return Outcome.FAIL, 0
