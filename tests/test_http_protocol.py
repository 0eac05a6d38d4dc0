"""The uvicorn protocol subclass: the private names it relies on exist, and
a parse error is answered as a problem (uvicorn is capped below its next
minor release for this; a new one must pass these first)."""

from __future__ import annotations

import inspect
import json
from importlib.metadata import version

import uvicorn.protocols.http.httptools_impl as private

from wheel.api.http_protocol import ProblemHttpToolsProtocol


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
