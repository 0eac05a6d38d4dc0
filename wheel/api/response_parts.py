"""Responses of the HTTP API: JSON bodies and RFC 9457 problems."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from starlette.responses import Response

from wheel.api.json_body import InvalidRequest
from wheel.api.models import (
    FieldError,
    HistoryEntry,
    Method,
    Problem,
    RequestSpec,
    TimerView,
    encoder,
)
from wheel.api.service import Timer
from wheel.core.delays import ceil_seconds, rfc3339
from wheel.core.states import TimerState
from wheel.core.webhook_request import unpack
from wheel.storage.replies import PastAttempt


class ProblemError(Exception):
    """A client error to answer as ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(title, status, detail, errors=errors or [])
        self.headers = headers

    @classmethod
    def of(cls, invalid: InvalidRequest) -> ProblemError:
        """The problem answering a request body or query refused."""
        return cls(
            invalid.status, invalid.title, invalid.detail, invalid.errors
        )


def url_refused(refusal: str) -> ProblemError:
    """The 422 for a webhook url that the outbound policy refuses."""
    return ProblemError(
        422,
        "Unprocessable Content",
        f"url: {refusal}",
        [FieldError("url", refusal)],
    )


class EncodedResponse(Response):
    """A response whose body is already encoded: Starlette's
    ``Response``, with its headers built directly.

    Starlette's constructor re-examines the body and every header
    (``render``, ``init_headers``) on each response; every API answer
    is encoded bytes of a known type, and this one is built in under
    half the time (0.3 against 0.8 us without extra headers). The
    headers are the same, in the same order: the caller's, then
    ``content-length`` and ``content-type``.
    """

    def __init__(
        self,
        body: bytes,
        status_code: int,
        content_type: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        fixed = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", content_type),
        ]
        if headers:
            self.raw_headers = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ] + fixed
        else:
            self.raw_headers = fixed


JSON = b"application/json"
PROBLEM_JSON = b"application/problem+json"


def json_response(body: object, status: int = 200, **headers: str) -> Response:
    """A JSON response encoded by msgspec."""
    return EncodedResponse(encoder.encode(body), status, JSON, headers)


def problem_response(
    problem: Problem, headers: Mapping[str, str] | None = None
) -> Response:
    """An RFC 9457 problem response."""
    return EncodedResponse(
        encoder.encode(problem), problem.status, PROBLEM_JSON, headers
    )


def unavailable(detail: str, timer_id: str | None = None) -> Response:
    """A 503 problem that asks the client to retry in a second; with the
    id of a create whose outcome is unknown."""
    return problem_response(
        Problem("Service Unavailable", 503, detail, id=timer_id),
        headers={"Retry-After": "1"},
    )


def view(timer: Timer) -> TimerView:
    """The ``GET /timer/{id}`` body of a timer."""
    finished = timer.finished_ms
    state = timer.status
    return TimerView(
        timer.id,
        ceil_seconds(timer.left_ms),
        state.value,
        rfc3339(timer.due_ms),
        timer.attempts,
        [_attempt(past) for past in timer.history],
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
        url=timer.url or None,
        request=request_spec(timer.request),
    )


def _attempt(past: PastAttempt) -> HistoryEntry:
    result = past.result
    if result.isdigit():
        status = int(result)
        error = None if 200 <= status < 300 else f"HTTP {result}"
        return HistoryEntry(
            rfc3339(past.sent_ms), status, error, past.duration_ms
        )
    return HistoryEntry(
        rfc3339(past.sent_ms), None, result or None, past.duration_ms
    )


def request_spec(packed: bytes | None) -> RequestSpec | None:
    """The API's view of a packed request (None for none, or for bytes
    that do not unpack: a view never fails on them)."""
    if not packed:
        return None
    try:
        request = unpack(packed)
    except ValueError:
        return None
    method = cast(Method, request.method)
    return RequestSpec(method, dict(request.headers), request.body)
