"""A webhook sink on 127.0.0.1 that answers 200 and can record arrivals.

Run as its own process so it never shares an event loop with the client
under test::

    python benchmarks/sink.py --port 9100 [--port 9101 ...] [--record] \\
        [--uvloop] [--delay-s 3600]

Every ``--port`` is one more listening socket of the same sink (to the
service, each port is another receiver host). Any ``POST`` (or other
method) answers ``200 {"received": true}``, after ``--delay-s`` seconds
when given (a receiver that hangs until the sender's timeout; a request
whose sender hangs up is dropped). With ``--record`` each arrival's
``Idempotency-Key`` and ``time.time()`` are kept in memory.
``GET /_count`` returns ``{"count", "in_flight", "max_in_flight"}``
(count is every arrival, recorded or not) and ``GET /_dump`` returns the
recorded ones as ``{"ids": [...], "times": [...]}``. Stops on
SIGTERM/SIGINT.

The sink shares the machine with the service it measures, so it is an
``asyncio.Protocol`` over httptools' parser (the C parser uvicorn uses)
rather than a web framework: an aiohttp server spent 36 µs of CPU per
webhook here (this one 5 µs), a third of what the worker spends to send
it, and on a 2-core machine that CPU is the service's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import cast

import httptools

REPLY_BODY = b'{"received": true}'


def _response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


REPLY = _response(REPLY_BODY)
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


class Arrivals:
    """What the sink counts and records, shared by every connection."""

    def __init__(self, record: bool, delay_s: float) -> None:
        self.record = record
        self.delay_s = delay_s
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.ids: list[str] = []
        self.times: list[float] = []

    def arrived(self, key: bytes) -> None:
        self.count += 1
        if self.record:
            self.times.append(time.time())
            self.ids.append(key.decode("latin-1"))

    def view(self, path: bytes) -> bytes | None:
        """The body of a harness read at ``path``; None for a webhook."""
        if path == b"/_count":
            return json.dumps(
                {
                    "count": self.count,
                    "in_flight": self.in_flight,
                    "max_in_flight": self.max_in_flight,
                }
            ).encode()
        if path == b"/_dump":
            return json.dumps({"ids": self.ids, "times": self.times}).encode()
        return None


class SinkProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: keep-alive unless the client says
    otherwise, one request at a time (a request pipelined behind a held
    one is refused and the connection closed; reading goes on, so a
    sender that hangs up is seen)."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.path = b""
        self.key = b""
        self.held: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.held is not None:
            self.held.cancel()
            self.held = None
            self.arrivals.in_flight -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            # This sink's own fault, not the client's: the loop reports
            # it and closes the connection.
            raise
        except httptools.HttpParserUpgrade:
            # Answered already; nothing is upgraded.
            if self.transport is not None:
                self.transport.close()
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()

    # httptools' callbacks.
    def on_message_begin(self) -> None:
        self.path = b""
        self.key = b""

    def on_url(self, url: bytes) -> None:
        self.path += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 15 and name.lower() == b"idempotency-key":
            self.key = value

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.parser.get_method() == b"GET":
            body = self.arrivals.view(self.path.partition(b"?")[0])
            if body is not None:
                self._reply(transport, _response(body))
                return
        if self.held is not None:
            # Pipelined behind a held request: one held reply at a time.
            transport.write(BAD_REQUEST)
            transport.close()
            return
        arrivals = self.arrivals
        arrivals.arrived(self.key)
        if not arrivals.delay_s:
            self._reply(transport, REPLY)
            return
        arrivals.in_flight += 1
        arrivals.max_in_flight = max(
            arrivals.max_in_flight, arrivals.in_flight
        )
        self.held = asyncio.get_running_loop().call_later(
            arrivals.delay_s, self._release
        )

    def _reply(self, transport: asyncio.Transport, response: bytes) -> None:
        transport.write(response)
        if not self.parser.should_keep_alive():
            transport.close()

    def _release(self) -> None:
        self.held = None
        self.arrivals.in_flight -= 1
        if self.transport is not None:
            self._reply(self.transport, REPLY)


async def serve(arrivals: Arrivals, ports: list[int]) -> None:
    """Listen on every port until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(
            lambda: SinkProtocol(arrivals),
            "127.0.0.1",
            port,
            backlog=4096,
        )
        for port in ports
    ]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    arrivals = Arrivals(args.record, args.delay_s)
    loop.run_until_complete(serve(arrivals, args.port))


if __name__ == "__main__":
    main()
