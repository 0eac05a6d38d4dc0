"""Structured logs: one JSON object per line, whatever the extras hold."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from wheel.runtime import lifecycle
from wheel.runtime.lifecycle import LineLimit
from wheel.runtime.logs import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    """A log record with ``extra`` fields, as ``log.info(..., extra=)``."""
    entry = logging.makeLogRecord({"msg": "step failed", "levelno": 30})
    entry.levelname = "WARNING"
    entry.name = "wheel.test"
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_a_line_is_one_json_object_with_its_extras() -> None:
    """The message, level, logger and extras are fields of one object."""
    line = JsonFormatter().format(record(shard=3, took_s=0.25))
    entry = json.loads(line)
    assert entry["msg"] == "step failed"
    assert entry["level"] == "warning"
    assert entry["logger"] == "wheel.test"
    assert (entry["shard"], entry["took_s"]) == (3, 0.25)
    assert "\n" not in line


def test_an_extra_the_encoder_does_not_know_is_written_as_text() -> None:
    """An exception or a path in ``extra`` becomes its text; the line is
    not lost."""
    error = TimeoutError("no reply in 1.0s")
    entry = json.loads(
        JsonFormatter().format(record(error=error, data=Path("/tmp/x")))
    )
    assert entry["error"] == "no reply in 1.0s"
    assert entry["data"] == "/tmp/x"


def test_a_line_limit_writes_one_line_per_key_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first line of a key is written; those within the interval are
    held back and counted in the next line written; keys are apart."""
    now = [1000.0]
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: now[0])
    limit = LineLimit(interval_s=30.0)

    assert limit.take("a") == 0
    assert [limit.take("a") for _ in range(3)] == [None] * 3
    assert limit.take("b") == 0
    now[0] += 30.0
    assert limit.take("a") == 3
    assert limit.take("a") is None


def test_a_line_limit_keeps_a_bounded_number_of_keys() -> None:
    """More keys than it keeps start it afresh rather than grow it."""
    limit = LineLimit(interval_s=30.0, most_keys=2)
    assert [limit.take(k) for k in ("a", "b", "c")] == [0, 0, 0]
    assert limit.take("a") == 0
    assert limit.take("c") is None
