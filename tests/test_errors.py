"""Every Redis reply type the code can meet is classified in one place."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wheel.storage.errors import Kind, classify, group_exists, no_group

SCRIPT_6_2 = (
    "Error running script (call to f_0123): @user_script:12: "
    "@user_script: 12: -{code} {text}"
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RedisConnectionError("Connection refused"), Kind.LOST),
        (RedisTimeoutError("Timeout reading"), Kind.LOST),
        (TimeoutError(), Kind.LOST),
        (ConnectionResetError(), Kind.LOST),
        (BusyLoadingError("Redis is loading the dataset"), Kind.BUSY),
        (ClusterDownError("The cluster is down"), Kind.BUSY),
        (MasterDownError("Link with MASTER is down"), Kind.BUSY),
        (TryAgainError("Multiple keys request"), Kind.BUSY),
        (ReadOnlyError("You can't write against a replica."), Kind.BUSY),
        (ResponseError("BUSY Redis is busy running a script."), Kind.BUSY),
        (
            ResponseError("NOREPLICAS Not enough good replicas to write."),
            Kind.REFUSED,
        ),
        (
            ResponseError("MISCONF Redis is configured to save RDB..."),
            Kind.REFUSED,
        ),
        (
            ResponseError(
                SCRIPT_6_2.format(code="NOREPLICAS", text="Not enough")
            ),
            Kind.REFUSED,
        ),
        (
            ResponseError(SCRIPT_6_2.format(code="MISCONF", text="Errors")),
            Kind.REFUSED,
        ),
        (
            ResponseError(SCRIPT_6_2.format(code="READONLY", text="replica")),
            Kind.BUSY,
        ),
        (OutOfMemoryError("command not allowed when used memory"), Kind.FULL),
        (
            ResponseError(SCRIPT_6_2.format(code="OOM", text="not allowed")),
            Kind.FULL,
        ),
        (MovedError("3999 127.0.0.1:6381"), Kind.MOVED),
        (AskError("3999 127.0.0.1:6381"), Kind.ASK),
        (NoScriptError("No matching script."), Kind.NOSCRIPT),
        (
            ResponseError("WRONGTYPE Operation against a key"),
            Kind.BUG,
        ),
        (
            ResponseError("BUSYGROUP Consumer Group name already exists"),
            Kind.BUG,
        ),
        (ResponseError("BUSYKEY Target key name already exists."), Kind.BUG),
        (
            ResponseError(SCRIPT_6_2.format(code="ERR", text="bad arg")),
            Kind.BUG,
        ),
        (ValueError("a bug of ours"), Kind.BUG),
    ],
)
def test_every_reply_type_has_one_kind(
    error: BaseException, kind: Kind
) -> None:
    """Each error reply and transport failure maps to one kind."""
    assert classify(error) is kind


def test_redis_7_codes_are_read_from_the_status_code() -> None:
    """An error redis-py strips the code from keeps its kind."""
    error = ResponseError("Not enough good replicas", status_code="NOREPLICAS")
    assert classify(error) is Kind.REFUSED


def test_stream_answers_are_not_failures() -> None:
    """NOGROUP and BUSYGROUP are answers, told apart from failures."""
    assert no_group(ResponseError("NOGROUP No such key 'x' or group"))
    assert (
        no_group(
            ResponseError(
                "ERR The XGROUP subcommand requires the key to exist"
            )
        )
        is False
    )
    assert group_exists(ResponseError("BUSYGROUP Consumer Group exists"))
    assert not group_exists(ResponseError("NOGROUP nothing"))
