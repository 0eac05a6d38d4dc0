"""The service seen from outside: create and read timers over HTTP.

Timers are only ever created with ``POST /timer`` and due times only
read with ``GET /timer/{id}`` (``due_at``), so one harness measures any
version of the service.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp

HEADERS = {"Content-Type": "application/json"}


def delay_body(url: str, seconds: int) -> dict[str, object]:
    """A create body for a delay of whole ``seconds``."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    body: dict[str, object] = {"url": url, "seconds": secs}
    if hours:
        body["hours"] = hours
    if minutes:
        body["minutes"] = minutes
    return body


def epoch_ms(instant: str) -> int:
    """Epoch ms of an RFC 3339 ``due_at`` such as ...T10:00:00.123Z."""
    return round(datetime.fromisoformat(instant).timestamp() * 1000)


@dataclass
class Creator:
    """Creates timers through one or more API processes, round robin."""

    api_urls: Sequence[str]
    lanes: int = 64
    extra: dict[str, object] = field(default_factory=dict)
    """Fields added to every body (a ``request``, say)."""
    ids: list[str] = field(default_factory=list)
    errors: collections.Counter[str] = field(
        default_factory=collections.Counter
    )
    _n: int = 0

    async def post(
        self, http: aiohttp.ClientSession, body: dict[str, object]
    ) -> str | None:
        self._n += 1
        base = self.api_urls[self._n % len(self.api_urls)]
        try:
            async with http.post(f"{base}/timer", json=body) as reply:
                if reply.status != 201:
                    self.errors[f"HTTP {reply.status}"] += 1
                    await reply.read()
                    return None
                timer_id = (await reply.json())["id"]
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return None
        self.ids.append(timer_id)
        return timer_id

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.lanes),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def delays(
        self, url: str | Sequence[str], seconds: Iterable[int]
    ) -> list[str]:
        """One timer per delay (whole seconds), ``lanes`` at a time; with
        several URLs, the timers go to them in turn."""
        source = enumerate(seconds)
        urls = [url] if isinstance(url, str) else list(url)
        made: list[str] = []
        async with self.session() as http:

            async def lane() -> None:
                for n, delay in source:
                    body = delay_body(urls[n % len(urls)], delay)
                    timer_id = await self.post(http, {**body, **self.extra})
                    if timer_id:
                        made.append(timer_id)

            await asyncio.gather(*(lane() for _ in range(self.lanes)))
        return made

    async def burst(
        self, url: str | Sequence[str], count: int, due_at: float
    ) -> list[str]:
        """``count`` timers due at the whole second nearest ``due_at``
        (a request sent at t asks for ceil(due_at - t) seconds, so the
        due times span up to one second)."""

        def delays() -> Iterable[int]:
            for _ in range(count):
                yield max(1, math.ceil(due_at - time.time()))

        return await self.delays(url, delays())

    async def at_rate(
        self,
        url: str | Sequence[str],
        rate: float,
        duration_s: float,
        delay_s: int,
    ) -> list[str]:
        """Create at ``rate``/s for ``duration_s``, each due in delay_s."""
        urls = [url] if isinstance(url, str) else list(url)
        total = int(rate * duration_s)
        tasks: set[asyncio.Task[str | None]] = set()
        first = len(self.ids)
        async with self.session() as http:
            started = time.monotonic()
            sent = 0
            while sent < total:
                due = min(total, int((time.monotonic() - started) * rate))
                while sent < due:
                    target = urls[sent % len(urls)]
                    task = asyncio.create_task(
                        self.post(http, delay_body(target, delay_s))
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                await asyncio.sleep(0.005)
            if tasks:
                await asyncio.wait(tasks)
        return self.ids[first:]


async def read_views(
    api_url: str, ids: Sequence[str], lanes: int = 64
) -> dict[str, dict]:
    """``GET /timer/{id}`` of every id; each view gains ``due_ms``."""
    views: dict[str, dict] = {}
    source = iter(ids)
    connector = aiohttp.TCPConnector(limit=lanes)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def lane() -> None:
            for timer_id in source:
                async with http.get(f"{api_url}/timer/{timer_id}") as reply:
                    if reply.status != 200:
                        await reply.read()
                        continue
                    view = await reply.json()
                view["due_ms"] = epoch_ms(view["due_at"])
                views[timer_id] = view

        await asyncio.gather(*(lane() for _ in range(lanes)))
    return views


def first_arrivals(dump: dict[str, list]) -> tuple[dict[str, float], dict]:
    """First arrival (epoch s) per id and how often each id arrived."""
    first: dict[str, float] = {}
    count: collections.Counter[str] = collections.Counter()
    for timer_id, at in zip(dump["ids"], dump["times"], strict=True):
        count[timer_id] += 1
        if timer_id not in first:
            first[timer_id] = at
    return first, count


def lateness_ms(
    views: dict[str, dict], first: dict[str, float]
) -> list[float]:
    """Arrival minus ``due_at`` of every delivered id with a view."""
    return [
        first[i] * 1000 - view["due_ms"]
        for i, view in views.items()
        if i in first
    ]
