"""The request a timer sends when it fires: method, headers and body.

Without one, a timer sends today's webhook, ``POST {"id": "<id>"}``.
With one, each part given replaces the default: ``method`` (POST, PUT,
PATCH, GET, DELETE), extra ``headers``, and ``body`` (a string sent
verbatim as UTF-8; without it POST, PUT and PATCH send the default JSON
body, GET and DELETE none). The same request is sent on every attempt.

This module is pure: the rules (:func:`parse_request`, naming every bad
part), and the compact form kept in Redis (:func:`pack`, :func:`unpack`),
which the scripts store and hand back without reading it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
BODYLESS = frozenset({"GET", "DELETE"})
"""Methods sent without a body (a body for them is refused)."""
MAX_BODY_BYTES = 32 * 1024
"""Most bytes of a ``body`` (UTF-8)."""
MAX_HEADERS = 32
MAX_HEADER_NAME = 128
MAX_HEADERS_BYTES = 8 * 1024
"""Most bytes of all header names and values together."""

FORBIDDEN_HEADERS = frozenset(
    {
        # What the service sets itself.
        "host",
        "content-length",
        "transfer-encoding",
        "idempotency-key",
        "user-agent",
        # Hop-by-hop (RFC 9110 section 7.6.1), meaningless end to end.
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        # A negotiation with the next hop: "100-continue" would hold the
        # body back until the receiver answered 100.
        "expect",
    }
)
FORBIDDEN_PREFIX = "webhook-"
"""The Standard Webhooks signature headers are the service's."""

# RFC 9110 section 5.6.2: a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# C0, DEL and C1, as for urls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A timer's own request; ``body`` None means the default body."""

    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None

    def body_bytes(self, default: bytes) -> bytes | None:
        """The bytes to send: the body, ``default`` for a POST, PUT or
        PATCH without one, None for GET and DELETE."""
        if self.method in BODYLESS:
            return None
        if self.body is None:
            return default
        return self.body.encode()


class RequestInvalid(ValueError):
    """Why a ``request`` is refused: (field, message) for every bad part.

    Fields are dotted paths: ``request.method``, ``request.body``,
    ``request.headers.<name>``.
    """

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f} {m}" for f, m in errors))
        self.errors = errors


def parse_request(value: object, field: str = "request") -> WebhookRequest:
    """The request a decoded JSON ``value`` describes.

    Raises:
        RequestInvalid: naming every bad part.
    """
    if not isinstance(value, dict):
        raise RequestInvalid(
            [(field, "must be an object with method, headers and body")]
        )
    errors: list[tuple[str, str]] = []
    for key in value:
        if key not in ("method", "headers", "body"):
            errors.append(
                (
                    f"{field}.{key}",
                    "is not a known field (method, headers, body)",
                )
            )
    method = value.get("method", "POST")
    if method not in METHODS:
        shown = f"`{method}`" if isinstance(method, str) else "that value"
        errors.append(
            (
                f"{field}.method",
                f"must be one of {', '.join(METHODS)}, not {shown}"[:200],
            )
        )
        method = "POST"
    headers = _headers(value.get("headers", {}), f"{field}.headers", errors)
    body = value.get("body")
    if "body" in value:
        if not isinstance(body, str):
            errors.append((f"{field}.body", "must be a string"))
            body = None
        elif len(body.encode(errors="surrogatepass")) > MAX_BODY_BYTES:
            errors.append(
                (
                    f"{field}.body",
                    f"must be at most {MAX_BODY_BYTES} bytes in UTF-8",
                )
            )
        elif method in BODYLESS:
            errors.append((f"{field}.body", f"cannot be sent with {method}"))
    if errors:
        raise RequestInvalid(errors)
    return WebhookRequest(method, headers, body)


def _headers(
    value: object, field: str, errors: list[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """The headers of ``value``; appends why any is refused."""
    if not isinstance(value, dict):
        errors.append((field, "must be an object of header names to values"))
        return ()
    if len(value) > MAX_HEADERS:
        errors.append((field, f"must hold at most {MAX_HEADERS} headers"))
        return ()
    seen: set[str] = set()
    size = 0
    out = []
    for name, text in value.items():
        where = f"{field}.{name}"[:200]
        lower = name.lower()
        if not _TOKEN.fullmatch(name) or len(name) > MAX_HEADER_NAME:
            errors.append(
                (
                    where,
                    "is not a valid header name (an RFC 9110 token of "
                    f"at most {MAX_HEADER_NAME} characters)",
                )
            )
        elif lower in FORBIDDEN_HEADERS or lower.startswith(FORBIDDEN_PREFIX):
            errors.append(
                (
                    where,
                    "is set by the service (or hop-by-hop) and cannot "
                    "be given",
                )
            )
        elif lower in seen:
            errors.append((where, "is given twice (names ignore case)"))
        elif not isinstance(text, str):
            errors.append((where, "must be a string"))
        elif _CONTROL.search(text):
            errors.append((where, "must not contain control characters"))
        else:
            seen.add(lower)
            size += len(name) + len(text.encode(errors="surrogatepass"))
            out.append((name, text))
    if size > MAX_HEADERS_BYTES:
        errors.append((field, f"must total at most {MAX_HEADERS_BYTES} bytes"))
    return tuple(out)


def normalized(request: WebhookRequest | None) -> WebhookRequest | None:
    """None for a request that is the default webhook (nothing stored)."""
    if request is None or request == WebhookRequest():
        return None
    return request


class _Packed(msgspec.Struct, array_like=True):
    method: str
    headers: list[str]
    body: str | None


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Packed).decode


def pack(request: WebhookRequest) -> bytes:
    """The compact form kept in a timer's record (MessagePack)."""
    flat = [part for pair in request.headers for part in pair]
    return _encode(_Packed(request.method, flat, request.body))


def unpack(data: bytes) -> WebhookRequest:
    """The request :func:`pack` made.

    Raises:
        ValueError: the bytes are not a packed request.
    """
    try:
        packed = _decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a packed request: {exc}") from None
    flat = packed.headers
    headers = tuple(zip(flat[::2], flat[1::2], strict=True))
    return WebhookRequest(packed.method, headers, packed.body)
