"""Responses of the HTTP API: JSON bodies and RFC 9457 problems."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response

from wheel.models import FieldError, Problem, encoder


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


def json_response(body: object, status: int = 200, **headers: str) -> Response:
    """A JSON response encoded by msgspec."""
    return Response(
        encoder.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers or None,
    )


def problem_response(
    problem: Problem, headers: dict[str, str] | None = None
) -> Response:
    """An RFC 9457 problem response."""
    return Response(
        encoder.encode(problem),
        status_code=problem.status,
        media_type="application/problem+json",
        headers=headers,
    )


def rfc3339(epoch_ms: int) -> str:
    """An epoch ms instant as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unavailable(detail: str) -> Response:
    """A 503 problem that asks the client to retry in a second."""
    return problem_response(
        Problem("Service Unavailable", 503, detail),
        headers={"Retry-After": "1"},
    )
