"""Process lifecycle: stop signals, process names and supervised loops."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable

log = logging.getLogger("wheel.lifecycle")

RESTART_DELAY_S = 1.0


def process_name() -> str:
    """A name unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT (a second one exits at once)."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second stop signal: exiting now")
            os._exit(1)
        log.info("stop signal", extra={"signal": signal.Signals(signum).name})
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


async def supervise(
    name: str,
    step: Callable[[], Awaitable[float]],
    stop: asyncio.Event,
) -> None:
    """Run ``step`` until ``stop``; it returns how long to wait next.

    An error in a step is logged and the loop goes on after a pause, so
    one bad timer or a Redis blip never ends a background loop silently.
    """
    while not stop.is_set():
        try:
            wait_s = await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("loop step failed", extra={"loop": name})
            wait_s = RESTART_DELAY_S
        await sleep_or_stop(stop, wait_s)
