"""The sender against a real receiver on 127.0.0.1, the guard on."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from wheel.core.webhook_request import WebhookRequest
from wheel.embedded.server import free_port
from wheel.webhooks.guard import TargetPolicy
from wheel.webhooks.sender import (
    USER_AGENT,
    WebhookSender,
    destination_prefix,
    host_key,
)
from wheel.webhooks.signing import Signer

TIMER_ID = "4f0e2a51-8c3b-4d6e-9a7f-0b1c2d3e4f50"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GUARD = TargetPolicy.build(False, "")
TIMEOUT_S = 2.0


@dataclass
class Arrival:
    """One request as the receiver saw it."""

    path: str
    body: bytes
    headers: dict[str, str]
    method: str = "POST"


@dataclass
class Receiver:
    """An aiohttp receiver on 127.0.0.1 counting its TCP connections."""

    port: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    connections: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        """A URL of this receiver, under the host name ``host``."""
        return f"http://{host}:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record, then answer as the path says."""
        self.arrivals.append(
            Arrival(
                request.path,
                await request.read(),
                dict(request.headers),
                request.method,
            )
        )
        if request.path == "/fail":
            return web.Response(status=500, text="planned failure")
        if request.path.startswith("/status/"):
            status, _, wait = request.path[8:].partition("/")
            headers = {"Retry-After": wait.replace("_", " ")} if wait else {}
            return web.Response(status=int(status), headers=headers)
        if request.path == "/redirect":
            raise web.HTTPFound("/hook")
        if request.path == "/slow":
            await self.released.wait()
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running receiver on a free port of 127.0.0.1."""
    hook = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", hook.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.port = runner.addresses[0][1]
    yield hook
    hook.released.set()
    await runner.cleanup()


@dataclass
class Listener:
    """A bare TCP listener on loopback that counts accepted connections."""

    port: int
    accepted: int = 0


async def listen(host: str) -> tuple[asyncio.Server, Listener]:
    """Listen on a free port of the loopback address ``host``."""
    listener = Listener(0)

    async def accept(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        listener.accepted += 1
        writer.close()

    server = await asyncio.start_server(accept, host, 0)
    listener.port = server.sockets[0].getsockname()[1]
    return server, listener


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def verified(arrival: Arrival) -> object:
    """The body of ``arrival`` once its signature is verified."""
    return Webhook(SECRET).verify(arrival.body, arrival.headers)


async def test_localhost_is_refused_at_connect(receiver: Receiver) -> None:
    """A name resolving to loopback is refused: final, nothing arrives."""
    async with WebhookSender(TIMEOUT_S, 10, GUARD) as sender:
        delivery = await sender.send(receiver.url(host="localhost"), TIMER_ID)
    assert not delivery.ok
    assert delivery.final
    assert delivery.status is None
    assert delivery.result.startswith("refused: ")
    assert "127.0.0.1 is a loopback address" in delivery.result or (
        "::1 is a loopback address" in delivery.result
    )
    assert "(host localhost)" in delivery.result
    assert len(delivery.result) <= 500
    assert receiver.arrivals == []


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.1",
        "017700000001",
        "127.0.0.1.",
        "[::ffff:127.0.0.1]",
    ],
)
async def test_ipv4_loopback_literals_never_connect(host: str) -> None:
    """A loopback literal, in any spelling, is refused before connecting."""
    server, listener = await listen("127.0.0.1")
    try:
        async with WebhookSender(TIMEOUT_S, 10, GUARD) as sender:
            url = f"http://{host}:{listener.port}/"
            delivery = await sender.send(url, TIMER_ID)
    finally:
        server.close()
        await server.wait_closed()
    assert (delivery.ok, delivery.final) == (False, True)
    assert "loopback address" in delivery.result
    assert listener.accepted == 0


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_loopback_literal_never_connects() -> None:
    """``[::1]`` is refused before connecting."""
    server, listener = await listen("::1")
    try:
        async with WebhookSender(TIMEOUT_S, 10, GUARD) as sender:
            url = f"http://[::1]:{listener.port}/"
            delivery = await sender.send(url, TIMER_ID)
    finally:
        server.close()
        await server.wait_closed()
    assert (delivery.ok, delivery.final) == (False, True)
    assert "::1 is a loopback address (host [::1])" in delivery.result
    assert listener.accepted == 0


async def test_credentials_are_refused_at_send(receiver: Receiver) -> None:
    """A URL with credentials (an old timer's, say) is never sent."""
    url = f"http://user:pw@127.0.0.1:{receiver.port}/hook"
    async with WebhookSender(TIMEOUT_S, 10, TargetPolicy.open()) as sender:
        delivery = await sender.send(url, TIMER_ID)
    assert (delivery.ok, delivery.final) == (False, True)
    assert "credentials" in delivery.result
    assert receiver.arrivals == []


@pytest.mark.parametrize(
    ("policy", "host"),
    [
        (TargetPolicy.build(False, "127.0.0.0/8"), "127.0.0.1"),
        (TargetPolicy.build(False, "127.0.0.0/8"), "localhost"),
        (TargetPolicy.build(False, "localhost"), "localhost"),
        (TargetPolicy.build(True, ""), "127.0.0.1"),
        (TargetPolicy.open(), "localhost"),
    ],
    ids=["cidr", "cidr-name", "host-name", "private-on", "open"],
)
async def test_allowed_target_gets_signed_webhook(
    receiver: Receiver, policy: TargetPolicy, host: str
) -> None:
    """Allowed or unguarded: exact body and headers, a valid signature."""
    signer = Signer.from_setting(SECRET)
    async with WebhookSender(TIMEOUT_S, 10, policy, signer) as sender:
        delivery = await sender.send(receiver.url(host=host), TIMER_ID)
    assert delivery.ok, delivery.result
    assert (delivery.result, delivery.status) == ("HTTP 200", 200)
    assert not delivery.final
    (arrival,) = receiver.arrivals
    assert arrival.body == b'{"id":"' + TIMER_ID.encode() + b'"}'
    headers = arrival.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == TIMER_ID
    assert headers["User-Agent"] == USER_AGENT
    assert headers["webhook-id"] == TIMER_ID
    assert headers["webhook-timestamp"].isdigit()
    assert headers["webhook-signature"].startswith("v1,")
    assert verified(arrival) == {"id": TIMER_ID}


async def test_unsigned_without_a_signer(receiver: Receiver) -> None:
    """No signer: the webhook has no webhook-* headers."""
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    async with WebhookSender(TIMEOUT_S, 10, policy) as sender:
        assert (await sender.send(receiver.url(), TIMER_ID)).ok
    (arrival,) = receiver.arrivals
    assert not [h for h in arrival.headers if h.lower().startswith("webhook")]
    assert arrival.headers["Idempotency-Key"] == TIMER_ID


async def test_webhook_id_is_stable_across_retries(
    receiver: Receiver,
) -> None:
    """Two sends of one timer carry one webhook-id; both verify."""
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    signer = Signer.from_setting(SECRET)
    async with WebhookSender(TIMEOUT_S, 10, policy, signer) as sender:
        await sender.send(receiver.url("/fail"), TIMER_ID)
        await sender.send(receiver.url(), TIMER_ID)
    first, second = receiver.arrivals
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert verified(first) == verified(second) == {"id": TIMER_ID}


async def test_server_error_is_retryable(receiver: Receiver) -> None:
    """A 500 answer: not ok, status 500, not final."""
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    async with WebhookSender(TIMEOUT_S, 10, policy) as sender:
        delivery = await sender.send(receiver.url("/fail"), TIMER_ID)
    assert (delivery.ok, delivery.status, delivery.final) == (
        False,
        500,
        False,
    )
    assert delivery.result == "HTTP 500"


async def test_redirect_is_not_followed(receiver: Receiver) -> None:
    """A 302 is the answer: it is not followed to its Location."""
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    async with WebhookSender(TIMEOUT_S, 10, policy) as sender:
        delivery = await sender.send(receiver.url("/redirect"), TIMER_ID)
    assert (delivery.ok, delivery.status, delivery.final) == (
        False,
        302,
        False,
    )
    assert [a.path for a in receiver.arrivals] == ["/redirect"]


async def test_slow_receiver_times_out(receiver: Receiver) -> None:
    """A receiver slower than the timeout: a retryable timeout."""
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    async with WebhookSender(0.2, 10, policy) as sender:
        delivery = await sender.send(receiver.url("/slow"), TIMER_ID)
    assert delivery == type(delivery)(False, "timeout after 0.2s")
    assert len(receiver.arrivals) == 1


async def test_connection_refused_is_retryable() -> None:
    """Nothing listening: a connector error that is not final."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    async with WebhookSender(TIMEOUT_S, 10, TargetPolicy.open()) as sender:
        delivery = await sender.send(url, TIMER_ID)
    assert (delivery.ok, delivery.final, delivery.status) == (
        False,
        False,
        None,
    )
    assert delivery.result.startswith("ClientConnectorError")


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://Example.COM/hook", "example.com"),
        ("http://example.com:80/hook", "example.com"),
        ("https://example.com:443/", "example.com"),
        ("https://example.com:80/", "example.com:80"),
        ("http://example.com.:8080/a?b#c", "example.com:8080"),
        ("http://u:p@Example.com:8080/x@y", "example.com:8080"),
        ("http://example.com?q=1", "example.com"),
        ("http://example.com#frag", "example.com"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("http://[::1]/", "[::1]"),
        ("HTTP://EXAMPLE.COM:80", "example.com"),
    ],
)
def test_host_key(url: str, key: str) -> None:
    """One key per destination: case, default port and userinfo aside."""
    assert host_key(url) == key


class _AnswersLate(BaseHTTPRequestHandler):
    """Says it got the request, then answers 200 a moment later."""

    arrived: threading.Event

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).arrived.set()
        time.sleep(0.05)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


async def test_an_answer_waiting_after_a_stall_is_read_not_timed_out() -> None:
    """The worker's loop stalls past the timeout (as in a stopped
    process or a paused machine) while the receiver answers: the answer
    is read and the attempt succeeds. Timing it out would retry a
    webhook the receiver already took: a duplicate."""
    arrived = threading.Event()
    handler = type("Handler", (_AnswersLate,), {"arrived": arrived})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        async with WebhookSender(0.3, 10, TargetPolicy.open()) as sender:
            sending = asyncio.create_task(sender.send(url, TIMER_ID))
            for _ in range(400):
                if arrived.is_set():
                    break
                await asyncio.sleep(0.005)
            assert arrived.is_set()
            # The stall: the loop does not run while the answer comes.
            time.sleep(1.0)  # noqa: ASYNC251 (the stall under test)
            delivery = await sending
    finally:
        server.shutdown()
        server.server_close()
    assert delivery.ok, delivery
    assert delivery.status == 200


async def test_own_request_is_sent_byte_for_byte_and_signed(
    receiver: Receiver,
) -> None:
    """A PUT with headers and a text body arrives exactly as given; the
    signature covers that body."""
    body = "line one\nline two: caf\u00e9 \u2603"
    request = WebhookRequest(
        "PUT",
        (("Authorization", "Bearer abc"), ("Content-Type", "text/plain")),
        body,
    )
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    signer = Signer.from_setting(SECRET)
    async with WebhookSender(TIMEOUT_S, 10, policy, signer) as sender:
        delivery = await sender.send(receiver.url(), TIMER_ID, request)
    assert delivery.ok, delivery.result
    (arrival,) = receiver.arrivals
    assert arrival.method == "PUT"
    assert arrival.body == body.encode()
    assert arrival.headers["Authorization"] == "Bearer abc"
    assert arrival.headers["Content-Type"] == "text/plain"
    assert arrival.headers["Idempotency-Key"] == TIMER_ID
    assert arrival.headers["User-Agent"] == USER_AGENT
    # The library's own signature of the body as it arrived (verify()
    # would also parse it as JSON).
    stamp = datetime.fromtimestamp(
        int(arrival.headers["webhook-timestamp"]), tz=UTC
    )
    expected = Webhook(SECRET).sign(TIMER_ID, stamp, arrival.body.decode())
    assert arrival.headers["webhook-signature"] == expected


@pytest.mark.parametrize(
    ("request_", "method", "body", "content_type"),
    [
        (WebhookRequest("GET"), "GET", b"", None),
        (WebhookRequest("DELETE"), "DELETE", b"", None),
        (
            WebhookRequest("PATCH"),
            "PATCH",
            b'{"id":"' + TIMER_ID.encode() + b'"}',
            "application/json",
        ),
        (
            WebhookRequest(headers=(("X-Tenant", "7"),)),
            "POST",
            b'{"id":"' + TIMER_ID.encode() + b'"}',
            "application/json",
        ),
        (WebhookRequest(body=""), "POST", b"", "application/json"),
    ],
)
async def test_parts_not_given_keep_their_defaults(
    receiver: Receiver,
    request_: WebhookRequest,
    method: str,
    body: bytes,
    content_type: str | None,
) -> None:
    """Without a body, POST, PUT and PATCH send the default JSON and GET
    and DELETE nothing (no Content-Type either)."""
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    async with WebhookSender(TIMEOUT_S, 10, policy) as sender:
        assert (await sender.send(receiver.url(), TIMER_ID, request_)).ok
    (arrival,) = receiver.arrivals
    assert (arrival.method, arrival.body) == (method, body)
    assert arrival.headers.get("Content-Type") == content_type


@pytest.mark.parametrize(
    ("path", "retry_after"),
    [
        ("/status/503/7", 7.0),
        ("/status/429/0", 0.0),
        ("/status/503/Thu,_01_Jan_1970_00:00:00_GMT", 0.0),
        ("/status/503/soon", None),
        # A year that overflows: the answer stands, without a wait.
        ("/status/503/Tue,_01_Dec_99999999999999999999_16:00:00_GMT", None),
        ("/status/500/7", None),
        ("/status/503", None),
    ],
)
async def test_retry_after_of_429_and_503_is_read(
    receiver: Receiver, path: str, retry_after: float | None
) -> None:
    """Retry-After (seconds or an HTTP-date) is read from a 429 or 503."""
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    async with WebhookSender(TIMEOUT_S, 10, policy) as sender:
        delivery = await sender.send(receiver.url(path), TIMER_ID)
    assert not delivery.ok
    assert delivery.retry_after_s == retry_after


async def test_retry_after_as_a_future_date(receiver: Receiver) -> None:
    """An HTTP-date ahead asks for the seconds until then."""
    when = formatdate(time.time() + 120, usegmt=True).replace(" ", "_")
    policy = TargetPolicy.build(False, "127.0.0.0/8")
    async with WebhookSender(TIMEOUT_S, 10, policy) as sender:
        delivery = await sender.send(
            receiver.url(f"/status/503/{when}"), TIMER_ID
        )
    assert delivery.retry_after_s is not None
    assert 115 <= delivery.retry_after_s <= 120


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("http://a.example/hook", "http://a.example"),
        ("http://a.example", "http://a.example"),
        ("https://A.Example:8443?x=1", "https://A.Example:8443"),
        ("http://a.example#frag", "http://a.example"),
        ("http://u:p@a.example/x", "http://u:p@a.example"),
        ("http://a.example\\@127.0.0.1/x", "http://a.example"),
        ("http://[::1]:8080/x", "http://[::1]:8080"),
        ("mailto:someone", ""),
        ("a:b://c/d", ""),
    ],
)
def test_destination_prefix_is_the_url_up_to_its_authority(
    url: str, prefix: str
) -> None:
    """As spelled, without normalising; "" without scheme://."""
    assert destination_prefix(url) == prefix
