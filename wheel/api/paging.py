"""The HTTP side of cursor-paged listings: ``limit`` and ``cursor`` in
the query, every query parameter checked, and the listing's errors as
problems. A listing endpoint names its own parameters and page type."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from starlette.requests import Request

from wheel.api.models import FieldError
from wheel.api.response_parts import ProblemError
from wheel.core.paging import MAX_CURSOR_CHARS

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


@dataclass(frozen=True, slots=True)
class PageParams:
    """A listing request's query: the page and the listing's own."""

    limit: int
    cursor: str | None
    values: dict[str, str]


def page_params(request: Request, known: Collection[str]) -> PageParams:
    """The query of a listing request, checked.

    Raises:
        ProblemError: 422 naming every unknown, repeated or bad parameter.
    """
    errors = []
    query = request.query_params
    values: dict[str, str] = {}
    for name in dict.fromkeys(query.keys()):
        given = query.getlist(name)
        if name not in known and name not in ("limit", "cursor"):
            errors.append(FieldError(name, "is not a known parameter"))
        elif len(given) > 1:
            errors.append(FieldError(name, "is given more than once"))
        else:
            values[name] = given[0]
    limit = query_limit(values.pop("limit", None), DEFAULT_LIMIT, MAX_LIMIT)
    if limit is None:
        errors.append(limit_error(MAX_LIMIT))
        limit = DEFAULT_LIMIT
    cursor = values.pop("cursor", None)
    if cursor is not None and not 0 < len(cursor) <= MAX_CURSOR_CHARS:
        errors.append(FieldError("cursor", "is not a cursor this API gave"))
    if errors:
        raise invalid(errors)
    return PageParams(limit, cursor, values)


def query_limit(raw: str | None, default: int, most: int) -> int | None:
    """A ``limit`` query parameter from 1 to ``most`` (``default`` when
    absent); None when it is anything else.

    Only ASCII digits: ``str.isdigit`` also accepts the likes of "²",
    which ``int`` refuses, and a long run of zeros would reach ``int``'s
    limit on digits.
    """
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(most))):
        return None
    value = int(raw)
    return value if 1 <= value <= most else None


def limit_error(most: int) -> FieldError:
    """What a bad ``limit`` is told."""
    return FieldError("limit", f"must be an integer from 1 to {most}")


def invalid(errors: list[FieldError]) -> ProblemError:
    """A 422 naming every bad query parameter."""
    detail = "; ".join(f"`{e.field}` {e.message}" for e in errors[:10])
    return ProblemError(422, "Unprocessable Content", detail, errors)


def stale(why: str) -> ProblemError:
    """The 409 of a listing whose cursor can no longer keep its promise."""
    return ProblemError(
        409,
        "Conflict",
        f"{why}; start the listing again without a cursor (a timer would "
        "otherwise be listed twice)",
    )
