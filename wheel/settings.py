"""Typed settings, built once from ``WHEEL_*`` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from wheel.core.delays import CLAIM_MARGIN_S, STALL_GRACE_S

ENV_PREFIX = "WHEEL_"

Seconds = Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86400)]


class SettingsError(ValueError):
    """A ``WHEEL_*`` variable is unknown or holds a bad value."""


MAX_REPLICA_ACK_TIMEOUT_S = 2.0
"""The longest ``WAIT`` for replicas. Every call that waits for them
has at least 3 s (a create's deadline) for the queue, the call, the wait
and the reply: a longer wait would run every such call past its caller
while a replica is down, a create answered as unknown, a completion
retried until its claim lapses. At least 1 ms: ``WAIT`` with 0 never
returns without its replicas."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of the service; durations are in seconds.

    Each field is read from the variable ``WHEEL_<FIELD NAME IN CAPS>``.
    """

    redis_url: Annotated[
        str, msgspec.Meta(pattern=r"^(redis|rediss|unix)://")
    ] = "redis://localhost:6379/0"
    redis_seeds: str = ""
    key_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")] = (
        "tw"
    )
    shards: Annotated[int, msgspec.Meta(ge=1, le=16384)] = 16
    max_delay: Annotated[int, msgspec.Meta(ge=1, le=10 * 365 * 86400)] = (
        365 * 86400
    )
    tick_interval: Annotated[float, msgspec.Meta(ge=0.01, le=60)] = 0.1
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 500
    lease_ttl: Annotated[float, msgspec.Meta(ge=0.5, le=3600)] = 5.0
    webhook_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    reclaim_idle: Seconds = 60.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    retry_base: Seconds = 1.0
    retry_max: Seconds = 3600.0
    retention: Seconds = 7 * 86400.0
    worker_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 200
    shutdown_grace: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 15.0
    heartbeat_ttl: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 15.0
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    host_concurrency: Annotated[int, msgspec.Meta(ge=0, le=10000)] = 0
    ready_max: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 2000
    replica_acks: Annotated[int, msgspec.Meta(ge=0, le=16)] = 0
    replica_ack_timeout: Annotated[
        float, msgspec.Meta(ge=0.001, le=MAX_REPLICA_ACK_TIMEOUT_S)
    ] = 1.0
    allow_private_targets: bool = False
    allowed_targets: str = ""
    webhook_secret: str = ""
    api_tokens: str = ""
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    retry_after_max: Seconds = 3600.0
    misfire_grace: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 30.0

    def __post_init__(self) -> None:
        least_s = self.webhook_timeout + CLAIM_MARGIN_S + STALL_GRACE_S
        if self.reclaim_idle < least_s:
            raise SettingsError(
                f"WHEEL_RECLAIM_IDLE ({self.reclaim_idle:g} s) must be at "
                f"least WHEEL_WEBHOOK_TIMEOUT ({self.webhook_timeout:g} s) "
                f"+ the claim margin ({CLAIM_MARGIN_S:g} s) + the stall "
                f"grace ({STALL_GRACE_S:g} s) = {least_s:g} s: a claim "
                "must outlast the slowest webhook and the write of its "
                "outcome, or that webhook could be sent twice at once"
            )
        if self.retry_max < self.retry_base:
            raise SettingsError("WHEEL_RETRY_MAX must be >= WHEEL_RETRY_BASE")
        if seed_nodes(self.redis_seeds) and self.redis_url.startswith(
            "unix://"
        ):
            raise SettingsError(
                "WHEEL_REDIS_SEEDS names cluster nodes, but "
                "WHEEL_REDIS_URL is a unix socket (a single Redis)"
            )

    @property
    def seeds(self) -> list[str]:
        """The cluster nodes named by WHEEL_REDIS_SEEDS, as ``host:port``."""
        return seed_nodes(self.redis_seeds)

    @property
    def host_share(self) -> int:
        """Webhooks in flight to one host that a worker always allows:
        WHEEL_HOST_CONCURRENCY, or half the worker's (0, the default)."""
        if self.host_concurrency:
            return min(self.host_concurrency, self.worker_concurrency)
        return max(1, self.worker_concurrency // 2)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked."""
        data = msgspec.structs.asdict(self) | changes
        return _convert(data, strict=True)

    def redacted_redis_url(self) -> str:
        """The Redis URL with any password masked, for logs."""
        return redact_url(self.redis_url)


_SEED_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


def seed_nodes(text: str) -> list[str]:
    """The ``host:port`` nodes of a comma-separated list (blanks ignored);
    an IPv6 host in brackets (``[::1]:7000``) is kept without them.

    Raises:
        SettingsError: naming WHEEL_REDIS_SEEDS, for a node that is not a
            host name or address and a port from 1 to 65535 (a URL, say).
    """
    nodes = []
    for part in text.split(","):
        node = part.strip()
        if not node:
            continue
        host, _, port = node.rpartition(":")
        if (
            not _SEED_HOST.fullmatch(host)
            or not port.isdecimal()
            or not 0 < int(port) < 65536
        ):
            raise SettingsError(
                f"WHEEL_REDIS_SEEDS: {node!r} is not host:port (a cluster "
                "node, as in redis-2:6379)"
            )
        nodes.append(f"{host.strip('[]')}:{int(port)}")
    return nodes


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return ENV_PREFIX + field.upper()


def field_names() -> tuple[str, ...]:
    """Every setting's field name, in declaration order."""
    return Settings.__struct_fields__


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``).

    Raises:
        SettingsError: naming the variable, for an unknown ``WHEEL_*``
            variable or a value of the wrong type or out of bounds.
    """
    environ = os.environ if environ is None else environ
    known = {env_name(name): name for name in field_names()}
    data: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        if key not in known:
            raise SettingsError(f"unknown setting {key}")
        data[known[key]] = value
    return _convert(data, strict=False)


def _convert(data: Mapping[str, Any], *, strict: bool) -> Settings:
    try:
        return msgspec.convert(data, Settings, strict=strict)
    except msgspec.ValidationError as exc:
        # msgspec says "at `$.shards`"; name the variable instead.
        message = str(exc)
        for name in field_names():
            message = message.replace(f"`$.{name}`", env_name(name))
        raise SettingsError(message) from None


# redis-py also takes the password from the query: ``?password=...``.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with any password (userinfo or query) replaced by ***."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
