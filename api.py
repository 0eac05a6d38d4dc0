"""HTTP endpoints: create and read timers, health and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wheel import lifecycle, logs
from wheel.models import (
    FieldError,
    Problem,
    TimerCreated,
    TimerView,
    encoder,
    request_decoder,
)
from wheel.redis_client import connect
from wheel.settings import Settings, from_env
from wheel.store import Store
from wheel.validation import check_request
from wheel.wheelmath import ceil_seconds

MAX_BODY_BYTES = 64 * 1024
READY_TIMEOUT_S = 2.0

log = logging.getLogger("wheel.api")


class ProblemError(Exception):
    """A client error to answer as ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(title, status, detail, errors=errors or [])


def json_response(body: object, status: int = 200, **headers: str) -> Response:
    """A JSON response encoded by msgspec."""
    return Response(
        encoder.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers or None,
    )


def problem_response(problem: Problem) -> Response:
    """An RFC 9457 problem response."""
    return Response(
        encoder.encode(problem),
        status_code=problem.status,
        media_type="application/problem+json",
    )


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProblemError(400, "Bad Request", "invalid Content-Length")
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


def decode_timer_request(body: bytes, max_delay_s: int) -> tuple[str, int]:
    """The url and delay in ms of a ``POST /timer`` body, or a problem."""
    try:
        request = request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ProblemError(
            422,
            "Unprocessable Content",
            str(exc),
            [FieldError(_field_of(str(exc)), str(exc))],
        ) from None
    except msgspec.DecodeError as exc:
        raise ProblemError(
            400, "Bad Request", f"the body is not valid JSON: {exc}"
        ) from None
    except UnicodeDecodeError as exc:
        # msgspec raises this, not DecodeError, for bad UTF-8 in a string.
        raise ProblemError(
            400, "Bad Request", f"the body is not valid UTF-8: {exc}"
        ) from None
    delay_ms, errors = check_request(request, max_delay_s)
    if errors:
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        raise ProblemError(422, "Unprocessable Content", detail, errors)
    return request.url, delay_ms


def _field_of(message: str) -> str:
    """The field a msgspec validation message is about."""
    if "`$." in message:
        return message.rsplit("`$.", 1)[1].split("`", 1)[0]
    if "field `" in message:
        return message.split("field `", 1)[1].split("`", 1)[0]
    return "$"


def rfc3339(epoch_ms: int) -> str:
    """An epoch ms instant as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_app(
    settings: Settings | None = None, redis: Redis | None = None
) -> Starlette:
    """The API application.

    Args:
        settings: defaults to the environment's.
        redis: a client to use (and not close); by default one is built
            from ``settings`` at start-up and closed at shutdown.
    """
    settings = settings or from_env()
    state: dict[str, Store] = {}

    def store() -> Store:
        if "store" not in state:
            # Without a lifespan (some test clients) build it on first use.
            state["store"] = Store(redis or connect(settings), settings)
        return state["store"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not logging.getLogger().handlers:
            # A uvicorn worker process (--workers > 1) starts without the
            # CLI's logging set-up.
            logs.setup(settings.log_format, settings.log_level)
        lifecycle.tune_gc()
        own = store()
        try:
            yield
        finally:
            if redis is None:
                await own.redis.aclose()

    async def create_timer(request: Request) -> Response:
        body = await read_body(request)
        url, delay_ms = decode_timer_request(body, settings.max_delay)
        timer = await store().create(url, delay_ms)
        return json_response(
            TimerCreated(timer.id, ceil_seconds(timer.left_ms)),
            201,
            location=f"/timer/{timer.id}",
        )

    async def read_timer(request: Request) -> Response:
        try:
            timer_id = uuid.UUID(request.path_params["timer_id"])
        except ValueError:
            raise _not_found() from None
        timer = await store().get(timer_id)
        if timer is None:
            raise _not_found()
        return json_response(
            TimerView(
                timer.id,
                ceil_seconds(timer.left_ms),
                timer.status,
                rfc3339(timer.due_ms),
                timer.attempts,
            )
        )

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await store().redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            return problem_response(
                Problem(
                    "Service Unavailable", 503, f"Redis unreachable: {exc}"
                )
            )
        return json_response({"status": "ready"})

    return Starlette(
        routes=[
            Route("/timer", create_timer, methods=["POST"]),
            Route("/timer/{timer_id}", read_timer, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={
            ProblemError: _on_problem,
            HTTPException: _on_http_exception,
            RedisError: _on_redis_error,
        },
        lifespan=lifespan,
    )


def _not_found() -> ProblemError:
    return ProblemError(404, "Not Found", "no timer with this id")


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.problem)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = _TITLES.get(exc.status_code, "Error")
    response = problem_response(Problem(title, exc.status_code, exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _on_redis_error(request: Request, exc: Exception) -> Response:
    log.error("redis error", extra={"error": repr(exc)})
    return problem_response(
        Problem("Service Unavailable", 503, "the timer store is unavailable")
    )


_TITLES = {
    404: "Not Found",
    405: "Method Not Allowed",
}


app = create_app()
