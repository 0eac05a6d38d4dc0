"""Sending webhooks: one pooled aiohttp session per worker process.

aiohttp is used directly: measured side by side against a local sink it
sends several times more requests per second than httpx's own pool (see
``benchmarks/http_clients.py``), and the webhook client is the firing
bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import aiohttp

from wheel import __version__
from wheel.models import Webhook, encoder

USER_AGENT = f"timer-wheel/{__version__}"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_CONNECT_S = 5.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one webhook attempt."""

    ok: bool
    result: str


class WebhookSender:
    """POSTs ``{"id": ...}`` to timer URLs with bounded timeouts.

    Use as an async context manager; the session is shared by every
    webhook of the process, up to ``concurrency`` connections.
    """

    def __init__(self, timeout_s: float, concurrency: int) -> None:
        self.timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=min(timeout_s, MAX_CONNECT_S)
        )
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.concurrency, ttl_dns_cache=60
            ),
            timeout=self.timeout,
            headers={"User-Agent": USER_AGENT},
            # Cookies set by one receiver must never reach another.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, timer_id: str) -> Delivery:
        """POST the webhook of ``timer_id`` to ``url``; never raises."""
        assert self._session is not None, "use WebhookSender as a context"
        try:
            async with self._session.post(
                url,
                data=encoder.encode(Webhook(timer_id)),
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": timer_id,
                },
                allow_redirects=False,
            ) as response:
                # Read a bounded amount so the connection can be reused;
                # anything longer is dropped with the connection.
                await response.content.read(MAX_RESPONSE_BYTES)
                status = response.status
        except TimeoutError:
            return Delivery(False, f"timeout after {self.timeout.total}s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Delivery(False, f"{type(exc).__name__}: {exc}"[:500])
        return Delivery(200 <= status < 300, f"HTTP {status}")
