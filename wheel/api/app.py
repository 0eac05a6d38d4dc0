"""The HTTP API application: ``create_app()``, and the short way in for
the two busiest endpoints.

Endpoints live in ``wheel.api.timers`` (timers, health) and
``wheel.api.operators`` (operators); ``wheel.api.routes`` is the table of
both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from wheel.api.models import Problem
from wheel.api.response_parts import problem_response
from wheel.api.routes import routes
from wheel.api.timers import Api, Endpoint
from wheel.runtime import lifecycle, logs
from wheel.settings import Settings, from_env
from wheel.storage.connection import Connection, connect
from wheel.storage.registry import IdentityError

log = logging.getLogger(__name__)

IDENTITY_WAIT_S = 5.0
"""How long start-up waits for Redis before serving (503s meanwhile)."""


def create_app(
    settings: Settings | None = None, connection: Connection | None = None
) -> Starlette:
    """The API application.

    Args:
        settings: defaults to the environment's.
        connection: one to share (and not close), as ``run`` does; by
            default one is built from ``settings`` and closed at shutdown.
    """
    settings = settings or from_env()
    own = connection is None
    api = Api(
        settings,
        connection or connect(settings, lifecycle.client_name("api")),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not logging.getLogger().handlers:
            # A uvicorn worker process (--workers > 1) starts without the
            # CLI's logging set-up.
            logs.setup(settings.log_format, settings.log_level)
        lifecycle.tune_gc()
        checking = asyncio.create_task(api.check_identity())
        checking.add_done_callback(_stop_on_mismatch)
        # Refuse at once on a mismatch; with Redis down, serve 503s (and
        # 200 on /healthz) while the check goes on.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(checking), IDENTITY_WAIT_S)
        try:
            yield
        finally:
            checking.cancel()
            if own:
                await api.connection.aclose()

    app = TimerApp(
        routes=routes(api),
        exception_handlers={HTTPException: _on_http_exception},
        lifespan=lifespan,
    )
    # ``POST /timer/`` answers like any unknown path, never a redirect.
    assert isinstance(app.router, Router)
    app.router.redirect_slashes = False
    app.state.api = api
    return app


ID_PATH_LENGTH = len("/timer/") + 36


class TimerApp(Starlette):
    """Starlette, with a short way in for ``POST /timer`` and
    ``GET /timer/{id}``.

    Those two carry nearly all the traffic; they go straight to their
    endpoint (the same wrapped endpoint the router would call: token
    check, problem answers, timing), skipping the middleware stack and
    the route matching, a tenth of a request's time. Everything else,
    and every request the shortcut does not recognise, takes the
    normal way.
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("middleware"):
            raise TypeError(
                "TimerApp takes no middleware: its short way in would skip it"
            )
        super().__init__(**kwargs)

    def add_middleware(self, *args: Any, **kwargs: Any) -> None:
        """Refused: ``POST /timer`` and ``GET /timer/{id}`` skip the
        middleware stack, so a middleware would silently miss them."""
        raise TypeError(
            "TimerApp takes no middleware: its short way in would skip it"
        )

    def shortcut(self, scope: Scope) -> Endpoint | None:
        """The endpoint that serves ``scope`` the short way (its path
        parameters set in ``scope``), or None for the normal way."""
        path = scope["path"]
        method = scope["method"]
        if method == "POST" and path == "/timer":
            return self.state.api.hot["POST"]
        if (
            method == "GET"
            and len(path) == ID_PATH_LENGTH
            and path.startswith("/timer/")
        ):
            scope["path_params"] = {"timer_id": path[7:]}
            return self.state.api.hot["GET"]
        return None

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "http":
            path = scope["path"]
            endpoint = self.shortcut(scope)
            if endpoint is not None:
                scope["app"] = self
                try:
                    response = await endpoint(Request(scope, receive))
                except Exception:
                    log.exception("request failed", extra={"path": path})
                    response = problem_response(
                        Problem(
                            "Internal Server Error",
                            500,
                            "the request failed unexpectedly",
                        )
                    )
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _stop_on_mismatch(task: asyncio.Task[None]) -> None:
    # A mismatch found after start-up (Redis was down at first) stops the
    # server the way SIGTERM does: serving would lose timers.
    if not task.cancelled() and isinstance(task.exception(), IdentityError):
        os.kill(os.getpid(), signal.SIGTERM)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = _TITLES.get(exc.status_code, "Error")
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no such path: {request.url.path}"
    response = problem_response(Problem(title, exc.status_code, detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


_TITLES = {
    404: "Not Found",
    405: "Method Not Allowed",
}
