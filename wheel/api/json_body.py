"""Strict JSON request bodies, and the problems that refuse them.

A body is UTF-8 JSON without repeated keys, ``NaN``, lone surrogates or
absurdly long integers; a refusal is an :class:`InvalidRequest` (400
for a body that is not such JSON, 422 naming every bad field).
"""

from __future__ import annotations

import json
import re
from typing import Any

from wheel.api.models import FieldError

DELAY_FIELD = "hours, minutes, seconds"
"""The field named when the parts are fine one by one but not together
(its message is a sentence of its own)."""

# Python refuses to convert integers of more than 4300 digits; past this
# many digits only the sign of a number matters, so it is clamped.
_MAX_INT_DIGITS = 30
_HUGE_INT: int = 10**_MAX_INT_DIGITS
_SURROGATE = re.compile("[\ud800-\udfff]")
_DETAIL_ERRORS = 10

_NOT_JSON = "the body is not valid JSON"
_NOT_UTF8 = "the body is not valid UTF-8"


# The name is the contract the API was given, hence no "Error" suffix.
class InvalidRequest(Exception):
    """Why a body is refused: an HTTP status, title, detail and fields."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []


def load(body: bytes) -> Any:
    """The JSON document of ``body``, or a 400 saying why there is none."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"{_NOT_UTF8}: {exc}") from None
    repeated: dict[str, None] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        members = dict(pairs)
        if len(members) != len(pairs):
            seen = set()
            for key, _ in pairs:
                if key in seen:
                    repeated[key] = None
                seen.add(key)
        return members

    try:
        document = json.loads(
            text,
            object_pairs_hook=pairs_hook,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
        )
    except json.JSONDecodeError as exc:
        raise bad_request(f"{_NOT_JSON}: {exc}") from None
    except RecursionError:
        raise bad_request("the body nests too deeply") from None
    # json accepts an escaped lone surrogate, which no UTF-8 text holds
    # (and msgspec refuses); such a string could not even be stored.
    if "\\u" in text:
        surrogate = _find_surrogate(document)
        if surrogate is not None:
            raise bad_request(
                f"{_NOT_UTF8}: a string escapes the lone surrogate "
                f"U+{ord(surrogate):04X}"
            )
    if repeated:
        keys = ", ".join(f"`{key}`" for key in repeated)
        plural = "s" if len(repeated) > 1 else ""
        raise bad_request(f"the body repeats the key{plural} {keys}")
    return document


def _refuse_constant(name: str) -> Any:
    """Refuse ``NaN`` and ``Infinity``, which Python's json accepts."""
    raise bad_request(f"{_NOT_JSON}: {name} is not a JSON value")


def _parse_int(digits: str) -> int:
    """A JSON integer; one too long to convert keeps just its sign."""
    if len(digits) <= _MAX_INT_DIGITS:
        return int(digits)
    return -_HUGE_INT if digits.startswith("-") else _HUGE_INT


def _find_surrogate(document: Any) -> str | None:
    """A lone surrogate in any string of ``document``, or None."""
    # A loop, not recursion: the document may nest near the limit.
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                return found.group()
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def load_object(body: bytes) -> dict[str, Any]:
    """The JSON object of ``body``, or the problem saying why not."""
    document = load(body)
    if not isinstance(document, dict):
        message = f"must be a JSON object, not {kind(document)}"
        raise unprocessable([FieldError("$", message)])
    return document


def kind(value: object) -> str:
    """What a decoded JSON value is, as a message names it."""
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or an exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def bad_request(detail: str) -> InvalidRequest:
    return InvalidRequest(400, "Bad Request", detail)


def unprocessable(errors: list[FieldError]) -> InvalidRequest:
    """A 422 whose detail is one sentence over ``errors``."""
    shown = [_sentence(error) for error in errors[:_DETAIL_ERRORS]]
    if len(errors) > _DETAIL_ERRORS:
        shown.append(f"and {len(errors) - _DETAIL_ERRORS} more")
    detail = "; ".join(shown)
    return InvalidRequest(422, "Unprocessable Content", detail, errors)


def _sentence(error: FieldError) -> str:
    """One error as a clause of the detail."""
    if error.field == "$":
        return f"the body {error.message}"
    if error.field == DELAY_FIELD:
        return error.message
    return f"`{error.field}` {error.message}"
