"""Parse a ``POST /timer`` body: a fast path, a full analysis on refusal."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, UnsetType

from wheel.api.models import MAX_URL_LENGTH, FieldError

PARTS = ("hours", "minutes", "seconds")
DELAY_FIELD = "hours, minutes, seconds"
"""The field named when the parts are fine one by one but not together."""

# A part past this is blamed on its own rather than on the total: no
# allowed delay comes near it in any unit. It never appears in a message.
_PART_BOUND = 10**12

# Python refuses to convert integers of more than 4300 digits; past this
# many digits only the sign of a number matters, so it is clamped.
_MAX_INT_DIGITS = 30
_HUGE_INT: int = 10**_MAX_INT_DIGITS

# C0 and C1 control characters, DEL and any Unicode whitespace.
_BAD_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DETAIL_ERRORS = 10
# Byte values, not b"\\": ``int in bytes`` is a memchr, 7x faster here.
_BACKSLASH = ord("\\")
_QUOTE = ord('"')

_NOT_JSON = "the body is not valid JSON"
_NOT_UTF8 = "the body is not valid UTF-8"


@dataclass(frozen=True, slots=True)
class TimerInput:
    """A valid ``POST /timer`` body; a missing part is 0."""

    url: str
    hours: int
    minutes: int
    seconds: int
    delay_ms: int


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


# The fast path's shape. UNSET defaults (not 0) tell which parts the body
# holds, which the duplicate-key check needs.
_Part = Annotated[int, msgspec.Meta(ge=0)]


class _FastBody(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    hours: _Part | UnsetType = UNSET
    minutes: _Part | UnsetType = UNSET
    seconds: _Part | UnsetType = UNSET


_decode_fast = msgspec.json.Decoder(_FastBody).decode


def parse_timer_request(body: bytes, max_delay_s: int) -> TimerInput:
    """The timer a ``POST /timer`` body asks for.

    Raises:
        InvalidRequest: 400 when the body is not UTF-8 JSON or repeats a
            key; 422, naming every bad field, when it breaks a rule.
    """
    try:
        fast = _decode_fast(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _analyse(body, max_delay_s)
    hours, minutes, seconds = fast.hours, fast.minutes, fast.seconds
    keys = 1
    if hours is UNSET:
        hours = 0
    else:
        keys += 1
    if minutes is UNSET:
        minutes = 0
    else:
        keys += 1
    if seconds is UNSET:
        seconds = 0
    else:
        keys += 1
    # msgspec keeps the last of repeated keys silently. Without a
    # backslash every '"' delimits a string, and a valid body's strings
    # are its keys and the url, so a repeated key shows as extra quotes.
    # A body with escapes goes the slow way, which decodes them.
    if _BACKSLASH in body or body.count(_QUOTE) != 2 * keys + 2:
        return _analyse(body, max_delay_s)
    total_s = (hours * 60 + minutes) * 60 + seconds
    if total_s > max_delay_s or check_url(fast.url) is not None:
        return _analyse(body, max_delay_s)
    return TimerInput(fast.url, hours, minutes, seconds, total_s * 1000)


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be a webhook target, or None when it can."""
    if not url:
        return "must not be empty"
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if _BAD_URL_CHARS.search(url):
        return "must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an absolute http or https URL"
    if not parts.hostname:
        return "must name a host"
    if port == 0:
        return "must not use port 0"
    return None


def _analyse(body: bytes, max_delay_s: int) -> TimerInput:
    """The slow, complete verdict on a body the fast path did not pass."""
    document = _load(body)
    if not isinstance(document, dict):
        message = f"must be a JSON object, not {_kind(document)}"
        raise _unprocessable([FieldError("$", message)])
    errors = []
    url = None
    parts = dict.fromkeys(PARTS, 0)
    parts_ok = True
    for key, value in document.items():
        if key == "url":
            reason = _url_problem(value)
            url = value
        elif key in parts:
            reason = _part_problem(value, max_delay_s)
            parts[key] = value
            parts_ok = parts_ok and reason is None
        else:
            reason = "is not a known field"
        if reason is not None:
            errors.append(FieldError(key, reason))
    if "url" not in document:
        errors.append(FieldError("url", "is required"))
    hours, minutes, seconds = parts.values()
    total_s = (hours * 60 + minutes) * 60 + seconds if parts_ok else 0
    if total_s > max_delay_s:
        errors.append(FieldError(DELAY_FIELD, _total_message(max_delay_s)))
    if errors:
        raise _unprocessable(errors)
    assert isinstance(url, str)
    return TimerInput(url, hours, minutes, seconds, total_s * 1000)


def _load(body: bytes) -> Any:
    """The JSON document of ``body``, or a 400 saying why there is none."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_request(f"{_NOT_UTF8}: {exc}") from None
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
        raise _bad_request(f"{_NOT_JSON}: {exc}") from None
    except RecursionError:
        raise _bad_request("the body nests too deeply") from None
    # json accepts an escaped lone surrogate, which no UTF-8 text holds
    # (and msgspec refuses); such a string could not even be stored.
    if "\\u" in text:
        surrogate = _find_surrogate(document)
        if surrogate is not None:
            raise _bad_request(
                f"{_NOT_UTF8}: a string escapes the lone surrogate "
                f"U+{ord(surrogate):04X}"
            )
    if repeated:
        keys = ", ".join(f"`{key}`" for key in repeated)
        plural = "s" if len(repeated) > 1 else ""
        raise _bad_request(f"the body repeats the key{plural} {keys}")
    return document


def _refuse_constant(name: str) -> Any:
    """Refuse ``NaN`` and ``Infinity``, which Python's json accepts."""
    raise _bad_request(f"{_NOT_JSON}: {name} is not a JSON value")


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


def _url_problem(value: object) -> str | None:
    """Why ``value`` is not a webhook url, or None."""
    if not isinstance(value, str):
        return f"must be a string, not {_kind(value)}"
    return check_url(value)


def _part_problem(value: object, max_delay_s: int) -> str | None:
    """Why ``value`` is not a part of the delay, or None."""
    if type(value) is not int:
        return f"must be a non-negative integer, not {_kind(value)}"
    if value < 0:
        return "must be a non-negative integer, not a negative number"
    if value > _PART_BOUND:
        return f"is too large: {_total_message(max_delay_s)}"
    return None


def _total_message(max_delay_s: int) -> str:
    return f"the total delay must be at most {max_delay_s} seconds"


def _kind(value: object) -> str:
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


def _bad_request(detail: str) -> InvalidRequest:
    return InvalidRequest(400, "Bad Request", detail)


def _unprocessable(errors: list[FieldError]) -> InvalidRequest:
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
