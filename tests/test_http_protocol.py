"""The uvicorn protocol subclass: the private names it relies on exist, a
parse error is answered as a problem, and a response goes out in one
write (uvicorn is capped below its next
minor release for this; a new one must pass these first)."""

from __future__ import annotations

import asyncio
import inspect
import json
from importlib.metadata import version
from typing import Any

import uvicorn
import uvicorn.protocols.http.httptools_impl as private
from uvicorn.server import ServerState as ServerStateOf

from wheel.api.http_protocol import (
    CONTINUE,
    HeadHolder,
    ProblemHttpToolsProtocol,
)


class Transport:
    """What the protocol writes, and whether it closed the connection."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


class ServerState:
    """The one attribute of uvicorn's server state the override reads."""

    default_headers = [(b"server", b"uvicorn")]


def test_the_private_names_still_exist() -> None:
    """uvicorn still has the class, method and status lines overridden."""
    assert issubclass(ProblemHttpToolsProtocol, private.HttpToolsProtocol)
    original = inspect.signature(private.HttpToolsProtocol.send_400_response)
    assert list(original.parameters) == ["self", "msg"]
    assert private.STATUS_LINE[400].startswith(b"HTTP/1.1 400")


def test_uvicorn_is_the_minor_release_it_was_checked_with() -> None:
    """The installed uvicorn is the minor release pyproject.toml allows."""
    major, minor = (int(part) for part in version("uvicorn").split(".")[:2])
    assert (major, minor) == (0, 55)


def test_a_parse_error_is_answered_as_a_problem() -> None:
    """send_400_response writes a problem+json 400 and closes."""
    protocol = object.__new__(ProblemHttpToolsProtocol)
    transport = Transport()
    protocol.transport = transport  # type: ignore[assignment]
    protocol.server_state = ServerState()  # type: ignore[assignment]
    protocol.send_400_response("Invalid header value char")
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/problem+json" in head
    assert b"server: uvicorn" in head
    assert json.loads(body) == {
        "title": "Bad Request",
        "status": 400,
        "detail": "the request is malformed: Invalid header value char",
    }
    assert transport.closed


class Recorder(asyncio.Transport):
    """A connection that records each write apart."""

    def __init__(self) -> None:
        super().__init__({"peername": ("127.0.0.1", 50000)})
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def hello(scope: Any, receive: Any, send: Any) -> None:
    """A plain ASGI app answering every request with a short body."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_response_goes_out_in_one_write() -> None:
    """Through uvicorn's real request cycle, the status line, headers and
    body of a response reach the connection in a single write."""
    config = uvicorn.Config(hello, http=ProblemHttpToolsProtocol)
    config.load()
    protocol = ProblemHttpToolsProtocol(config, ServerStateOf(), {})
    transport = Recorder()
    protocol.connection_made(transport)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(100):
        if transport.writes:
            break
        await asyncio.sleep(0)
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"ok"
    protocol.connection_lost(None)


def test_continue_goes_out_at_once_and_close_sends_a_held_head() -> None:
    """A 100 Continue is not held; a head held when the connection closes
    is written before the close."""
    transport = Recorder()
    holder = HeadHolder(transport)
    holder.write(CONTINUE)
    assert transport.writes == [CONTINUE]
    holder.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    assert transport.writes == [CONTINUE]
    holder.close()
    assert transport.writes[1].startswith(b"HTTP/1.1 500")
    assert transport.closed
