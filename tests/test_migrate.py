"""The one-time migration from the first key layout: pending timers fire
with their ids, finished ones stay readable, nothing doubles on a re-run,
and the new release refuses to start before it."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx
import redis as sync_redis

from tests.support import (
    BACK_S,
    FAST_ENV,
    LOADED_LATE_S,
    TIMER_WHEEL,
    Procs,
    Receiver,
    wait_until,
)
from tests.test_e2e import status

OLD_SHARDS = 16


def old_tag(timer_id: uuid.UUID) -> str:
    """The first layout's hash tag of a timer (``uuid.int % shards``)."""
    return f"{{tw:{timer_id.int % OLD_SHARDS}}}"


def write_old_pending(client: sync_redis.Redis, url: str, due_ms: int) -> str:
    """A pending timer as the first layout's create.lua wrote it."""
    timer_id = uuid.uuid4()
    tag = old_tag(timer_id)
    minute = due_ms // 60_000
    client.hset(
        f"{tag}:t:{timer_id}",
        mapping={"url": url, "due": due_ms, "state": "pending"},
    )
    client.zadd(f"{tag}:b:{minute}", {str(timer_id): due_ms})
    client.zadd(f"{tag}:slots", {str(minute): minute})
    return str(timer_id)


def write_old_failed(client: sync_redis.Redis, url: str, now_ms: int) -> str:
    """A failed timer with its dead letter, as the first layout kept it."""
    timer_id = uuid.uuid4()
    tag = old_tag(timer_id)
    key = f"{tag}:t:{timer_id}"
    client.hset(
        key,
        mapping={
            "url": url,
            "due": now_ms - 60_000,
            "state": "failed",
            "attempts": 5,
            "result": "HTTP 500",
            "finished": now_ms - 1000,
        },
    )
    client.pexpire(key, 3_600_000)
    client.xadd(
        f"{tag}:dead",
        {
            "id": str(timer_id),
            "attempts": 5,
            "error": "HTTP 500",
            "at": now_ms - 1000,
        },
    )
    return str(timer_id)


def test_migration_carries_old_timers_over(
    redis_url: str, raw: sync_redis.Redis, tmp_path: Path, receiver: Receiver
) -> None:
    """Before `migrate` the roles refuse to start; after it the old
    pending timers fire once with their ids, an old failed timer reads as
    failed and is listed as a dead letter; a second run does nothing."""
    seconds, micros = raw.time()
    now_ms = seconds * 1000 + micros // 1000
    raw.xgroup_create("{tw:0}:ready", "workers", id="0", mkstream=True)
    soon = [
        write_old_pending(raw, receiver.url, now_ms + 1500) for _ in range(20)
    ]
    overdue = write_old_pending(raw, receiver.url, now_ms - 5000)
    later = write_old_pending(raw, receiver.url, now_ms + 3 * 86400_000)
    failed = write_old_failed(raw, receiver.url, now_ms)
    env = {**FAST_ENV, "WHEEL_REDIS_URL": redis_url, "WHEEL_SHARDS": "8"}
    refused = subprocess.run(
        [TIMER_WHEEL, "ticker"], env=env, capture_output=True, timeout=30
    )
    assert refused.returncode == 2
    assert b"timer-wheel migrate" in refused.stderr

    migrated = subprocess.run(
        [TIMER_WHEEL, "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "22 pending, 1 finished, 1 dead letters" in migrated.stdout
    assert not [k for k in raw.keys("{tw:*}*")]
    again = subprocess.run(
        [TIMER_WHEEL, "migrate"], env=env, capture_output=True, timeout=60
    )
    assert again.returncode == 0
    assert b"nothing to migrate" in again.stderr

    procs = Procs(env, tmp_path)
    try:
        base = procs.api()
        procs.role("ticker")
        procs.role("worker")
        # Due while no role ran: they fire as soon as the roles are up;
        # "soon" fires on time if the roles were quicker than its delay.
        soon_left_s = (now_ms + 1500) / 1000 - time.time()
        wait_until(
            lambda: set(soon) | {overdue} <= set(receiver.ids()),
            timeout_s=max(BACK_S, soon_left_s + LOADED_LATE_S),
            what="the migrated timers to fire",
        )
        assert max(receiver.ids().values()) == 1
        view = httpx.get(f"{base}/timer/{later}").json()
        assert view["status"] == "pending"
        assert view["time_left"] > 3 * 86400 - 60
        old = httpx.get(f"{base}/timer/{failed}").json()
        assert (old["status"], old["attempts"]) == ("failed", 5)
        assert old["last_status"] == 500
        [letter] = httpx.get(f"{base}/dead-letters").json()["items"]
        assert (letter["id"], letter["url"]) == (failed, receiver.url)
        for timer_id in soon:
            assert status(base, timer_id) == "fired"
            # Never early: Redis' clock and the receiver's are one here.
            assert receiver.times(timer_id)[0] * 1000 >= now_ms + 1500 - 5
    finally:
        procs.stop_all()
