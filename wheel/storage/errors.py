"""What can go wrong with a Redis call, named once for the whole service.

The connection layer turns redis-py's errors into these (or retries
them); everything above it catches these names only.
"""

from __future__ import annotations

from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class RedisUnavailable(Exception):
    """Redis did not answer within the caller's deadline."""


class StoreFull(Exception):
    """Redis refused a write: it is at ``maxmemory`` (noeviction)."""


class NotReplicated(Exception):
    """A write ran on the master but not enough replicas confirmed it."""

    def __init__(self, confirmed: int, wanted: int) -> None:
        super().__init__(
            f"only {confirmed} of {wanted} replicas confirmed the write"
        )
        self.confirmed = confirmed
        self.wanted = wanted


TRANSIENT: tuple[type[Exception], ...] = (
    RedisUnavailable,
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    OSError,
)
"""Errors a retry on a fresh connection (or a new master) can cure; a
deadline that passes is an ``OSError`` (``TimeoutError``) too."""

OOM_MESSAGE = "OOM command not allowed"
"""A refusal at maxmemory, as Redis words it (inside a script on 6.2)."""


def describe(exc: BaseException) -> str:
    """A short one-line description of an error, for logs and replies."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
