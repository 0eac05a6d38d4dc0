"""The route table: every documented endpoint once, from which both the
router and the OpenAPI document are built."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from wheel.api.listing import STATUSES
from wheel.api.models import (
    MAX_URL_LENGTH,
    DeadLetters,
    Problem,
    Reschedule,
    Stats,
    Status,
    TimerCreated,
    TimerPage,
    TimerRequest,
    TimerView,
)
from wheel.api.openapi import Operation, Param, document
from wheel.api.operators import MAX_DEAD_LETTERS
from wheel.api.paging import DEFAULT_LIMIT, MAX_LIMIT
from wheel.api.request_parts import MAX_IDEMPOTENCY_KEY
from wheel.api.schedule_models import (
    ScheduleCreated,
    SchedulePage,
    SchedulePatch,
    ScheduleRequest,
    ScheduleView,
)
from wheel.api.timers import Api, Endpoint


def operations(api: Api) -> list[tuple[Operation, Endpoint]]:
    """Every documented route and its endpoint: the one table the
    router and the OpenAPI document are built from."""
    operators = api.operators
    timer_id = Param("timer_id", "path", {"type": "string"}, "The timer's id.")
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

    def op(
        path: str, method: str, name: str, summary: str, **kw: Any
    ) -> Operation:
        return Operation(path, method, summary, operation_id=name, **kw)

    def query(name: str, schema: dict[str, Any], text: str) -> Param:
        return Param(name, "query", schema, text, required=False)

    instant = {"type": "string", "format": "date-time"}

    return [
        (
            op(
                "/timer",
                "POST",
                "createTimer",
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
            api.create_timer,
        ),
        (
            op(
                "/timer/{timer_id}",
                "GET",
                "getTimer",
                "Read a timer",
                params=(timer_id,),
                guarded=True,
                responses={
                    200: (TimerView, "the timer"),
                    404: missing,
                    503: unavailable_,
                },
            ),
            api.read_timer,
        ),
        (
            op(
                "/timer/{timer_id}",
                "DELETE",
                "cancelTimer",
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
            api.cancel_timer,
        ),
        (
            op(
                "/timer/{timer_id}",
                "PATCH",
                "rescheduleTimer",
                "Move a pending timer to a new time",
                description=(
                    "Atomic against the firing: a pending timer moves "
                    "(200, with its new time_left) and its old due time "
                    "never fires; a timer firing, fired, failed or "
                    "cancelled answers 409."
                ),
                body=Reschedule,
                params=(timer_id,),
                guarded=True,
                responses={
                    200: (TimerView, "moved: the timer as it is now"),
                    400: bad,
                    404: missing,
                    409: (Problem, "firing, fired, failed or cancelled"),
                    413: (Problem, "the body is over 64 KiB"),
                    422: (Problem, "a field breaks a rule"),
                    503: unavailable_,
                    507: (Problem, "Redis is full; nothing moved"),
                },
            ),
            api.reschedule_timer,
        ),
        (
            op(
                "/timers",
                "GET",
                "listTimers",
                "List timers by status, a page at a time",
                description=(
                    "Shard by shard, each page doing bounded work: a "
                    "page may hold fewer than limit timers (even none) "
                    "while next_cursor says more follow. A timer that "
                    "exists throughout the paging is listed exactly once "
                    "(the README states the order and the exceptions)."
                ),
                params=(
                    query(
                        "status",
                        {
                            "type": "string",
                            "enum": list(STATUSES),
                            "default": "pending",
                        },
                        "Which timers.",
                    ),
                    query(
                        "due_after",
                        instant,
                        "Only timers due at or after this instant (RFC "
                        "3339 with an offset; pending: when next due).",
                    ),
                    query(
                        "due_before",
                        instant,
                        "Only timers due before this instant.",
                    ),
                    query(
                        "url_prefix",
                        {"type": "string", "maxLength": MAX_URL_LENGTH},
                        "Only timers whose url starts so (not for fired "
                        "or cancelled timers, whose url is not kept).",
                    ),
                    query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                        "Most timers in the page.",
                    ),
                    query(
                        "cursor",
                        {"type": "string"},
                        "The next_cursor of the previous page, with the "
                        "same other parameters.",
                    ),
                ),
                guarded=True,
                responses={
                    200: (TimerPage, "a page of timers"),
                    409: (
                        Problem,
                        "the wheel moved under the cursor: start again",
                    ),
                    422: (Problem, "a bad parameter or cursor"),
                    503: unavailable_,
                },
            ),
            api.listing.list_timers,
        ),
        *schedule_operations(api, op, query),
        (
            op(
                "/timer/{timer_id}/retry",
                "POST",
                "retryTimer",
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
            operators.retry,
        ),
        (
            op(
                "/dead-letters",
                "GET",
                "listDeadLetters",
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
            operators.dead_letters,
        ),
        (
            op(
                "/stats",
                "GET",
                "getStats",
                "The fleet at a glance (the dashboard's figures)",
                guarded=True,
                tag="operators",
                responses={
                    200: (Stats, "the figures"),
                    503: unavailable_,
                },
            ),
            operators.stats,
        ),
        (
            op(
                "/healthz",
                "GET",
                "getHealth",
                "Liveness: the process runs",
                tag="health",
                responses={200: (Status, "alive")},
            ),
            api.healthz,
        ),
        (
            op(
                "/readyz",
                "GET",
                "getReadiness",
                "Readiness: every Redis primary answers",
                tag="health",
                responses={
                    200: (Status, "ready"),
                    503: (Problem, "Redis unreachable, or not checked"),
                },
            ),
            api.readyz,
        ),
        (
            op(
                "/metrics",
                "GET",
                "getMetrics",
                "Prometheus metrics (text format)",
                tag="operators",
                responses={200: (None, "the metrics")},
            ),
            operators.metrics,
        ),
        (
            op(
                "/openapi.json",
                "GET",
                "getOpenApiDocument",
                "This document",
                tag="operators",
                responses={200: (None, "the OpenAPI document")},
            ),
            api.openapi,
        ),
        (
            op(
                "/docs",
                "GET",
                "getDocs",
                "The API's documentation page",
                tag="operators",
                responses={200: (None, "an HTML page")},
            ),
            operators.docs,
        ),
        (
            op(
                "/dashboard",
                "GET",
                "getDashboard",
                "The operators' dashboard",
                tag="operators",
                responses={200: (None, "an HTML page")},
            ),
            operators.dashboard,
        ),
    ]


def schedule_operations(
    api: Api,
    op: Callable[..., Operation],
    query: Callable[[str, dict[str, Any], str], Param],
) -> list[tuple[Operation, Endpoint]]:
    """The schedules' routes (tag ``schedules``)."""
    schedules = api.schedules
    schedule_id = Param(
        "schedule_id", "path", {"type": "string"}, "The schedule's id."
    )
    unavailable_ = (Problem, "Redis did not answer (retry later)")
    bad = (Problem, "the body is malformed")
    too_large = (Problem, "the body is over 64 KiB")
    missing = (Problem, "no schedule with this id (or a malformed id)")
    tag = "schedules"
    return [
        (
            op(
                "/schedules",
                "POST",
                "createSchedule",
                "Create a recurring schedule",
                description=(
                    "Each occurrence (cron in timezone, within start_at "
                    "and end_at) is a timer that fires once. Invalid "
                    "cron, an unknown zone, end_at before start_at and a "
                    "schedule that never fires are 422s naming the field."
                ),
                body=ScheduleRequest,
                guarded=True,
                tag=tag,
                responses={
                    201: (
                        ScheduleCreated,
                        "created, with its next occurrences",
                    ),
                    400: bad,
                    413: too_large,
                    422: (Problem, "a field breaks a rule"),
                    503: unavailable_,
                    507: (Problem, "Redis is full; nothing created"),
                },
            ),
            schedules.create_schedule,
        ),
        (
            op(
                "/schedules",
                "GET",
                "listSchedules",
                "List schedules, a page at a time",
                description=(
                    "Shard by shard, in id order, each page doing bounded "
                    "work: a page may hold fewer than limit schedules "
                    "(even none) while next_cursor says more follow. A "
                    "schedule that exists throughout is listed once."
                ),
                params=(
                    query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                        "Most schedules in the page.",
                    ),
                    query(
                        "cursor",
                        {"type": "string"},
                        "The next_cursor of the previous page.",
                    ),
                ),
                guarded=True,
                tag=tag,
                responses={
                    200: (SchedulePage, "a page of schedules"),
                    422: (Problem, "a bad parameter or cursor"),
                    503: unavailable_,
                },
            ),
            schedules.list_schedules,
        ),
        (
            op(
                "/schedules/{schedule_id}",
                "GET",
                "getSchedule",
                "Read a schedule",
                params=(schedule_id,),
                guarded=True,
                tag=tag,
                responses={
                    200: (ScheduleView, "the schedule"),
                    404: missing,
                    503: unavailable_,
                },
            ),
            schedules.read_schedule,
        ),
        (
            op(
                "/schedules/{schedule_id}",
                "PATCH",
                "updateSchedule",
                "Pause, resume or edit a schedule",
                description=(
                    "Atomic against the firing: once it answers, no "
                    "occurrence under the old definition is created; an "
                    "occurrence already handed to a worker completes."
                ),
                body=SchedulePatch,
                params=(schedule_id,),
                guarded=True,
                tag=tag,
                responses={
                    200: (ScheduleView, "the schedule as it is now"),
                    400: bad,
                    404: missing,
                    413: too_large,
                    422: (Problem, "a field breaks a rule"),
                    503: unavailable_,
                },
            ),
            schedules.update_schedule,
        ),
        (
            op(
                "/schedules/{schedule_id}",
                "DELETE",
                "deleteSchedule",
                "Delete a schedule",
                description=(
                    "No occurrence is created once it answers; one already "
                    "handed to a worker completes and stays readable."
                ),
                params=(schedule_id,),
                guarded=True,
                tag=tag,
                responses={
                    204: (None, "deleted"),
                    404: missing,
                    503: unavailable_,
                },
            ),
            schedules.delete_schedule,
        ),
    ]


def routes(api: Api) -> list[Route | Mount]:
    """Every route of the API, and the static files."""
    table = operations(api)
    api.document = document([spec for spec, _ in table], api.tokens.enabled)
    by_path: dict[str, dict[str, Endpoint]] = {}
    for spec, fn in table:
        by_path.setdefault(spec.path, {})[spec.method] = api.endpoint(
            spec.path, spec.method, fn, spec.guarded
        )
    api.hot = {
        "POST": by_path["/timer"]["POST"],
        "GET": by_path["/timer/{timer_id}"]["GET"],
    }
    routes: list[Route | Mount] = [
        Route(path, _dispatch(methods), methods=list(methods))
        for path, methods in by_path.items()
    ]
    static = resources.files("wheel.api") / "static"
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
        # Starlette lets HEAD through wherever GET is allowed: it is
        # answered as GET (the server sends no body).
        method = "GET" if request.method == "HEAD" else request.method
        return await methods[method](request)

    return by_method
