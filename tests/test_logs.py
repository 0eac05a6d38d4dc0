"""Structured logs: one JSON object per line, whatever the extras hold."""

from __future__ import annotations

import json
import logging
from pathlib import Path

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
