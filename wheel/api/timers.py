"""The API's endpoints for timers and health, behind one wrapper that
checks tokens, answers errors as problems and times each route."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wheel.api.listing import TimerListing
from wheel.api.models import Problem, Status, TimerCreated
from wheel.api.operators import Operators
from wheel.api.request_parts import Tokens, idempotency_key, read_body
from wheel.api.response_parts import (
    ProblemError,
    json_response,
    problem_response,
    unavailable,
    url_refused,
    view,
)
from wheel.api.schedules import ScheduleEndpoints
from wheel.api.service import (
    CancelRefused,
    IdempotencyMismatch,
    KeptChanging,
    MoveRefused,
    TimerService,
    idempotency,
)
from wheel.api.validation import (
    InvalidRequest,
    OriginVerdicts,
    parse_reschedule,
    parse_timer_request,
)
from wheel.core import ids
from wheel.core.delays import ceil_seconds
from wheel.runtime import lifecycle, metrics
from wheel.settings import Settings
from wheel.storage.connection import Connection
from wheel.storage.errors import (
    NotReplicated,
    OutcomeUnknown,
    Overloaded,
    RedisUnavailable,
    StoreFull,
)
from wheel.storage.registry import IdentityError, Registry
from wheel.storage.replies import healthy_replicas
from wheel.storage.shards import ShardQueue
from wheel.webhooks.guard import TargetPolicy

READY_TIMEOUT_S = 2.0
SCOPE = "timer_wheel.scope"
"""Where the wrapper leaves the caller's token scope in the ASGI scope."""

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class Api:
    """The endpoints, sharing one store."""

    def __init__(self, settings: Settings, connection: Connection) -> None:
        self.settings = settings
        self.connection = connection
        self.queue = ShardQueue(connection, settings)
        self.timers = TimerService(self.queue)
        self.registry = Registry(connection, settings)
        self.tokens = Tokens(settings.api_tokens)
        self.policy = TargetPolicy.build(
            settings.allow_private_targets, settings.allowed_targets
        )
        self.identity_checked = False
        self._errors = lifecycle.ErrorLog(log)
        self.operators = Operators(self.queue, self.registry)
        self.listing = TimerListing(self.queue)
        self._url_refusal = OriginVerdicts(self.policy.url_refusal)
        """The guard's verdict on a url: it depends on nothing after the
        url's origin."""
        self.schedules = ScheduleEndpoints(
            self.queue, self._url_refusal, self._ready_for_timers
        )
        self.document: dict[str, Any] = {}
        self.hot: dict[str, Endpoint] = {}
        """The two busiest endpoints, by method: POST /timer, GET
        /timer/{id} (``wheel.api.routes`` fills it in)."""

    def endpoint(
        self, route: str, method: str, fn: Endpoint, guarded: bool
    ) -> Endpoint:
        """``fn`` behind the token check (when ``guarded``), with its
        errors answered as problems and its duration counted in the
        per-route histogram. The caller's scope is ``request.scope[SCOPE]``.
        """
        histograms: dict[int, Any] = {}
        observe_for = metrics.REQUEST_DURATION.labels

        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if guarded:
                    request.scope[SCOPE] = self.tokens.scope(request)
                response = await fn(request)
            except ProblemError as exc:
                response = problem_response(exc.problem, exc.headers)
            except OutcomeUnknown as exc:
                self._errors.note(route, exc, expected=True)
                response = unavailable(
                    (
                        "the schedule store did not confirm this create in "
                        f"time ({exc}); it may exist: GET /schedules/{{id}} "
                        "with the id here tells (a new POST would create a "
                        "second schedule)"
                    )
                    if exc.schedule
                    else (
                        "the timer store did not confirm this create in time "
                        f"({exc}); it may exist: GET /timer/{{id}} with the "
                        "id here tells, or retry with the same "
                        "Idempotency-Key"
                    ),
                    timer_id=ids.to_text(exc.timer_id),
                )
            except Overloaded:
                response = unavailable(
                    "the timer store is overloaded; nothing was done"
                )
            except RedisUnavailable as exc:
                self._errors.note(route, exc)
                response = unavailable(
                    "the timer store did not answer in time; the change "
                    "may have been made: retrying is safe, it answers as "
                    "the first would have"
                    if exc.maybe_applied
                    else "the timer store is unavailable; nothing was done"
                )
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
                    "survive a failover; retrying is safe, it answers as "
                    "the first would have"
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
        scope: str = request.scope[SCOPE]
        self._ready_for_timers()
        key = idempotency_key(request)
        body = await read_body(request)
        try:
            timer_input = parse_timer_request(
                body, self.settings.max_delay, self.queue.clocks.now_ms(0)
            )
        except InvalidRequest as exc:
            raise ProblemError.of(exc) from None
        refusal = self._url_refusal(timer_input.url)
        if refusal:
            raise url_refused(refusal)
        digests = None
        if key is not None:
            digests = idempotency(
                key,
                scope,
                timer_input.url,
                (timer_input.hours, timer_input.minutes, timer_input.seconds),
                timer_input.at_ms,
                timer_input.request,
            )
        try:
            timer, repeat = await self.timers.create(
                timer_input.url,
                timer_input.delay_ms,
                digests,
                timer_input.at_ms,
                timer_input.request,
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
        timer = await self.timers.get(request.path_params["timer_id"])
        if timer is None:
            raise not_found()
        return json_response(view(timer))

    async def cancel_timer(self, request: Request) -> Response:
        """``DELETE /timer/{id}``."""
        self._ready_for_timers()
        try:
            cancelled = await self.timers.cancel(
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
            raise not_found()
        metrics.TIMERS_CANCELLED.inc()
        return Response(status_code=204)

    async def reschedule_timer(self, request: Request) -> Response:
        """``PATCH /timer/{id}``: a pending timer moves to a new time."""
        self._ready_for_timers()
        text_id = request.path_params["timer_id"]
        if ids.parse(text_id) is None:
            raise not_found()
        body = await read_body(request)
        try:
            when = parse_reschedule(
                body, self.settings.max_delay, self.queue.clocks.now_ms(0)
            )
        except InvalidRequest as exc:
            raise ProblemError.of(exc) from None
        try:
            timer = await self.timers.reschedule(
                text_id, when.delay_ms, when.at_ms
            )
        except MoveRefused as exc:
            raise ProblemError(
                409,
                "Conflict",
                f"the timer is {exc.state.value}; only a pending timer "
                "can be rescheduled",
            ) from None
        except KeptChanging:
            raise ProblemError(
                503,
                "Service Unavailable",
                "the timer kept changing while it was being moved; retry",
                headers={"Retry-After": "1"},
            ) from None
        if timer is None:
            raise not_found()
        return json_response(view(timer))

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: the process runs."""
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """``GET /readyz``: every primary answers and identity is checked.

        Primaries with fewer healthy replicas than ``WHEEL_REPLICA_ACKS``
        leave it ready (they serve; firing goes on; only creates there
        answer 503 with their id): they are listed as ``degraded``.
        """
        try:
            replies = await self.connection.each_primary(
                "INFO" if self.settings.replica_acks else "PING",
                *(("replication",) if self.settings.replica_acks else ()),
                deadline_s=READY_TIMEOUT_S,
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
        degraded = []
        if self.settings.replica_acks:
            degraded = sorted(
                node
                for node, reply in replies.items()
                if healthy_replicas(reply) < self.settings.replica_acks
            )
        metrics.DEGRADED_PRIMARIES.set(len(degraded))
        return json_response(Status("ready", degraded))

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

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``."""
        return json_response(self.document)


def not_found() -> ProblemError:
    """The 404 of an unknown timer."""
    return ProblemError(404, "Not Found", "no timer with this id")
