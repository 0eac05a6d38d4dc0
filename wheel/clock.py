"""An estimate of Redis' clock, learnt from the replies of its scripts.

Redis' ``TIME`` is the one clock for due times. Callers that must name a
wheel slot before a script runs (the slot key is declared in ``KEYS``)
estimate Redis' time from the last ``now_ms`` a script returned plus the
local monotonic time since. The estimate lags by about half a round trip,
which is the safe side: the scripts accept the due minute or the one
before it, and refuse a later one.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RedisClock:
    """Redis' time in epoch ms, estimated from observed script replies."""

    def __init__(
        self, monotonic_ms: Callable[[], float] | None = None
    ) -> None:
        self._monotonic_ms = monotonic_ms or _monotonic_ms
        self._redis_ms: int | None = None
        self._seen_at = 0.0

    @property
    def synced(self) -> bool:
        """Whether any Redis time has been observed yet."""
        return self._redis_ms is not None

    def observe(self, redis_ms: int) -> None:
        """Record a time Redis reported (from ``TIME`` or a script)."""
        self._redis_ms = redis_ms
        self._seen_at = self._monotonic_ms()

    def now_ms(self) -> int:
        """The estimated current Redis time in epoch ms."""
        if self._redis_ms is None:
            raise RuntimeError("the clock has not observed Redis yet")
        return self._redis_ms + int(self._monotonic_ms() - self._seen_at)


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


def redis_time_ms(reply: tuple[int, int] | list[int]) -> int:
    """Epoch ms from a ``TIME`` reply of (seconds, microseconds)."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000
