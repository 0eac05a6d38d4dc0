"""The API behind granian's RSGI interface, for ``api_load.py --server
granian-rsgi``: the server route the README's performance section
measured before choosing uvicorn.

``POST /timer`` and ``GET /timer/{id}`` go straight to the application's
own endpoints (``TimerApp.shortcut``, as under ASGI)
and answer with ``response_bytes``, so neither the request nor the
response passes through a Python HTTP server; every other request is
bridged to the same Starlette application over ASGI. The lifespan runs
in granian's ``__rsgi_init__`` and ``__rsgi_del__`` hooks.

granian serves ``rsgi_app:rsgi`` (``serve_api.py`` puts this folder on
the path); the module imports the code under test's ``api`` module, so it
runs in that code's folder and interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.requests import Request

from api import app as asgi_app

log = logging.getLogger("rsgi_app")

MAX_BODY_BYTES = 64 * 1024
"""Bodies declared up to this size are read in one call (the endpoint
refuses larger ones itself, reading them chunk by chunk)."""

Message = dict[str, Any]


class RsgiApp:
    """An RSGI application around the API's Starlette application."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lifespan: contextlib.AbstractAsyncContextManager[Any] | None = (
            None
        )

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start-up (granian calls it before serving, the loop idle)."""
        self._lifespan = self.app.router.lifespan_context(self.app)
        loop.run_until_complete(self._lifespan.__aenter__())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Shutdown."""
        if self._lifespan is not None:
            loop.run_until_complete(self._lifespan.__aexit__(None, None, None))

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        """Serve one request."""
        if scope.proto != "http":
            protocol.close(403)
            return
        asgi = _asgi_scope(scope, self.app)
        bridge = _Bridge(protocol)
        endpoint = self.app.shortcut(asgi)
        if endpoint is None:
            await self.app(asgi, bridge.receive, bridge.send)
            bridge.finish()
            return
        receive = bridge.receive
        declared = scope.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) <= MAX_BODY_BYTES:
            receive = _whole(await protocol())
        try:
            response = await endpoint(Request(asgi, receive))
        except Exception:
            log.exception("request failed", extra={"path": scope.path})
            protocol.response_empty(500, [])
            return
        protocol.response_bytes(
            response.status_code,
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in response.raw_headers
            ],
            response.body,
        )


def _whole(body: bytes) -> Any:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _asgi_scope(scope: Any, app: Any) -> Message:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": scope.path,
        "raw_path": scope.path.encode("latin-1"),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in scope.headers.items()
        ],
        "client": _address(scope.client),
        "server": _address(scope.server),
        "app": app,
    }


def _address(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class _Bridge:
    """ASGI's ``receive`` and ``send`` over one RSGI protocol."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self._chunks: Any = None
        self._done = False
        self._status = 500
        self._headers: list[tuple[str, str]] = []
        self._stream: Any = None
        self._answered = False

    async def receive(self) -> Message:
        """The body, chunk by chunk; then a disconnect, once it happens."""
        if self._done:
            await self.protocol.client_disconnect()
            return {"type": "http.disconnect"}
        if self._chunks is None:
            self._chunks = self.protocol.__aiter__()
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message: Message) -> None:
        """One response in one call when it can, streamed otherwise."""
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", ())
            ]
        elif kind == "http.response.body":
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self._stream is None and not more:
                self.protocol.response_bytes(self._status, self._headers, body)
                self._answered = True
                return
            if self._stream is None:
                self._stream = self.protocol.response_stream(
                    self._status, self._headers
                )
            if body:
                await self._stream.send_bytes(body)
            if not more:
                self._answered = True

    def finish(self) -> None:
        """Answer a request the application left unanswered."""
        if not self._answered and self._stream is None:
            self.protocol.response_empty(self._status, self._headers)


rsgi = RsgiApp(asgi_app)
