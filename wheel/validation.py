"""Pure checks of a timer request beyond its JSON types."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from wheel.models import FieldError, TimerRequest
from wheel.wheelmath import delay_ms

MAX_URL_LENGTH = 2048

# C0 and C1 control characters, DEL and any Unicode whitespace.
_BAD_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


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


def check_request(
    request: TimerRequest, max_delay_s: int
) -> tuple[int, list[FieldError]]:
    """The delay in ms of a decoded request, and what is wrong with it."""
    errors = []
    reason = check_url(request.url)
    if reason:
        errors.append(FieldError("url", reason))
    total_ms = delay_ms(request.hours, request.minutes, request.seconds)
    if total_ms > max_delay_s * 1000:
        errors.append(
            FieldError(
                "hours, minutes, seconds",
                f"the total delay must not exceed {max_delay_s} seconds",
            )
        )
    return total_ms, errors
