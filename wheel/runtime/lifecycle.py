"""Process lifecycle: stop signals, process names and supervised loops."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any

from wheel.storage.errors import REDIS_ERRORS

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
REPEAT_INTERVAL_S = 30.0
GC_THRESHOLD = 50_000


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a role's coroutine on uvloop (asyncio's loop without it).

    The cyclic garbage collector is tuned first (:func:`tune_gc`): a busy
    role allocates
    many short-lived objects, and the default threshold ran about a
    thousand collections per 20,000 webhooks (about 9% of a worker's CPU,
    see benchmarks/README.md). Objects alive at start-up are frozen out of
    collection altogether.
    """
    tune_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def tune_gc() -> None:
    """Fewer cyclic collections, none over objects alive at start-up."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def process_name() -> str:
    """A name unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def client_name(role: str) -> str:
    """The name a process of ``role`` gives its Redis connections, so
    ``CLIENT LIST`` tells who holds what."""
    return f"tw:{role}:{process_name()}"


SAME_INTERRUPT_S = 0.5
"""SIGINTs this close to the first are one Ctrl-C delivered twice."""


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT; a second Ctrl-C exits at once.

    A repeated SIGTERM is ignored: supervisors and wrappers (``uv run``,
    say) may each forward one, and the graceful stop is already under way.
    A SIGINT within :data:`SAME_INTERRUPT_S` of the first is the same
    Ctrl-C: the terminal sends it to the whole process group and a
    wrapper such as ``uv run`` forwards it again.
    """
    loop = asyncio.get_running_loop()
    first_at: list[float] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            if (
                signum == signal.SIGINT
                and first_at
                and time.monotonic() - first_at[0] > SAME_INTERRUPT_S
            ):
                log.warning("second interrupt: exiting now")
                os._exit(1)
            log.info("stop already under way", extra={"signal": name})
            return
        log.info("stop signal", extra={"signal": name})
        first_at.append(time.monotonic())
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``stop`` was set meanwhile."""
    if seconds <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


EXPECTED: tuple[type[BaseException], ...] = REDIS_ERRORS
"""Errors of an outage: logged in one line, never with a traceback."""


class LineLimit:
    """At most one log line per key per interval: a line that is not
    written is counted, and the next one written says how many were held
    back. Keys are bounded (a burst of new ones starts afresh)."""

    def __init__(
        self, interval_s: float = 0.0, most_keys: int = 10_000
    ) -> None:
        self.interval_s = interval_s or REPEAT_INTERVAL_S
        self.most_keys = most_keys
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def take(self, key: Hashable) -> int | None:
        """None when a line for ``key`` is to be held back; otherwise
        how many were held back since the last one written."""
        now = time.monotonic()
        since, held = self._seen.get(key, (0.0, -1))
        if held >= 0 and now - since < self.interval_s:
            self._seen[key] = (since, held + 1)
            return None
        if key not in self._seen and len(self._seen) >= self.most_keys:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return max(0, held)

    def log(
        self,
        key: Hashable,
        write: Callable[..., None],
        message: str,
        extra: dict[str, object],
        **options: Any,
    ) -> None:
        """``write(message, extra=extra)`` (a logger's method) unless a
        line for ``key`` was written within the interval; the line says
        how many were held back (``repeats``) when there were some."""
        held = self.take(key)
        if held is None:
            return
        if held:
            extra["repeats"] = held
        write(message, extra=extra, **options)


class ErrorLog:
    """Logs errors quietly: one line per place and kind per interval.

    The first error of a kind at a place is logged at once; repeats within
    :data:`REPEAT_INTERVAL_S` are counted, and the next line for that
    place and kind once the interval has passed says how many (repeats
    that end with the outage are not reported: the connection layer's
    "Redis back" line ends it). Errors of an outage (Redis unreachable)
    get no traceback: the connection layer logs the outage itself.
    """

    def __init__(
        self, logger: logging.Logger, interval_s: float = 0.0
    ) -> None:
        self.log = logger
        self._lines = LineLimit(interval_s)

    def note(
        self, where: str, exc: BaseException, expected: bool = False
    ) -> None:
        """Report ``exc``, raised at ``where``, unless it is a repeat.

        ``expected``: a known condition, not a bug (no traceback), for an
        error type outside :data:`EXPECTED`.
        """
        kind = type(exc).__name__
        extra: dict[str, object] = {
            "where": where,
            "error": f"{kind}: {exc}"[:300],
        }
        quiet = expected or isinstance(exc, EXPECTED)
        self._lines.log(
            (where, kind),
            self.log.warning if quiet else self.log.error,
            "step failed",
            extra,
            exc_info=None if quiet else exc,
        )


async def supervise(
    name: str,
    step: Callable[[], Awaitable[float]],
    stop: asyncio.Event,
    errors: ErrorLog | None = None,
) -> None:
    """Run ``step`` until ``stop``; it returns how long to wait next.

    An error in a step is logged (quietly, see :class:`ErrorLog`) and the
    loop goes on after a pause, so one bad timer or a Redis outage never
    ends a background loop, nor floods the log.
    """
    errors = errors or ErrorLog(log)
    while not stop.is_set():
        try:
            wait_s = await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            errors.note(name, exc)
            wait_s = RESTART_DELAY_S
        await sleep_or_stop(stop, wait_s)
