"""HTTP endpoints: timers (create, read, cancel), health and metrics.

Every error is an RFC 9457 ``application/problem+json`` document. A
request is answered from one script call; a Redis that does not answer
in time gets 503 (after the connection layer's retries), a full one 507.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles

from wheel import lifecycle, logs, metrics
from wheel.batcher import NotReplicated
from wheel.connection import Connection, RedisUnavailable, StoreFull
from wheel.models import (
    DeadLetters,
    FieldError,
    Problem,
    Stats,
    Status,
    TimerCreated,
    TimerRequest,
    TimerView,
)
from wheel.openapi import Operation, Param, document
from wheel.ops import MAX_DEAD_LETTERS, Ops
from wheel.queue import ShardQueue
from wheel.registry import IdentityError, Registry
from wheel.responses import (
    ProblemError,
    json_response,
    problem_response,
    rfc3339,
    unavailable,
)
from wheel.settings import Settings, from_env
from wheel.states import TimerState
from wheel.store import (
    CancelRefused,
    IdempotencyMismatch,
    Store,
    Timer,
    idempotency,
)
from wheel.targets import TargetPolicy
from wheel.validation import InvalidRequest, parse_timer_request
from wheel.wheelmath import ceil_seconds

MAX_BODY_BYTES = 64 * 1024
READY_TIMEOUT_S = 2.0
MAX_IDEMPOTENCY_KEY = 255
IDENTITY_WAIT_S = 5.0
"""How long start-up waits for Redis before serving (503s meanwhile)."""

log = logging.getLogger("wheel.api")

Endpoint = Callable[[Request], Awaitable[Response]]


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProblemError(
                400, "Bad Request", "the Content-Length header is invalid"
            )
        if int(declared) > MAX_BODY_BYTES:
            raise _too_large()
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> ProblemError:
    return ProblemError(
        413,
        "Content Too Large",
        f"the body must be at most {MAX_BODY_BYTES} bytes",
    )


def view(timer: Timer) -> TimerView:
    """The ``GET /timer/{id}`` body of a timer."""
    finished = timer.finished_ms
    state = timer.status
    # A cancelled timer will never fire: nothing is left of it.
    left_ms = 0 if state is TimerState.CANCELLED else timer.left_ms
    return TimerView(
        timer.id,
        ceil_seconds(left_ms),
        state.value,
        rfc3339(timer.due_ms),
        timer.attempts,
        next_attempt_at=(
            rfc3339(timer.next_ms)
            if timer.next_ms and state is TimerState.PENDING
            else None
        ),
        fired_at=(
            rfc3339(finished)
            if finished and state is TimerState.FIRED
            else None
        ),
        finished_at=(
            rfc3339(finished)
            if finished and state in (TimerState.FAILED, TimerState.CANCELLED)
            else None
        ),
        last_status=timer.last_status,
        last_error=timer.last_error,
    )


class Tokens:
    """The API tokens of ``WHEEL_API_TOKENS``; none means open."""

    def __init__(self, setting: str) -> None:
        self._tokens = [
            token.strip().encode()
            for token in setting.split(",")
            if token.strip()
        ]

    @property
    def enabled(self) -> bool:
        """Whether any token is configured."""
        return bool(self._tokens)

    def scope(self, request: Request) -> str:
        """The caller's scope (a digest of its token); "" when open.

        Raises:
            ProblemError: 401 without a valid ``Authorization: Bearer``.
        """
        if not self._tokens:
            return ""
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        presented = given.strip().encode()
        matched = b""
        if scheme.lower() == "bearer" and presented:
            # Compare with every token, so the time taken does not tell
            # which one (or how much of one) matched.
            for token in self._tokens:
                if hmac.compare_digest(token, presented):
                    matched = token
        if not matched:
            raise ProblemError(
                401,
                "Unauthorized",
                "this endpoint needs an 'Authorization: Bearer <token>' "
                "header with a valid API token",
                headers={"WWW-Authenticate": 'Bearer realm="timer-wheel"'},
            )
        return hashlib.sha256(matched).hexdigest()[:16]


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header, unquoted; None when absent.

    The IETF draft makes it a structured-field string (``"abc"``); an
    unquoted token is accepted too, as most clients send one.
    """
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ProblemError(
            400,
            "Bad Request",
            "the Idempotency-Key header must be 1 to "
            f"{MAX_IDEMPOTENCY_KEY} printable characters",
        )
    return key


class Api:
    """The endpoints, sharing one store."""

    def __init__(self, settings: Settings, connection: Connection) -> None:
        self.settings = settings
        self.connection = connection
        self.queue = ShardQueue(connection, settings)
        self.store = Store(self.queue)
        self.registry = Registry(connection, settings)
        self.tokens = Tokens(settings.api_tokens)
        self.policy = TargetPolicy.build(
            settings.allow_private_targets, settings.allowed_targets
        )
        self.identity_checked = False
        self._errors = lifecycle.ErrorLog(log)
        self.ops = Ops(self.queue, self.registry)
        self.document: dict[str, Any] = {}

    def endpoint(
        self, route: str, method: str, fn: Endpoint, guarded: bool
    ) -> Endpoint:
        """``fn`` behind the token check (when ``guarded``), with its
        errors answered as problems and its duration counted in the
        per-route histogram. The caller's scope is ``request.state.scope``.
        """
        histograms: dict[int, Any] = {}
        observe_for = metrics.REQUEST_DURATION.labels

        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if guarded:
                    request.state.scope = self.tokens.scope(request)
                response = await fn(request)
            except ProblemError as exc:
                response = problem_response(exc.problem, exc.headers)
            except RedisUnavailable as exc:
                self._errors.note(route, exc)
                response = unavailable("the timer store is unavailable")
            except StoreFull:
                response = problem_response(
                    Problem(
                        "Insufficient Storage",
                        507,
                        "the timer store is full; nothing was created",
                    )
                )
            except NotReplicated as exc:
                response = unavailable(
                    f"the change reached the primary but {exc}: it may not "
                    "survive a failover; retry it (with the same "
                    "Idempotency-Key for a create)"
                )
            status = response.status_code // 100
            histogram = histograms.get(status)
            if histogram is None:
                histogram = histograms[status] = observe_for(
                    route, method, f"{status}xx"
                )
            histogram.observe(time.perf_counter() - started)
            return response

        return handle

    def _ready_for_timers(self) -> None:
        if not self.identity_checked:
            raise ProblemError(
                503,
                "Service Unavailable",
                "the API has not reached Redis yet",
                headers={"Retry-After": "1"},
            )

    async def create_timer(self, request: Request) -> Response:
        """``POST /timer``."""
        scope: str = request.state.scope
        self._ready_for_timers()
        key = idempotency_key(request)
        body = await read_body(request)
        try:
            timer_input = parse_timer_request(body, self.settings.max_delay)
        except InvalidRequest as exc:
            raise ProblemError(
                exc.status, exc.title, exc.detail, exc.errors
            ) from None
        refusal = self.policy.url_refusal(timer_input.url)
        if refusal:
            raise ProblemError(
                422,
                "Unprocessable Content",
                f"url: {refusal}",
                [FieldError("url", refusal)],
            )
        digests = None
        if key is not None:
            digests = idempotency(
                key,
                scope,
                timer_input.url,
                (timer_input.hours, timer_input.minutes, timer_input.seconds),
            )
        try:
            timer, repeat = await self.store.create(
                timer_input.url, timer_input.delay_ms, digests
            )
        except IdempotencyMismatch as exc:
            raise ProblemError(
                422,
                "Unprocessable Content",
                "this Idempotency-Key was used for a different request "
                f"(it created timer {exc})",
            ) from None
        if not repeat:
            metrics.TIMERS_CREATED.inc()
        return json_response(
            TimerCreated(timer.id, ceil_seconds(timer.left_ms)),
            200 if repeat else 201,
            location=f"/timer/{timer.id}",
        )

    async def read_timer(self, request: Request) -> Response:
        """``GET /timer/{id}``."""
        self._ready_for_timers()
        timer = await self.store.get(request.path_params["timer_id"])
        if timer is None:
            raise _not_found()
        return json_response(view(timer))

    async def cancel_timer(self, request: Request) -> Response:
        """``DELETE /timer/{id}``."""
        self._ready_for_timers()
        try:
            cancelled = await self.store.cancel(
                request.path_params["timer_id"]
            )
        except CancelRefused as exc:
            raise ProblemError(
                409,
                "Conflict",
                f"the timer is {exc.state.value}; only a pending timer "
                "can be cancelled",
            ) from None
        if not cancelled:
            raise _not_found()
        metrics.TIMERS_CANCELLED.inc()
        return Response(status_code=204)

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: the process runs."""
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """``GET /readyz``: every primary answers and identity is checked."""
        try:
            replies = await self.connection.each_primary(
                "PING", deadline_s=READY_TIMEOUT_S
            )
        except Exception as exc:
            return unavailable(f"Redis unreachable: {exc}")
        down = {
            node: str(reply)
            for node, reply in replies.items()
            if isinstance(reply, BaseException)
        }
        if down:
            return unavailable(f"Redis unreachable: {down}")
        if not self.identity_checked:
            return unavailable("the deployment's identity is not checked")
        return json_response({"status": "ready"})

    async def check_identity(self) -> None:
        """Check the deployment's identity, retrying until Redis answers.

        A mismatch stops the process: serving would lose timers.
        """
        while True:
            try:
                await self.registry.check_identity()
            except IdentityError as exc:
                log.critical("refusing to serve", extra={"error": str(exc)})
                raise
            except (RedisUnavailable, OSError) as exc:
                self._errors.note("identity", exc)
                await asyncio.sleep(1.0)
                continue
            self.identity_checked = True
            return

    def operations(self) -> list[tuple[Operation, Endpoint]]:
        """Every documented route and its endpoint: the one table the
        router and the OpenAPI document are built from."""
        ops = self.ops
        timer_id = Param(
            "timer_id", "path", {"type": "string"}, "The timer's id."
        )
        key = Param(
            "Idempotency-Key",
            "header",
            {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY},
            "Repeats with the same key and body return the same timer "
            "for 24 h; another body with it is refused (422).",
            required=False,
        )
        unavailable_ = (Problem, "Redis did not answer (retry later)")
        bad = (Problem, "the body or a header is malformed")
        missing = (Problem, "no timer with this id (or a malformed id)")

        def op(path: str, method: str, summary: str, **kw: Any) -> Operation:
            return Operation(path, method, summary, **kw)

        return [
            (
                op(
                    "/timer",
                    "POST",
                    "Create a timer",
                    body=TimerRequest,
                    headers=(key,),
                    guarded=True,
                    responses={
                        201: (TimerCreated, "created"),
                        200: (TimerCreated, "a repeat of a keyed create"),
                        400: bad,
                        413: (Problem, "the body is over 64 KiB"),
                        422: (Problem, "a field breaks a rule"),
                        503: unavailable_,
                        507: (Problem, "Redis is full; nothing created"),
                    },
                ),
                self.create_timer,
            ),
            (
                op(
                    "/timer/{timer_id}",
                    "GET",
                    "Read a timer",
                    params=(timer_id,),
                    guarded=True,
                    responses={
                        200: (TimerView, "the timer"),
                        404: missing,
                        503: unavailable_,
                    },
                ),
                self.read_timer,
            ),
            (
                op(
                    "/timer/{timer_id}",
                    "DELETE",
                    "Cancel a pending timer",
                    params=(timer_id,),
                    guarded=True,
                    responses={
                        204: (None, "cancelled: it will never fire"),
                        404: missing,
                        409: (Problem, "firing, fired or failed already"),
                        503: unavailable_,
                    },
                ),
                self.cancel_timer,
            ),
            (
                op(
                    "/timer/{timer_id}/retry",
                    "POST",
                    "Retry a failed timer now, with fresh attempts",
                    params=(timer_id,),
                    guarded=True,
                    tag="operators",
                    responses={
                        202: (TimerCreated, "scheduled now"),
                        404: missing,
                        409: (Problem, "the timer is not failed"),
                        503: unavailable_,
                    },
                ),
                ops.retry,
            ),
            (
                op(
                    "/dead-letters",
                    "GET",
                    "List failed timers, newest first",
                    params=(
                        Param(
                            "limit",
                            "query",
                            {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_DEAD_LETTERS,
                                "default": 50,
                            },
                            "Most dead letters to list.",
                            required=False,
                        ),
                    ),
                    guarded=True,
                    tag="operators",
                    responses={
                        200: (DeadLetters, "the dead letters"),
                        422: (Problem, "a bad limit"),
                        503: unavailable_,
                    },
                ),
                ops.dead_letters,
            ),
            (
                op(
                    "/stats",
                    "GET",
                    "The fleet at a glance (the dashboard's figures)",
                    guarded=True,
                    tag="operators",
                    responses={
                        200: (Stats, "the figures"),
                        503: unavailable_,
                    },
                ),
                ops.stats,
            ),
            (
                op(
                    "/healthz",
                    "GET",
                    "Liveness: the process runs",
                    tag="health",
                    responses={200: (Status, "alive")},
                ),
                self.healthz,
            ),
            (
                op(
                    "/readyz",
                    "GET",
                    "Readiness: every Redis primary answers",
                    tag="health",
                    responses={
                        200: (Status, "ready"),
                        503: (Problem, "Redis unreachable, or not checked"),
                    },
                ),
                self.readyz,
            ),
            (
                op(
                    "/metrics",
                    "GET",
                    "Prometheus metrics (text format)",
                    tag="operators",
                    responses={200: (None, "the metrics")},
                ),
                ops.metrics,
            ),
            (
                op(
                    "/openapi.json",
                    "GET",
                    "This document",
                    tag="operators",
                    responses={200: (None, "the OpenAPI document")},
                ),
                self.openapi,
            ),
            (
                op(
                    "/docs",
                    "GET",
                    "The API's documentation page",
                    tag="operators",
                    responses={200: (None, "an HTML page")},
                ),
                ops.docs,
            ),
            (
                op(
                    "/dashboard",
                    "GET",
                    "The operators' dashboard",
                    tag="operators",
                    responses={200: (None, "an HTML page")},
                ),
                ops.dashboard,
            ),
        ]

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``."""
        return json_response(self.document)

    def routes(self) -> list[Route | Mount]:
        """Every route of the API, and the static files."""
        table = self.operations()
        self.document = document(
            [spec for spec, _ in table], self.tokens.enabled
        )
        by_path: dict[str, dict[str, Endpoint]] = {}
        for spec, fn in table:
            by_path.setdefault(spec.path, {})[spec.method] = self.endpoint(
                spec.path, spec.method, fn, spec.guarded
            )
        routes: list[Route | Mount] = [
            Route(path, _dispatch(methods), methods=list(methods))
            for path, methods in by_path.items()
        ]
        static = resources.files("wheel") / "static"
        routes.append(
            Mount(
                "/static",
                StaticFiles(directory=str(static), check_dir=False),
                name="static",
            )
        )
        return routes


def _dispatch(methods: dict[str, Endpoint]) -> Endpoint:
    if len(methods) == 1:
        return next(iter(methods.values()))

    async def by_method(request: Request) -> Response:
        return await methods[request.method](request)

    return by_method


def create_app(
    settings: Settings | None = None, connection: Connection | None = None
) -> Starlette:
    """The API application.

    Args:
        settings: defaults to the environment's.
        connection: one to share (and not close), as ``run`` does; by
            default one is built from ``settings`` and closed at shutdown.
    """
    from wheel.roles import connect

    settings = settings or from_env()
    own = connection is None
    api = Api(settings, connection or connect(settings, "api"))

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

    app = Starlette(
        routes=api.routes(),
        exception_handlers={HTTPException: _on_http_exception},
        lifespan=lifespan,
    )
    # ``POST /timer/`` answers like any unknown path, never a redirect.
    assert isinstance(app.router, Router)
    app.router.redirect_slashes = False
    app.state.api = api
    return app


def _stop_on_mismatch(task: asyncio.Task[None]) -> None:
    # A mismatch found after start-up (Redis was down at first) stops the
    # server the way SIGTERM does: serving would lose timers.
    if not task.cancelled() and isinstance(task.exception(), IdentityError):
        os.kill(os.getpid(), signal.SIGTERM)


def _not_found() -> ProblemError:
    return ProblemError(404, "Not Found", "no timer with this id")


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


app = create_app()
