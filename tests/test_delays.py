"""Pure arithmetic of delays, retries, attempt outcomes and instants."""

from __future__ import annotations

import random
import statistics

import pytest

from wheel.core.delays import (
    backoff_s,
    ceil_seconds,
    delay_ms,
    honour_retry_after,
    outcome_of,
    parse_rfc3339,
    retry_after_s,
)
from wheel.core.states import Outcome


class FixedDraw(random.Random):
    """A random source whose ``random()`` always returns ``draw``."""

    def __init__(self, draw: float) -> None:
        super().__init__(0)
        self.draw = draw

    def random(self) -> float:
        return self.draw


@pytest.mark.parametrize(
    ("ms", "seconds"),
    [
        (-10_000, 0),
        (-1, 0),
        (0, 0),
        (1, 1),
        (999, 1),
        (1000, 1),
        (1001, 2),
        (1999, 2),
        (2000, 2),
        (14_400_001, 14_401),
        (14_401_000, 14_401),
        (31_536_000_000, 31_536_000),
    ],
)
def test_ceil_seconds(ms: int, seconds: int) -> None:
    """Milliseconds left round up to whole seconds and never go below 0."""
    assert ceil_seconds(ms) == seconds


@pytest.mark.parametrize(
    ("hours", "minutes", "seconds", "expected_ms"),
    [
        (0, 0, 0, 0),
        (0, 0, 1, 1000),
        (0, 1, 0, 60_000),
        (1, 0, 0, 3_600_000),
        (4, 0, 1, 14_401_000),
        (0, 90, 30, 5_430_000),
        (0, 0, 86_400, 86_400_000),
        (8760, 0, 0, 31_536_000_000),
        (10**12, 10**12, 10**12, 3_661_000 * 10**12),
    ],
)
def test_delay_ms(
    hours: int, minutes: int, seconds: int, expected_ms: int
) -> None:
    """Hours, minutes and seconds add up to a delay in exact ms."""
    assert delay_ms(hours, minutes, seconds) == expected_ms


@pytest.mark.parametrize(
    ("retry", "base_s", "cap_s", "nominal_s"),
    [
        (0, 1.0, 3600.0, 1.0),
        (1, 1.0, 3600.0, 2.0),
        (2, 1.0, 3600.0, 4.0),
        (4, 0.5, 3600.0, 8.0),
        (11, 1.0, 3600.0, 2048.0),
        (12, 1.0, 3600.0, 3600.0),
        (19, 1.0, 60.0, 60.0),
        (10_000, 1.0, 60.0, 60.0),
        (2, 10.0, 15.0, 15.0),
        (0, 30.0, 10.0, 10.0),
        (0, 0.02, 1.0, 0.02),
        (6, 0.02, 1.0, 1.0),
    ],
)
def test_backoff_bounds(
    retry: int, base_s: float, cap_s: float, nominal_s: float
) -> None:
    """Backoff lies in [d/2, d] of the capped exponential d."""
    low = backoff_s(retry, base_s, cap_s, FixedDraw(0.0))
    high = backoff_s(retry, base_s, cap_s, FixedDraw(1.0))
    assert low == pytest.approx(nominal_s / 2)
    assert high == pytest.approx(nominal_s)
    rng = random.Random(retry)
    for _ in range(200):
        delay = backoff_s(retry, base_s, cap_s, rng)
        assert nominal_s / 2 <= delay <= nominal_s


@pytest.mark.parametrize("retry", [62, 63, 64, 1000, 10**9])
def test_backoff_is_capped_for_huge_retries(retry: int) -> None:
    """A huge retry number neither overflows nor exceeds the cap."""
    delay = backoff_s(retry, 1.0, 3600.0, random.Random(1))
    assert 1800.0 <= delay <= 3600.0


def test_backoff_without_a_random_source_stays_in_bounds() -> None:
    """With no rng given, the module's random source still keeps bounds."""
    for _ in range(200):
        assert 4.0 <= backoff_s(3, 1.0, 3600.0) <= 8.0


def test_backoff_is_deterministic_with_a_seeded_random() -> None:
    """Two equally seeded random sources give the same backoff series."""
    first_rng, again_rng = random.Random(42), random.Random(42)
    first = [backoff_s(n, 1.0, 300.0, first_rng) for n in range(11)]
    again = [backoff_s(n, 1.0, 300.0, again_rng) for n in range(11)]
    assert first == again
    other_rng = random.Random(43)
    other = [backoff_s(n, 1.0, 300.0, other_rng) for n in range(11)]
    assert other != first


def test_backoff_jitter_spreads_retries() -> None:
    """Timers that failed together retry spread over [d/2, d]."""
    rng = random.Random(3)
    delays = [backoff_s(3, 1.0, 3600.0, rng) for _ in range(2000)]
    assert len(set(delays)) > 1990
    assert min(delays) < 4.1
    assert max(delays) > 7.9
    assert statistics.mean(delays) == pytest.approx(6.0, rel=0.03)


@pytest.mark.parametrize("retry", [-1, -100])
def test_backoff_rejects_negative_retries(retry: int) -> None:
    """Retries count from 0; a negative one raises ValueError."""
    with pytest.raises(ValueError):
        backoff_s(retry, 1.0, 60.0)


@pytest.mark.parametrize(
    ("ok", "attempt", "max_attempts", "expected"),
    [
        (True, 1, 5, (Outcome.OK, 0)),
        (True, 5, 5, (Outcome.OK, 0)),
        (True, 9, 5, (Outcome.OK, 0)),
        (False, 1, 5, (Outcome.RETRY, 2000)),
        (False, 2, 5, (Outcome.RETRY, 4000)),
        (False, 3, 5, (Outcome.RETRY, 8000)),
        (False, 4, 5, (Outcome.RETRY, 10_000)),
        (False, 5, 5, (Outcome.FAIL, 0)),
        (False, 7, 5, (Outcome.FAIL, 0)),
        (False, 1, 1, (Outcome.FAIL, 0)),
        (False, 1, 2, (Outcome.RETRY, 2000)),
    ],
)
def test_outcome_of_an_attempt(
    ok: bool, attempt: int, max_attempts: int, expected: tuple[Outcome, int]
) -> None:
    """A 2xx completes; failures retry with backoff until the last one."""
    outcome, wait_ms = outcome_of(
        ok, attempt, max_attempts, 2.0, 10.0, FixedDraw(1.0)
    )
    assert (outcome, wait_ms) == expected
    assert type(outcome) is Outcome
    assert outcome is expected[0]
    assert type(wait_ms) is int


@pytest.mark.parametrize(
    ("draw", "attempt", "wait_ms"),
    [(0.0, 1, 1000), (0.5, 1, 1500), (0.0, 3, 4000), (0.999, 4, 9995)],
)
def test_retry_delay_is_the_jittered_backoff_in_ms(
    draw: float, attempt: int, wait_ms: int
) -> None:
    """A retry waits the backoff of its attempt, in whole milliseconds."""
    assert outcome_of(False, attempt, 9, 2.0, 10.0, FixedDraw(draw)) == (
        Outcome.RETRY,
        wait_ms,
    )


@pytest.mark.parametrize(
    ("text", "epoch_ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.001Z", 1),
        ("1970-01-01t00:00:01z", 1000),
        ("1970-01-01 00:00:01Z", 1000),
        ("2026-12-01T16:00:00Z", 1_796_140_800_000),
        ("2026-12-01T17:00:00+01:00", 1_796_140_800_000),
        ("2026-12-01T15:30:00-00:30", 1_796_140_800_000),
        ("2026-12-01T16:00:00.25Z", 1_796_140_800_250),
        ("2026-12-01T16:00:00.250000Z", 1_796_140_800_250),
        # Finer than a millisecond rounds up: never before the instant.
        ("2026-12-01T16:00:00.2501Z", 1_796_140_800_251),
        ("2026-12-01T16:00:00.000000001Z", 1_796_140_800_001),
        ("2024-02-29T00:00:00+23:59", 1_709_078_460_000),
    ],
)
def test_parse_rfc3339(text: str, epoch_ms: int) -> None:
    """RFC 3339 date-times with an offset become epoch ms."""
    assert parse_rfc3339(text) == epoch_ms


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2026-12-01T16:00:00", "offset"),
        ("2026-12-01", "offset"),
        ("2026-12-01T16:00Z", "offset"),
        ("2026-12-01T16:00:00+0100", "offset"),
        ("2026-12-01T16:00:00+1", "offset"),
        ("2026-12-01T16:00:00 Z", "offset"),
        ("20261201T160000Z", "offset"),
        ("2026-12-01T16:00:00+24:00", "out of range"),
        ("2026-12-01T16:00:00+01:60", "out of range"),
        ("2026-13-01T16:00:00Z", "not a valid"),
        ("2026-02-30T16:00:00Z", "not a valid"),
        ("0000-01-01T00:00:00Z", "not a valid"),
        ("2026-12-01T24:00:00Z", "not a valid"),
        ("2026-12-31T23:59:60Z", "leap second"),
        ("\u0662026-12-01T16:00:00Z", "offset"),
        ("", "offset"),
    ],
)
def test_parse_rfc3339_refuses(text: str, words: str) -> None:
    """Anything but an RFC 3339 date-time with an offset is refused."""
    with pytest.raises(ValueError, match=words):
        parse_rfc3339(text)


@pytest.mark.parametrize(
    ("value", "wait_s"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),
        ("Thu, 01 Jan 1970 00:00:30 GMT", 0.0),
        ("Thursday, 01-Jan-70 00:01:40 GMT", 40.0),
        ("Thu Jan  1 00:01:40 1970", 40.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("\u0661", None),
        # Numbers that overflow a date rather than fail to parse.
        ("Tue, 01 Dec 99999999999999999999 16:00:00 GMT", None),
        ("Tue, 01 Dec 2026 99999999999999999999:00:00 GMT", None),
        ("Tue, 01 Dec 2026 16:00:00 +99999999999999999999", None),
    ],
)
def test_retry_after_s(value: str, wait_s: float | None) -> None:
    """Retry-After in seconds or as an HTTP-date, from now (60 s)."""
    assert retry_after_s(value, 60.0) == wait_s


@pytest.mark.parametrize(
    ("delay_ms", "status", "wait_s", "cap_s", "expected"),
    [
        (800, 503, 2.0, 3600.0, 2000),
        (800, 429, 2.0, 3600.0, 2000),
        (5000, 503, 2.0, 3600.0, 5000),
        (800, 503, 7200.0, 3600.0, 3_600_000),
        (800, 503, 0.0004, 3600.0, 800),
        (800, 500, 2.0, 3600.0, 800),
        (800, None, 2.0, 3600.0, 800),
        (800, 503, None, 3600.0, 800),
    ],
)
def test_honour_retry_after(
    delay_ms: int,
    status: int | None,
    wait_s: float | None,
    cap_s: float,
    expected: int,
) -> None:
    """A 429 or 503 pushes the retry back to its Retry-After, capped."""
    assert honour_retry_after(delay_ms, status, wait_s, cap_s) == expected
