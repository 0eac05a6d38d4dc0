"""``GET /timers``: timers by status, a page at a time."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from wheel.api.models import MAX_URL_LENGTH, FieldError, TimerPage
from wheel.api.paging import invalid, page_params, stale
from wheel.api.response_parts import json_response, view
from wheel.api.service import timer_of
from wheel.core.delays import parse_rfc3339
from wheel.core.paging import CursorInvalid, CursorStale
from wheel.core.states import TimerState
from wheel.core.walk import Filter
from wheel.storage.listing import Listing, Query
from wheel.storage.shards import ShardQueue

PARAMETERS = ("status", "due_after", "due_before", "url_prefix")
STATUSES = tuple(state.value for state in TimerState)
URL_UNKEPT = (TimerState.FIRED, TimerState.CANCELLED)
"""Statuses whose records keep no url (url_prefix cannot filter them)."""


class TimerListing:
    """The listing endpoint of one API process."""

    def __init__(self, queue: ShardQueue) -> None:
        self.listing = Listing(queue)

    async def list_timers(self, request: Request) -> Response:
        """``GET /timers?status=...&due_after=...&due_before=...
        &url_prefix=...&limit=...&cursor=...``."""
        params = page_params(request, PARAMETERS)
        query = _query(params.values, params.limit)
        try:
            items, cursor = await self.listing.page(query, params.cursor)
        except CursorInvalid as exc:
            raise invalid([FieldError("cursor", str(exc))]) from None
        except CursorStale as exc:
            raise stale(str(exc)) from None
        views = [
            view(timer_of(item.timer_id, item.record, item.url))
            for item in items
        ]
        return json_response(TimerPage(views, cursor))


def _query(values: dict[str, str], limit: int) -> Query:
    """The listing the parameters ask for.

    Raises:
        ProblemError: 422 naming every bad parameter.
    """
    errors = []
    status = TimerState.PENDING
    raw = values.get("status", "pending")
    if raw in STATUSES:
        status = TimerState(raw)
    else:
        errors.append(
            FieldError("status", f"must be one of {', '.join(STATUSES)}")
        )
    bounds: dict[str, int | None] = {}
    for name in ("due_after", "due_before"):
        bounds[name] = None
        if name in values:
            try:
                bounds[name] = parse_rfc3339(values[name])
            except ValueError as exc:
                errors.append(FieldError(name, str(exc)))
    after, before = bounds["due_after"], bounds["due_before"]
    if after is not None and before is not None and after >= before:
        errors.append(FieldError("due_before", "must be later than due_after"))
    prefix = values.get("url_prefix")
    if prefix is not None:
        if not 0 < len(prefix) <= MAX_URL_LENGTH:
            errors.append(
                FieldError(
                    "url_prefix",
                    f"must be 1 to {MAX_URL_LENGTH} characters",
                )
            )
        elif status in URL_UNKEPT:
            errors.append(
                FieldError(
                    "url_prefix",
                    f"cannot filter {status.value} timers: a finished "
                    "timer's url is not kept",
                )
            )
    if errors:
        raise invalid(errors)
    return Query(status, limit, Filter(after, before), prefix)
