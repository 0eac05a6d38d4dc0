"""Endpoints for operators: stats, dead letters and their retry, metrics,
the OpenAPI document, its docs page and the dashboard."""

from __future__ import annotations

import asyncio
import os
import time
from importlib import resources
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from wheel.api import fleet as fleet_figures
from wheel.api.gauges import FleetGauges
from wheel.api.models import (
    DeadLetter,
    DeadLetters,
    Lateness,
    Member,
    MinuteStats,
    Stats,
    TimerCreated,
)
from wheel.api.paging import invalid, limit_error, query_limit
from wheel.api.response_parts import ProblemError, json_response
from wheel.core import ids
from wheel.core.delays import rfc3339
from wheel.core.states import Code
from wheel.storage.errors import retrieve
from wheel.storage.inspect import Inspector
from wheel.storage.minute_stats import FIELDS
from wheel.storage.registry import Registry
from wheel.storage.shards import ShardQueue

FLEET_CACHE_S = 2.0
"""How long one read of the fleet's figures answers /stats and /metrics."""
MAX_DEAD_LETTERS = 1000


def page(name: str) -> str:
    """A page shipped in ``wheel/api/static``."""
    return (resources.files("wheel.api") / "static" / name).read_text()


class Operators:
    """The operators' endpoints of one API process."""

    def __init__(self, queue: ShardQueue, registry: Registry) -> None:
        self.queue = queue
        self.registry = registry
        self.inspector = Inspector(queue)
        self.gauges = FleetGauges()
        self._fleet: tuple[float, asyncio.Task[fleet_figures.Fleet]] | None = (
            None
        )

    async def fleet(self) -> fleet_figures.Fleet:
        """The fleet's figures, read at most every FLEET_CACHE_S (one
        read shared by concurrent callers)."""
        now = time.monotonic()
        cached = self._fleet
        if (
            cached is None
            or now - cached[0] > FLEET_CACHE_S
            or (cached[1].done() and cached[1].exception() is not None)
        ):
            task = asyncio.ensure_future(
                fleet_figures.fleet(self.queue, self.registry)
            )
            # Every caller may have given up (a cancelled request): the
            # error is then seen here, not logged as never retrieved.
            task.add_done_callback(retrieve)
            self._fleet = cached = (now, task)
        fleet = await asyncio.shield(cached[1])
        self.gauges.fleet = fleet
        return fleet

    async def stats(self, request: Request) -> Response:
        """``GET /stats``."""
        fleet = await self.fleet()
        minutes = [
            MinuteStats(
                rfc3339(m.start_ms),
                *(m.counts.get(field, 0) for field in FIELDS),
            )
            for m in fleet.minutes
        ]
        lateness = Lateness(
            sum(fleet.lateness.values()),
            *(
                _round(fleet_figures.percentile_ms(fleet.lateness, p))
                for p in (0.5, 0.9, 0.99)
            ),
        )
        return json_response(
            Stats(
                at=rfc3339(fleet.now_ms),
                pending=fleet.unfinished,
                ready=fleet.ready,
                in_flight=fleet.in_flight,
                oldest_overdue_s=fleet.oldest_overdue_ms / 1000,
                dead_letters=fleet.dead_letters,
                tickers=[_member(m) for m in fleet.tickers],
                workers=[_member(m) for m in fleet.workers],
                minutes=minutes,
                lateness=lateness,
                backlog_hour=fleet.backlog_hour,
                backlog_day=fleet.backlog_day,
            )
        )

    async def dead_letters(self, request: Request) -> Response:
        """``GET /dead-letters?limit=N``: newest first, every shard."""
        limit = query_limit(
            request.query_params.get("limit"), 50, MAX_DEAD_LETTERS
        )
        if limit is None:
            raise invalid([limit_error(MAX_DEAD_LETTERS)])
        newest = await self.inspector.newest_dead_letters(limit)
        return json_response(
            DeadLetters(
                [
                    DeadLetter(
                        ids.to_text(letter.timer_id),
                        letter.url,
                        letter.attempts,
                        _error_text(letter.error),
                        rfc3339(letter.at_ms),
                    )
                    for letter in newest
                ]
            )
        )

    async def retry(self, request: Request) -> Response:
        """``POST /timer/{id}/retry``: a failed timer, scheduled now."""
        text_id = request.path_params["timer_id"]
        timer_id = ids.parse(text_id)
        if timer_id is None:
            raise _no_timer()
        letter = await self.inspector.find_dead_letter(timer_id)
        if letter is None:
            record = await self.queue.get(timer_id)
            if record is None:
                raise _no_timer()
            raise ProblemError(
                409,
                "Conflict",
                f"the timer is {record.state.value}; only a failed timer "
                "whose dead letter is kept can be retried",
            )
        code, state = await self.queue.retry(timer_id, letter)
        # The cached figures no longer hold: the next read is fresh.
        self._fleet = None
        if code is Code.NOT_FOUND:
            raise _no_timer()
        if code is Code.CONFLICT:
            raise ProblemError(
                409,
                "Conflict",
                f"the timer is {state.value if state else 'not failed'}; "
                "only a failed timer whose dead letter is kept can be "
                "retried",
            )
        return json_response(TimerCreated(text_id, 0), 202)

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: this process' (or, with several uvicorn
        workers, every worker's) metrics and the fleet's gauges."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            text = generate_latest(registry)
        else:
            text = generate_latest(REGISTRY)
        try:
            await self.fleet()
        except Exception:
            # The process' own metrics still answer while Redis is down.
            self.gauges.fleet = None
        return Response(
            text + self.gauges.exposition(),
            media_type=CONTENT_TYPE_LATEST.split(";")[0],
        )

    async def openapi(self, request: Request, doc: dict[str, Any]) -> Response:
        """``GET /openapi.json``."""
        return json_response(doc)

    async def docs(self, request: Request) -> Response:
        """``GET /docs``: Swagger UI, from assets shipped in the package."""
        return HTMLResponse(page("docs.html"))

    async def dashboard(self, request: Request) -> Response:
        """``GET /dashboard``."""
        return HTMLResponse(page("dashboard.html"))


def _member(member: fleet_figures.Member) -> Member:
    return Member(member.name, rfc3339(member.last_beat_ms), member.shards)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _error_text(error: str) -> str:
    return f"HTTP {error}" if error.isdigit() else error


def _no_timer() -> ProblemError:
    return ProblemError(404, "Not Found", "no timer with this id")
