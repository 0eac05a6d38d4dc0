"""The schedules endpoints: ``POST /schedules``, ``GET /schedules`` and
``GET``, ``PATCH``, ``DELETE /schedules/{id}``.

A schedule's next occurrence is computed here (Python reads cron) and
written with the record; edits are compare-and-set scripts against the
roller (:mod:`wheel.storage.schedules`), so once an edit or a delete has
answered, no occurrence under the old definition is created.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from wheel.api.models import FieldError
from wheel.api.paging import invalid, page_params
from wheel.api.request_parts import read_body
from wheel.api.response_parts import (
    ProblemError,
    json_response,
    request_spec,
    url_refused,
)
from wheel.api.schedule_models import (
    LastOccurrence,
    Misfire,
    ScheduleCreated,
    SchedulePage,
    ScheduleView,
)
from wheel.api.schedule_validation import (
    ScheduleChange,
    parse_change,
    parse_new_schedule,
)
from wheel.api.validation import InvalidRequest
from wheel.core import ids
from wheel.core.cron import (
    InvalidSchedule,
    next_occurrences,
    validate_schedule,
)
from wheel.core.delays import rfc3339
from wheel.core.occurrences import scheduled_ms_of
from wheel.core.paging import CursorInvalid
from wheel.core.schedules import NEXT_SHOWN, Definition
from wheel.core.states import Code
from wheel.core.webhook_request import pack
from wheel.storage.replies import Record, ScheduleRecord
from wheel.storage.schedule_listing import ScheduleListing
from wheel.storage.schedules import Edit, ScheduleStore
from wheel.storage.shards import ShardQueue

Refusal = Callable[[str], str | None]
"""The SSRF guard's verdict on a url (None: allowed)."""


class ScheduleEndpoints:
    """The schedules endpoints of one API process."""

    def __init__(
        self,
        queue: ShardQueue,
        url_refusal: Refusal,
        ready: Callable[[], None],
    ) -> None:
        self.queue = queue
        self.store = ScheduleStore(queue)
        self.listing = ScheduleListing(self.store)
        self._url_refusal = url_refusal
        self._ready = ready

    def _now_ms(self) -> int:
        return self.queue.clocks.now_ms(0)

    def _refuse_url(self, url: str | None) -> None:
        refusal = None if url is None else self._url_refusal(url)
        if refusal:
            raise url_refused(refusal)

    async def create_schedule(self, request: Request) -> Response:
        """``POST /schedules``."""
        self._ready()
        body = await read_body(request)
        now_ms = self._now_ms()
        try:
            new = parse_new_schedule(body, now_ms)
        except InvalidRequest as exc:
            raise ProblemError.of(exc) from None
        self._refuse_url(new.url)
        spec = new.spec
        definition = Definition(
            spec.cron,
            spec.timezone,
            new.url,
            None if new.request is None else pack(new.request),
            spec.start_at_ms,
            spec.end_at_ms,
            new.misfire.value,
        )
        upcoming = next_occurrences(spec, now_ms, NEXT_SHOWN)
        _, schedule_id, _ = await self.store.create(definition, upcoming[0])
        text_id = ids.to_text(schedule_id)
        return json_response(
            ScheduleCreated(text_id, [rfc3339(ms) for ms in upcoming]),
            201,
            location=f"/schedules/{text_id}",
        )

    async def read_schedule(self, request: Request) -> Response:
        """``GET /schedules/{id}``."""
        self._ready()
        schedule_id = _schedule_id(request)
        record = await self.store.get(schedule_id)
        if record is None:
            raise not_found()
        return json_response(await self._view(record))

    async def list_schedules(self, request: Request) -> Response:
        """``GET /schedules?limit=...&cursor=...``."""
        self._ready()
        params = page_params(request, ())
        try:
            items, cursor = await self.listing.page(
                params.limit, params.cursor
            )
        except CursorInvalid as exc:
            raise invalid([FieldError("cursor", str(exc))]) from None
        views = [view(item.record, item.last) for item in items]
        return json_response(SchedulePage(views, cursor))

    async def update_schedule(self, request: Request) -> Response:
        """``PATCH /schedules/{id}``: pause, resume or edit, atomically
        against the roller."""
        self._ready()
        schedule_id = _schedule_id(request)
        body = await read_body(request)
        try:
            change = parse_change(body)
        except InvalidRequest as exc:
            raise ProblemError.of(exc) from None
        self._refuse_url(change.url)
        now_ms = self._now_ms()
        try:
            edited = await self.store.edit(
                schedule_id, lambda record: edit_of(record, change, now_ms)
            )
        except InvalidSchedule as exc:
            errors = [FieldError(p.field, p.message) for p in exc.problems]
            raise invalid(errors) from None
        if edited.code is Code.NOT_FOUND:
            raise not_found()
        if edited.record is None:
            raise ProblemError(
                503,
                "Service Unavailable",
                "the schedule kept changing while it was being edited; retry",
                headers={"Retry-After": "1"},
            )
        return json_response(await self._view(edited.record))

    async def delete_schedule(self, request: Request) -> Response:
        """``DELETE /schedules/{id}``: no occurrence is created after the
        answer; those already handed to workers complete."""
        self._ready()
        code = await self.store.delete(_schedule_id(request))
        if code is Code.NOT_FOUND:
            raise not_found()
        return Response(status_code=204)

    async def _view(self, record: ScheduleRecord) -> ScheduleView:
        last = None
        if record.last_id is not None:
            last = await self.queue.get(record.last_id)
        return view(record, last)


def edit_of(
    record: ScheduleRecord, change: ScheduleChange, now_ms: int
) -> Edit:
    """What ``change`` writes into ``record``, read at ``now_ms``.

    A pause takes the next occurrence off the wheel; a resume, or a new
    cron or zone, puts the first occurrence after now (and after the
    last one handed over) on it; a new url or request keeps it.

    Raises:
        InvalidSchedule: the new cron or zone is refused, or the schedule
            would never fire again.
    """
    old = record.definition
    definition = old.edited(
        cron=change.cron if change.cron is not None else old.cron,
        timezone=(
            change.timezone if change.timezone is not None else old.timezone
        ),
        url=change.url if change.url is not None else old.url,
        request=(
            (None if change.request is None else pack(change.request))
            if change.request_given
            else old.request
        ),
    )
    paused = record.paused if change.paused is None else change.paused
    next_ms = record.next_ms
    after_ms = now_ms
    if record.last_id is not None:
        after_ms = max(after_ms, scheduled_ms_of(record.last_id))
    if change.retimed:
        spec = definition.spec()  # raises InvalidSchedule
        upcoming = next_occurrences(spec, after_ms, 1)
        if not upcoming:
            validate_schedule(
                spec.cron,
                spec.timezone,
                spec.start_at_ms,
                spec.end_at_ms,
                now_ms=after_ms,
            )
        next_ms = upcoming[0] if upcoming else None
    elif record.paused and not paused:
        upcoming = next_occurrences(definition.spec(), after_ms, 1)
        next_ms = upcoming[0] if upcoming else None
    if paused:
        next_ms = None
    return Edit(paused, next_ms, None if definition == old else definition)


def view(record: ScheduleRecord, last: Record | None) -> ScheduleView:
    """The ``GET /schedules/{id}`` body of a schedule."""
    definition = record.definition
    occurrence = None
    if record.last_id is not None:
        occurrence = LastOccurrence(
            ids.to_text(record.last_id),
            rfc3339(scheduled_ms_of(record.last_id)),
            None if last is None else last.state.value,
        )
    return ScheduleView(
        ids.to_text(record.schedule_id),
        definition.cron,
        definition.timezone,
        definition.url,
        request_spec(definition.request),
        _instant(definition.start_at_ms),
        _instant(definition.end_at_ms),
        cast(Misfire, definition.misfire),
        record.paused,
        _instant(record.next_ms),
        occurrence,
        record.fired,
        record.failed,
        record.missed,
    )


def _instant(ms: int | None) -> str | None:
    return None if ms is None else rfc3339(ms)


def _schedule_id(request: Request) -> bytes:
    schedule_id = ids.parse(request.path_params["schedule_id"])
    if schedule_id is None:
        raise not_found()
    return schedule_id


def not_found() -> ProblemError:
    """The 404 of an unknown schedule."""
    return ProblemError(404, "Not Found", "no schedule with this id")
