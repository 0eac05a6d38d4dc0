"""Sending webhooks: one pooled aiohttp session per worker process.

aiohttp is used directly: measured side by side against a local sink it
sends several times more requests per second than httpx's own pool (see
``benchmarks/http_clients.py``), and the webhook client is the firing
bottleneck.
"""

from __future__ import annotations

import asyncio
import time
from typing import Self

import aiohttp
import msgspec
from yarl import URL

from wheel import __version__
from wheel.core.delays import (
    RETRY_AFTER_STATUSES,
    STALL_GRACE_S,
    retry_after_s,
)
from wheel.core.urls import authority_end
from wheel.core.webhook_request import WebhookRequest
from wheel.webhooks.guard import GuardedResolver, TargetPolicy, TargetRefused
from wheel.webhooks.signing import Signer

USER_AGENT = f"timer-wheel/{__version__}"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_CONNECT_S = 5.0
MAX_RESULT_CHARS = 500
# Bounds the per-host verdict cache; hosts are few, urls are many.
MAX_CACHED_HOSTS = 10_000

_DEFAULT_PORTS = {"http": "80", "https": "443"}


class Webhook(msgspec.Struct):
    """Body of the webhook POSTed when a timer fires."""

    id: str


_encode = msgspec.json.Encoder().encode

STALL_S = 0.25
"""A webhook's deadline that fires this late means the event loop was not
running (the process was stopped, its machine paused, a call blocked):
the receiver's answer may be sitting unread in the socket."""
GRACE_S = 0.5
"""How long such a webhook gets to read that answer before it times out."""
MAX_GRACES = round(STALL_GRACE_S / GRACE_S)
"""Graces in all: STALL_GRACE_S at most, which the settings check counts
in the time a claim must hold."""


class _Deadline:
    """Expires ``timeout`` ``after_s`` from now, unless the loop stalled.

    A timer that runs after a stall runs before the loop reads the
    sockets that became readable meanwhile, so a plain timeout would
    fail a webhook the receiver had already answered, and its retry
    would deliver it twice. A deadline that fires more than
    :data:`STALL_S` late gives the request :data:`GRACE_S` more, a few
    times at most, and then expires it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: asyncio.Timeout,
        after_s: float,
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._graces = 0
        self._at = loop.time() + after_s
        self._handle = loop.call_at(self._at, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if now - self._at > STALL_S and self._graces < MAX_GRACES:
            self._graces += 1
            self._at = now + GRACE_S
            self._handle = self._loop.call_at(self._at, self._check)
            return
        self._timeout.reschedule(now)

    def cancel(self) -> None:
        """The request ended first."""
        self._handle.cancel()


class Delivery(msgspec.Struct, frozen=True):
    """The outcome of one webhook attempt.

    ``status`` is the HTTP status when a response came; ``final`` is True
    when no retry can succeed (the guard refused the target);
    ``retry_after_s`` is the wait a 429 or 503 asked for with
    ``Retry-After``, None when it asked for none.
    """

    ok: bool
    result: str
    status: int | None = None
    final: bool = False
    retry_after_s: float | None = None

    @classmethod
    def failed(cls, exc: BaseException) -> Delivery:
        """An attempt that ended with ``exc`` and no answer."""
        return cls(False, f"{type(exc).__name__}: {exc}"[:MAX_RESULT_CHARS])


def host_key(url: str) -> str:
    """The lower-cased ``host[:port]`` of ``url``, to count per destination.

    The default port of the scheme and a trailing dot are dropped, so
    spellings of one destination share a key.
    """
    scheme, _, rest = url.partition("://")
    end = authority_end(rest, "/?#\\")
    authority = rest[rest.rfind("@", 0, end) + 1 : end].lower()
    host, colon, port = authority.rpartition(":")
    if not colon or "]" in port:
        host, port = authority, ""
    elif port == _DEFAULT_PORTS.get(scheme.lower()):
        port = ""
    host = host.rstrip(".")
    return f"{host}:{port}" if port else host


def destination_prefix(url: str) -> str:
    """``url`` up to the end of its authority, as spelled (``""`` when it
    has no ``scheme://``): what the claim script matches to defer the
    timers of a saturated destination (``claim.lua`` makes the same
    match). Unlike :func:`host_key` nothing is normalised, so spellings
    of one host are different prefixes: such a timer is claimed and then
    deferred by the worker instead."""
    scheme, sep, rest = url.partition("://")
    if not sep or any(c in scheme for c in ":/?#"):
        return ""
    return scheme + sep + rest[: authority_end(rest, "/?#\\")]


class WebhookSender:
    """POSTs ``{"id": ...}`` (or a timer's own request) to timer URLs
    with bounded timeouts.

    Use as an async context manager; the session is shared by every
    webhook of the process, up to ``concurrency`` connections. Targets
    the ``policy`` refuses are never connected to; with a ``signer``
    each webhook carries Standard Webhooks signature headers.
    """

    def __init__(
        self,
        timeout_s: float,
        concurrency: int,
        policy: TargetPolicy,
        signer: Signer | None = None,
    ) -> None:
        # The total is enforced by ``_Deadline``, which forgives a stall.
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=min(timeout_s, MAX_CONNECT_S)
        )
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.policy = policy
        self.signer = signer
        self._timeout_result = f"timeout after {timeout_s}s"
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._host_refusals: dict[str, str | None] = {}

    async def __aenter__(self) -> Self:
        if self.policy.guarded:
            self._resolver = GuardedResolver(self.policy)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                # No per-host limit here: the caller enforces its own.
                limit=self.concurrency,
                ttl_dns_cache=60,
                resolver=self._resolver,
            ),
            timeout=self.timeout,
            # Content-Type is per request: a GET has none.
            headers={"User-Agent": USER_AGENT},
            # Cookies set by one receiver must never reach another.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    def _refusal(self, target: URL) -> str | None:
        """Why the guard refuses ``target`` before any connection."""
        host = target.raw_host or ""
        try:
            reason = self._host_refusals[host]
        except KeyError:
            # aiohttp never resolves a literal address, so the resolver
            # cannot judge it: a timer created while the guard was off
            # is stopped here.
            reason = self.policy.host_refusal(host)
            if len(self._host_refusals) >= MAX_CACHED_HOSTS:
                self._host_refusals.clear()
            self._host_refusals[host] = reason
        if reason is not None:
            return f"{reason} (host {_named(host)})"
        if target.raw_user is not None or target.raw_password is not None:
            return f"must not carry credentials (host {_named(host)})"
        return None

    async def send(
        self, url: str, timer_id: str, request: WebhookRequest | None = None
    ) -> Delivery:
        """Send the webhook of ``timer_id`` to ``url``: ``POST {"id"}``,
        or the timer's own ``request``; never raises."""
        session = self._session
        assert session is not None, "use WebhookSender as a context"
        try:
            # Parsed once here; aiohttp takes the URL object as it is.
            target = URL(url)
        except (ValueError, TypeError) as exc:
            return Delivery.failed(exc)
        refusal = self._refusal(target)
        if refusal is not None:
            return Delivery(False, _refused(refusal), final=True)
        method, body, headers = _request_parts(timer_id, request)
        if self.signer is not None:
            # The timer id as webhook-id: stable across its retries. The
            # signature covers the body as sent (empty for a GET).
            headers.update(self.signer.headers(timer_id, body or b""))
        headers["Idempotency-Key"] = timer_id
        try:
            async with asyncio.timeout(None) as timeout:
                deadline = _Deadline(
                    asyncio.get_running_loop(), timeout, self.timeout_s
                )
                try:
                    async with session.request(
                        method,
                        target,
                        data=body,
                        headers=headers,
                        allow_redirects=False,
                    ) as response:
                        # Read a bounded amount so the connection can be
                        # reused; anything longer is dropped with it.
                        await response.content.read(MAX_RESPONSE_BYTES)
                        status = response.status
                        wait = response.headers.get("Retry-After")
                finally:
                    deadline.cancel()
        except TimeoutError:
            return Delivery(False, self._timeout_result)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, TargetRefused):
                return Delivery(False, _refused(str(exc.os_error)), final=True)
            return Delivery.failed(exc)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Delivery.failed(exc)
        retry_after = None
        if wait is not None and status in RETRY_AFTER_STATUSES:
            retry_after = retry_after_s(wait, time.time())
        return Delivery(
            200 <= status < 300, f"HTTP {status}", status, False, retry_after
        )


def _request_parts(
    timer_id: str, request: WebhookRequest | None
) -> tuple[str, bytes | None, dict[str, str]]:
    """Method, body and headers of a webhook (before signing)."""
    default = _encode(Webhook(timer_id))
    if request is None:
        return "POST", default, {"Content-Type": "application/json"}
    headers = dict(request.headers)
    body = request.body_bytes(default)
    if body is not None and not any(
        name.lower() == "content-type" for name in headers
    ):
        headers["Content-Type"] = "application/json"
    return request.method, body, headers


def _named(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _refused(reason: str) -> str:
    return f"refused: {reason}"[:MAX_RESULT_CHARS]
