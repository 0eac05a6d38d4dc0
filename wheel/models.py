"""Wire types: msgspec Structs and the encoders/decoders built once."""

from __future__ import annotations

from typing import Annotated

import msgspec

# A generous per-part bound, far above any allowed total, so that a huge
# number is a clear 422 instead of an arithmetic surprise.
Part = Annotated[int, msgspec.Meta(ge=0, le=10**12)]


class TimerRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /timer``; a missing part counts as 0."""

    url: str
    hours: Part = 0
    minutes: Part = 0
    seconds: Part = 0


class TimerCreated(msgspec.Struct):
    """Reply of ``POST /timer``."""

    id: str
    time_left: int


class TimerView(msgspec.Struct, omit_defaults=True):
    """Reply of ``GET /timer/{id}``; the optional fields appear once they
    mean something."""

    id: str
    time_left: int
    status: str
    due_at: str
    attempts: int
    next_attempt_at: str | None = None
    """When a retry is scheduled (status pending after an attempt)."""
    fired_at: str | None = None
    """When the webhook succeeded (status fired)."""
    finished_at: str | None = None
    """When the timer failed or was cancelled."""
    last_status: int | None = None
    """HTTP status of the last attempt, when it got an answer."""
    last_error: str | None = None
    """Why the last attempt failed."""


class FieldError(msgspec.Struct):
    """One invalid field of a request."""

    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"
    errors: list[FieldError] = []


class Webhook(msgspec.Struct):
    """Body of the webhook POSTed when a timer fires."""

    id: str


request_decoder = msgspec.json.Decoder(TimerRequest)
encoder = msgspec.json.Encoder()
