"""uvicorn's httptools protocol: problems for unparsable requests, and a
response's head and body in one write.

A request uvicorn cannot parse (a bad ``Content-Length``, a broken
request line) never reaches the app: uvicorn answers a plain-text 400
itself. This subclass answers it like every other error of the API, as
an RFC 9457 ``application/problem+json`` document.

uvicorn writes a response's status line and headers, then its body, each
with a call of the transport's ``write``, which is a ``send`` system
call each on an idle socket: a tenth of a ``POST /timer``'s time. Each
request's cycle writes through a `HeadHolder` instead, which keeps the
head until the body comes and sends them together.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
)

from wheel.api.models import Problem, encoder

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""What uvicorn writes, before the response, to a request that expects
``100 Continue``."""


class HeadHolder(asyncio.Transport):
    """A request cycle's transport: the response's head waits for the
    first write after it, and goes out in the same ``write``.

    The head is the cycle's first write other than a ``100 Continue``
    (which goes out at once). Closing sends a head still held, so a
    response that ends without a body (an app that failed after its
    start) reaches the client as before. It keeps no reference to the
    cycle: a cycle between the two would leave every request's objects
    to the garbage collector's full passes.
    """

    __slots__ = ("_head", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``, after the held head; hold it if it is the head."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + bytes(data))
        elif not self._started and data != CONTINUE:
            self._started = True
            self._head = bytes(data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        """Send a held head, then close the connection."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        """Whether the connection is closing."""
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The connection's extra information."""
        return self._transport.get_extra_info(name, default)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose parse errors are problem documents, and
    whose responses go out in one write each."""

    def on_headers_complete(self) -> None:
        """Start the request's cycle, writing through a `HeadHolder`."""
        super().on_headers_complete()
        cycle = self.cycle
        # An upgrade returns before making a cycle: the one there has
        # its holder already.
        if cycle is not None and not isinstance(cycle.transport, HeadHolder):
            cycle.transport = HeadHolder(self.transport)

    def send_400_response(self, msg: str) -> None:
        """Answer an unparsable request with a 400 problem and close."""
        body = encoder.encode(
            Problem("Bad Request", 400, f"the request is malformed: {msg}")
        )
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
