"""What the API reads from a request: the body, the token, the key."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import ClientDisconnect, Request

from wheel.api.response_parts import ProblemError

MAX_BODY_BYTES = 64 * 1024
MAX_IDEMPOTENCY_KEY = 255


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProblemError(
                400, "Bad Request", "the Content-Length header is invalid"
            )
        if int(declared) > MAX_BODY_BYTES:
            raise _too_large()
    # The ASGI messages themselves rather than ``request.stream()``: an
    # async generator costs a create more than its body's one message.
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large() -> ProblemError:
    return ProblemError(
        413,
        "Content Too Large",
        f"the body must be at most {MAX_BODY_BYTES} bytes",
    )


class Tokens:
    """The API tokens of ``WHEEL_API_TOKENS``; none means open."""

    def __init__(self, setting: str) -> None:
        self._tokens = [
            token.strip().encode()
            for token in setting.split(",")
            if token.strip()
        ]

    @property
    def enabled(self) -> bool:
        """Whether any token is configured."""
        return bool(self._tokens)

    def scope(self, request: Request) -> str:
        """The caller's scope (a digest of its token); "" when open.

        Raises:
            ProblemError: 401 without a valid ``Authorization: Bearer``.
        """
        if not self._tokens:
            return ""
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        presented = given.strip().encode()
        matched = b""
        if scheme.lower() == "bearer" and presented:
            # Compare with every token, so the time taken does not tell
            # which one (or how much of one) matched.
            for token in self._tokens:
                if hmac.compare_digest(token, presented):
                    matched = token
        if not matched:
            raise ProblemError(
                401,
                "Unauthorized",
                "this endpoint needs an 'Authorization: Bearer <token>' "
                "header with a valid API token",
                headers={"WWW-Authenticate": 'Bearer realm="timer-wheel"'},
            )
        return hashlib.sha256(matched).hexdigest()[:16]


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header, unquoted; None when absent.

    The IETF draft makes it a structured-field string (``"abc"``); an
    unquoted token is accepted too, as most clients send one.
    """
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ProblemError(
            400,
            "Bad Request",
            "the Idempotency-Key header must be 1 to "
            f"{MAX_IDEMPOTENCY_KEY} printable characters",
        )
    return key
