"""Settings from ``WHEEL_*`` variables: defaults, overrides and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from wheel.core.delays import CLAIM_MARGIN_S, STALL_GRACE_S
from wheel.engine.firer import COMPLETE_CALL_S
from wheel.settings import (
    MAX_REPLICA_ACK_TIMEOUT_S,
    Settings,
    SettingsError,
    env_name,
    field_names,
    from_env,
    redact_url,
)
from wheel.storage.connection import DEADLINE_S

OVERRIDES: list[tuple[str, str, Any]] = [
    ("redis_url", "rediss://cache.internal:6380/3", None),
    ("redis_seeds", "redis-2:6379,10.0.0.3:7000", None),
    ("key_prefix", "app.tw-1_x", None),
    ("shards", "8", 8),
    ("max_delay", "3600", 3600),
    ("tick_interval", "0.5", 0.5),
    ("batch_size", "100", 100),
    ("lease_ttl", "2.5", 2.5),
    ("webhook_timeout", "3", 3.0),
    ("reclaim_idle", "120", 120.0),
    ("max_attempts", "3", 3),
    ("retry_base", "0.25", 0.25),
    ("retry_max", "60", 60.0),
    ("retention", "3600", 3600.0),
    ("worker_concurrency", "50", 50),
    ("shutdown_grace", "0", 0.0),
    ("heartbeat_ttl", "30", 30.0),
    ("log_format", "json", None),
    ("log_level", "DEBUG", None),
    ("host_concurrency", "20", 20),
    ("ready_max", "500", 500),
    ("replica_acks", "1", 1),
    ("replica_ack_timeout", "0.5", 0.5),
    ("allow_private_targets", "1", True),
    ("allowed_targets", "10.0.0.0/8,hooks.internal", None),
    ("webhook_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", None),
    ("api_tokens", "t0k3n-a,t0k3n-b", None),
    ("metrics_port", "9100", 9100),
    ("retry_after_max", "120", 120.0),
    ("misfire_grace", "0", 0.0),
]


def test_defaults_suit_a_laptop() -> None:
    """With no WHEEL_ variable every setting has its documented default."""
    settings = from_env({})
    assert settings == Settings()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.key_prefix == "tw"
    assert settings.shards == 16
    assert settings.max_delay == 365 * 86400
    assert settings.tick_interval == 0.1
    assert settings.batch_size == 500
    assert settings.lease_ttl == 5.0
    assert settings.webhook_timeout == 10.0
    assert settings.reclaim_idle == 60.0
    assert settings.max_attempts == 5
    assert settings.retry_base == 1.0
    assert settings.retry_max == 3600.0
    assert settings.retention == 7 * 86400.0
    assert settings.worker_concurrency == 200
    assert settings.shutdown_grace == 15.0
    assert settings.heartbeat_ttl == 15.0
    assert settings.log_format == "auto"
    assert settings.log_level == "INFO"


def test_other_variables_are_ignored() -> None:
    """Variables without the WHEEL_ prefix do not affect the settings."""
    environ = {"PATH": "/bin", "WHEELS": "1", "REDIS_URL": "redis://x:1/0"}
    assert from_env(environ) == Settings()


def test_every_setting_has_an_override_case() -> None:
    """The override table below covers every field of Settings."""
    assert [name for name, _, _ in OVERRIDES] == list(field_names())


@pytest.mark.parametrize(("field", "raw", "parsed"), OVERRIDES)
def test_each_override_is_parsed(field: str, raw: str, parsed: Any) -> None:
    """WHEEL_<FIELD> sets that field, converted to its type."""
    settings = from_env({env_name(field): raw})
    expected = raw if parsed is None else parsed
    value = getattr(settings, field)
    assert value == expected
    assert type(value) is type(expected)
    untouched = {n for n in field_names() if n != field}
    for name in untouched:
        assert getattr(settings, name) == getattr(Settings(), name)


def test_overrides_combine() -> None:
    """Several variables at once each set their own field."""
    settings = from_env(
        {"WHEEL_SHARDS": "2", "WHEEL_MAX_DELAY": "60", "WHEEL_KEY_PREFIX": "x"}
    )
    assert (settings.shards, settings.max_delay) == (2, 60)
    assert settings.key_prefix == "x"


def test_env_name() -> None:
    """A field's variable is WHEEL_ plus the field name in capitals."""
    assert env_name("reclaim_idle") == "WHEEL_RECLAIM_IDLE"


@pytest.mark.parametrize(
    "variable", ["WHEEL_SHARD", "WHEEL_FOO", "WHEEL_", "WHEEL_shards"]
)
def test_unknown_variable_is_rejected_by_name(variable: str) -> None:
    """An unknown WHEEL_ variable fails loudly, naming the variable."""
    with pytest.raises(SettingsError, match=variable):
        from_env({variable: "4"})


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("WHEEL_SHARDS", "abc"),
        ("WHEEL_SHARDS", ""),
        ("WHEEL_SHARDS", "0"),
        ("WHEEL_SHARDS", "16385"),
        ("WHEEL_SHARDS", "1.5"),
        ("WHEEL_SHARDS", "true"),
        ("WHEEL_MAX_DELAY", "0"),
        ("WHEEL_MAX_DELAY", "-5"),
        ("WHEEL_MAX_DELAY", "315360001"),
        ("WHEEL_TICK_INTERVAL", "fast"),
        ("WHEEL_TICK_INTERVAL", "0"),
        ("WHEEL_TICK_INTERVAL", "inf"),
        ("WHEEL_BATCH_SIZE", "0"),
        ("WHEEL_LEASE_TTL", "0.1"),
        ("WHEEL_WEBHOOK_TIMEOUT", "0"),
        ("WHEEL_WEBHOOK_TIMEOUT", "nan"),
        ("WHEEL_RECLAIM_IDLE", "-1"),
        ("WHEEL_RECLAIM_IDLE", "nan"),
        ("WHEEL_MAX_ATTEMPTS", "0"),
        ("WHEEL_MAX_ATTEMPTS", "101"),
        ("WHEEL_RETRY_BASE", "0"),
        ("WHEEL_RETENTION", "inf"),
        ("WHEEL_WORKER_CONCURRENCY", "0"),
        ("WHEEL_SHUTDOWN_GRACE", "-1"),
        ("WHEEL_HEARTBEAT_TTL", "0.5"),
        ("WHEEL_LOG_FORMAT", "xml"),
        ("WHEEL_LOG_LEVEL", "verbose"),
        ("WHEEL_KEY_PREFIX", "a b"),
        ("WHEEL_KEY_PREFIX", "{tw}"),
        ("WHEEL_KEY_PREFIX", ""),
        ("WHEEL_REDIS_URL", "localhost:6379"),
        ("WHEEL_REDIS_URL", "http://localhost:6379/0"),
        ("WHEEL_REDIS_SEEDS", "redis-2"),
        ("WHEEL_REDIS_SEEDS", "redis-2:6379,:6380"),
        ("WHEEL_REDIS_SEEDS", "redis-2:0"),
        ("WHEEL_REDIS_SEEDS", "redis-2:65536"),
        ("WHEEL_REDIS_SEEDS", "redis-2:port"),
        ("WHEEL_REDIS_SEEDS", "redis://redis-2:6379"),
        ("WHEEL_REDIS_SEEDS", "user@redis-2:6379"),
        ("WHEEL_REDIS_SEEDS", "redis 2:6379"),
        ("WHEEL_REDIS_SEEDS", "::1:6379"),
        ("WHEEL_MISFIRE_GRACE", "-1"),
        ("WHEEL_MISFIRE_GRACE", "nan"),
        ("WHEEL_REPLICA_ACK_TIMEOUT", "0.0004"),
        ("WHEEL_REPLICA_ACK_TIMEOUT", "2.5"),
    ],
)
def test_bad_value_is_rejected_by_name(variable: str, raw: str) -> None:
    """A value of the wrong type or out of bounds names its variable."""
    with pytest.raises(SettingsError, match=variable):
        from_env({variable: raw})


@pytest.mark.parametrize(
    ("reclaim_idle", "webhook_timeout"),
    [("10", "10"), ("5", "10"), ("13.4", "10"), ("3", "0.1")],
)
def test_reclaim_idle_must_cover_the_webhook_and_its_margins(
    reclaim_idle: str, webhook_timeout: str
) -> None:
    """A claim hold under the webhook timeout + claim margin + stall grace
    is refused, naming all three and their sum."""
    with pytest.raises(SettingsError) as refused:
        from_env(
            {
                "WHEEL_RECLAIM_IDLE": reclaim_idle,
                "WHEEL_WEBHOOK_TIMEOUT": webhook_timeout,
            }
        )
    message = str(refused.value)
    assert "WHEEL_RECLAIM_IDLE" in message
    assert "WHEEL_WEBHOOK_TIMEOUT" in message
    assert f"claim margin ({CLAIM_MARGIN_S:g} s)" in message
    assert f"stall grace ({STALL_GRACE_S:g} s)" in message
    least = float(webhook_timeout) + CLAIM_MARGIN_S + STALL_GRACE_S
    assert f"= {least:g} s" in message


def test_reclaim_idle_at_the_least_is_accepted() -> None:
    """A claim hold of exactly the webhook timeout plus margins is fine."""
    least = 10 + CLAIM_MARGIN_S + STALL_GRACE_S
    settings = from_env(
        {"WHEEL_RECLAIM_IDLE": str(least), "WHEEL_WEBHOOK_TIMEOUT": "10"}
    )
    assert settings.reclaim_idle == least


def test_retry_max_below_retry_base_is_rejected() -> None:
    """A backoff cap below its base is refused, naming the variables."""
    with pytest.raises(SettingsError, match="WHEEL_RETRY_MAX"):
        from_env({"WHEEL_RETRY_BASE": "10", "WHEEL_RETRY_MAX": "5"})


def test_replace_applies_and_checks_changes() -> None:
    """replace() returns a checked copy and leaves the original alone."""
    base = Settings(shards=4)
    small = base.replace(max_delay=90)
    assert small.max_delay == 90
    assert small.shards == 4
    assert base.max_delay == 365 * 86400
    with pytest.raises(SettingsError, match="WHEEL_MAX_DELAY"):
        base.replace(max_delay=0)
    with pytest.raises(SettingsError, match="WHEEL_SHARDS"):
        base.replace(shards="4")
    with pytest.raises(SettingsError, match="WHEEL_RECLAIM_IDLE"):
        base.replace(reclaim_idle=1.0)


def test_settings_are_frozen() -> None:
    """Settings are built once and cannot be changed afterwards."""
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.shards = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://app:s3cret@host:6379/0", "redis://app:***@host:6379/0"),
        ("rediss://app:s3c@ret@host/1", "rediss://app:***@host/1"),
        (
            "redis://host:6379/0?password=s3cret",
            "redis://host:6379/0?password=***",
        ),
        (
            "unix:///run/redis.sock?db=1&password=s3cret&x=1",
            "unix:///run/redis.sock?db=1&password=***&x=1",
        ),
    ],
)
def test_redact_url_masks_passwords(url: str, redacted: str) -> None:
    """A Redis URL for logs keeps the host but never the password."""
    assert redact_url(url) == redacted
    assert "s3c" not in redact_url(url)


def test_settings_redact_their_redis_url() -> None:
    """Settings expose a log-safe Redis URL."""
    settings = Settings(redis_url="redis://u:hunter2@db:6379/0")
    assert settings.redacted_redis_url() == "redis://u:***@db:6379/0"


@pytest.mark.parametrize(
    ("worker", "host", "share"),
    [
        (200, 0, 100),
        (50, 0, 25),
        (1, 0, 1),
        (3, 0, 1),
        (50, 10, 10),
        (50, 80, 50),
    ],
)
def test_a_hosts_share_is_half_the_worker_unless_set(
    worker: int, host: int, share: int
) -> None:
    """WHEEL_HOST_CONCURRENCY=0 (the default) gives each destination half
    of the worker's slots, whatever WHEEL_WORKER_CONCURRENCY is; a value
    sets it, capped at the worker's."""
    settings = from_env(
        {
            "WHEEL_WORKER_CONCURRENCY": str(worker),
            "WHEEL_HOST_CONCURRENCY": str(host),
        }
    )
    assert settings.host_share == share


def test_the_replica_wait_fits_inside_every_acked_call() -> None:
    """The longest WAIT leaves a second of each acked call's deadline
    (creates and schedule writes, completions) for the call itself."""
    assert MAX_REPLICA_ACK_TIMEOUT_S + 1.0 <= DEADLINE_S
    assert MAX_REPLICA_ACK_TIMEOUT_S + 1.0 <= COMPLETE_CALL_S


def test_seeds_are_host_port_pairs_blanks_ignored() -> None:
    """WHEEL_REDIS_SEEDS lists cluster nodes; spaces and empty items
    between commas are ignored, ports are read as numbers, an IPv6
    address loses its brackets."""
    settings = from_env(
        {"WHEEL_REDIS_SEEDS": " redis-2:6379, ,10.0.0.3:07000,[::1]:7001"}
    )
    assert settings.seeds == ["redis-2:6379", "10.0.0.3:7000", "::1:7001"]
    assert Settings().seeds == []


def test_seeds_beside_a_unix_socket_are_refused() -> None:
    """A unix socket is a single Redis: seeds name cluster nodes."""
    with pytest.raises(SettingsError, match="WHEEL_REDIS_SEEDS"):
        from_env(
            {
                "WHEEL_REDIS_URL": "unix:///run/redis.sock",
                "WHEEL_REDIS_SEEDS": "redis-2:6379",
            }
        )
