"""Schedules end to end: the real api, tickers and workers, a real
receiver on 127.0.0.1, and faults made for real (SIGKILL, SIGSTOP).
Every occurrence arrives exactly once, none early, none missing; after
downtime the misfire policy decides; edits and deletes racing the firing
never create an occurrence under the old definition."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis

from tests.support import (
    FAST_ENV,
    HEARTBEAT_TTL_S,
    LOADED_LATE_S,
    SETTLE_S,
    SHARDS,
    TAKEOVER_S,
    Procs,
    Receiver,
    inspector,
    wait_until,
)
from wheel.core import ids
from wheel.core.delays import parse_rfc3339, rfc3339
from wheel.storage.keys import Keys

EVERY_2S = "*/2 * * * * *"
EVERY_S = "* * * * * *"
KEYS = Keys("tw", SHARDS)


@pytest.fixture
def procs(redis_url: str, tmp_path: Path) -> Iterator[Procs]:
    """The service's processes on the session Redis (fast settings; a
    dead worker's heartbeat lapses in 3 s)."""
    running = Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": redis_url,
            "WHEEL_HEARTBEAT_TTL": str(HEARTBEAT_TTL_S),
        },
        tmp_path,
    )
    yield running
    running.stop_all()


@dataclass(frozen=True)
class Occurrence:
    """One webhook of an occurrence, as the receiver got it."""

    schedule_id: str
    scheduled_ms: int
    timer_id: str
    at_ms: float
    port: int


def occurrences(*receivers: Receiver) -> list[Occurrence]:
    """Every occurrence webhook the receivers got, in arrival order."""
    found = []
    for receiver in receivers:
        for arrival in list(receiver.arrivals):
            body = json.loads(arrival.body)
            assert set(body) == {"id", "schedule_id", "scheduled_for"}
            assert body["id"] == arrival.timer_id
            found.append(
                Occurrence(
                    body["schedule_id"],
                    parse_rfc3339(body["scheduled_for"]),
                    body["id"],
                    arrival.at * 1000,
                    receiver.port,
                )
            )
    return sorted(found, key=lambda o: o.at_ms)


def instants(first_ms: int, last_ms: int, step_ms: int) -> list[int]:
    """Every ``step_ms`` from ``first_ms`` to ``last_ms``, both in."""
    return list(range(first_ms, last_ms + 1, step_ms))


def create(base: str, **body: Any) -> str:
    """POST /schedules; the id (201)."""
    reply = httpx.post(f"{base}/schedules", json=body, timeout=10)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def view(base: str, schedule_id: str) -> dict[str, Any]:
    """GET /schedules/{id}."""
    reply = httpx.get(f"{base}/schedules/{schedule_id}", timeout=10)
    assert reply.status_code == 200, reply.text
    got: dict[str, Any] = reply.json()
    return got


def next_even_second_ms(lead_s: float) -> int:
    """An instant on an even second at least ``lead_s`` from now."""
    return (int((time.time() + lead_s) * 1000) // 2000 + 1) * 2000


def owner_of(client: sync_redis.Redis, shard_number: int) -> str:
    """The ticker holding a shard's lease."""
    owner = client.get(KEYS.shard(shard_number).lease)
    return owner.decode() if isinstance(owner, bytes) else ""


def shard_of(schedule_id: str) -> int:
    """The shard of a schedule (and of its occurrences)."""
    raw = ids.parse(schedule_id)
    assert raw is not None
    return ids.shard_of(raw, SHARDS)


def assert_each_once_none_early(
    got: list[Occurrence], schedule_id: str, expected: list[int]
) -> None:
    """``expected`` instants arrived once each, never before the instant,
    and nothing else of the schedule."""
    mine = [o for o in got if o.schedule_id == schedule_id]
    counts = Counter(o.scheduled_ms for o in mine)
    assert sorted(counts) == expected, (sorted(counts), expected)
    assert set(counts.values()) == {1}, counts
    for occurrence in mine:
        assert occurrence.at_ms >= occurrence.scheduled_ms - 1, occurrence


def test_every_2s_for_30s_through_a_ticker_and_a_worker_sigkill(
    procs: Procs, receiver: Receiver, redis_url: str
) -> None:
    """A schedule every 2 s for 30 s; the ticker holding its shard is
    SIGKILLed after a few occurrences, a worker after a few more (between
    two webhooks): each of the 16 occurrences arrives exactly once, none
    before its instant, none missing, every one within its instant plus
    the takeover bounds (lease TTL, heartbeat TTL)."""
    base = procs.api()
    tickers = [procs.role("ticker") for _ in range(2)]
    workers = [procs.role("worker") for _ in range(2)]
    client = inspector(redis_url)
    first_ms = next_even_second_ms(3)
    last_ms = first_ms + 30_000
    schedule_id = create(
        base,
        cron=EVERY_2S,
        url=receiver.url,
        start_at=rfc3339(first_ms),
        end_at=rfc3339(last_ms),
    )
    expected = instants(first_ms, last_ms, 2000)

    def left_s(instant_ms: int) -> float:
        return instant_ms / 1000 - time.time()

    try:
        wait_until(
            lambda: len(receiver.arrivals) >= 4,
            timeout_s=left_s(expected[3]) + LOADED_LATE_S,
            what="four occurrences",
        )
        holder = owner_of(client, shard_of(schedule_id))
        victim = next(t for t in tickers if f":{t.pid}:" in holder)
        procs.kill(victim)
        # Late by a takeover at most (the lease lapses sooner).
        wait_until(
            lambda: len(receiver.arrivals) >= 9,
            timeout_s=left_s(expected[8]) + TAKEOVER_S,
            what="nine occurrences",
        )
        # Between two webhooks: the last one is recorded as fired.
        wait_until(
            lambda: view(base, schedule_id)["fired"] == len(receiver.arrivals),
            timeout_s=SETTLE_S,
            what="the last webhook recorded",
        )
        procs.kill(workers[0])
        wait_until(
            lambda: len(receiver.arrivals) >= len(expected),
            timeout_s=left_s(expected[-1]) + TAKEOVER_S,
            what="every occurrence",
        )
        wait_until(
            lambda: view(base, schedule_id)["fired"] == len(expected),
            timeout_s=SETTLE_S,
            what="every occurrence recorded",
        )
    finally:
        client.close()
    got = occurrences(receiver)
    assert_each_once_none_early(got, schedule_id, expected)
    # The worker died with nothing in flight (its last webhook was
    # recorded): a takeover at most, no reclaim; never a missed period.
    late_s = max(o.at_ms - o.scheduled_ms for o in got) / 1000
    assert late_s <= TAKEOVER_S, late_s
    final = view(base, schedule_id)
    assert (final["fired"], final["failed"], final["missed"]) == (16, 0, 0)
    assert final["next_at"] is None
    assert final["last"]["scheduled_for"] == rfc3339(last_ms)
    assert final["last"]["status"] == "fired"


@pytest.fixture
def stoppable(redis_url: str, tmp_path: Path) -> Iterator[Procs]:
    """Processes that count a stop as downtime: no misfire grace."""
    running = Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": redis_url,
            "WHEEL_MISFIRE_GRACE": "0",
        },
        tmp_path,
    )
    yield running
    running.stop_all()


def test_a_10s_stop_of_every_ticker_and_worker_under_each_policy(
    stoppable: Procs, receiver: Receiver
) -> None:
    """Three schedules every 2 s (once, skip, all) through a 10 s SIGSTOP
    of every ticker and worker: once fires one catch-up (the first
    overdue) then goes on schedule; skip fires none of the overdue; all
    fires each; whatever does not fire is counted missed; nothing
    arrives twice or early; after the stop every occurrence is on time."""
    procs = stoppable
    base = procs.api()
    roles = [procs.role("ticker"), procs.role("worker"), procs.role("worker")]
    first_ms = next_even_second_ms(2)
    last_ms = first_ms + 26_000
    policies = ("once", "skip", "all")
    by_policy = {
        policy: create(
            base,
            cron=EVERY_2S,
            url=receiver.url,
            start_at=rfc3339(first_ms),
            end_at=rfc3339(last_ms),
            misfire=policy,
        )
        for policy in policies
    }
    wait_until(
        lambda: len(receiver.arrivals) >= 3 * 3,
        # The third of each is due 4 s after the first.
        timeout_s=(first_ms / 1000 + 4 - time.time()) + LOADED_LATE_S,
        what="three occurrences of each",
    )
    stopped_at_ms = time.time() * 1000
    for process in roles:
        os.kill(process.pid, signal.SIGSTOP)
    time.sleep(10)  # the downtime under test, not a synchronisation
    for process in roles:
        os.kill(process.pid, signal.SIGCONT)
    resumed_at_ms = time.time() * 1000
    wait_until(
        lambda: all(
            view(base, s)["next_at"] is None
            and view(base, s)["last"]["status"] in ("fired", "failed")
            for s in by_policy.values()
        ),
        timeout_s=(last_ms / 1000 - time.time()) + LOADED_LATE_S + SETTLE_S,
        what="every schedule to end",
    )
    got = occurrences(receiver)
    expected = instants(first_ms, last_ms, 2000)
    for policy, schedule_id in by_policy.items():
        mine = [o for o in got if o.schedule_id == schedule_id]
        fired = Counter(o.scheduled_ms for o in mine)
        assert set(fired.values()) == {1}, (policy, fired)
        assert all(o.at_ms >= o.scheduled_ms - 1 for o in mine), policy
        final = view(base, schedule_id)
        missing = [ms for ms in expected if ms not in fired]
        # Each occurrence fired or was counted missed: none lost.
        assert len(missing) == final["missed"], (policy, missing, final)
        assert final["fired"] == len(fired)
        # Back on schedule a period after the stop, on time.
        for occurrence in mine:
            if occurrence.scheduled_ms > resumed_at_ms + 2100:
                assert occurrence.at_ms - occurrence.scheduled_ms < 1500
        if policy == "all":
            assert missing == [], final
            continue
        # The missed ones: one run of occurrences that came due during
        # the stop (all of them for skip; all but the first for once).
        assert missing, (policy, final)
        assert missing == instants(missing[0], missing[-1], 2000)
        assert stopped_at_ms - 100 < missing[0] <= stopped_at_ms + 4100
        assert missing[-1] < resumed_at_ms + 100
        assert resumed_at_ms - missing[-1] <= 2100
        before = missing[0] - 2000
        assert before in fired
        if policy == "once":
            # The catch-up: the first overdue, not handed over before
            # the stop (every occurrence due by then was), fired once
            # soon after the stop ended.
            assert before > stopped_at_ms - 100
            (catch_up,) = [o for o in mine if o.scheduled_ms == before]
            assert catch_up.at_ms - resumed_at_ms < 1500
        else:
            # Skip: the one before the run was handed over before the
            # stop; nothing overdue fired.
            assert before <= stopped_at_ms + 100


def test_edits_and_deletes_racing_occurrences(
    procs: Procs, redis_url: str
) -> None:
    """Eighteen schedules every second; at random moments six get a new
    url, six are paused and six deleted. No occurrence created after the
    answer uses the old definition (old url, paused, deleted): every
    webhook to the old url, and every one of a paused or deleted
    schedule, was due no later than the answer; none is lost before the
    change, none arrives twice; the occurrences in flight complete and
    read as fired."""
    old, new = Receiver(), Receiver()
    old.start()
    new.start()
    try:
        base = procs.api()
        for role in ("ticker", "ticker", "worker", "worker"):
            procs.role(role)
        groups: dict[str, list[str]] = {"url": [], "pause": [], "delete": []}
        for group in groups.values():
            for _ in range(6):
                group.append(create(base, cron=EVERY_S, url=old.url))
        created_ms = time.time() * 1000
        # Every second: each one's second occurrence is due within 2 s.
        wait_until(
            lambda: len(old.arrivals) >= 18 * 2,
            timeout_s=created_ms / 1000 + 2 + LOADED_LATE_S - time.time(),
            what="two occurrences of each",
        )
        answered = asyncio.run(_race(base, groups, new.url))
        wait_until(
            lambda: all(
                view(base, s)["url"] == new.url
                and new.ids()
                and any(
                    o.schedule_id == s and o.scheduled_ms > answered[s][1]
                    for o in occurrences(new)
                )
                for s in groups["url"]
            ),
            # The next occurrence after each answer is due within 1 s.
            timeout_s=max(answered[s][1] for s in groups["url"]) / 1000
            + 1
            + LOADED_LATE_S
            - time.time(),
            what="every edited schedule to fire at the new url",
        )
        got = occurrences(old, new)
        for kind, schedule_ids in groups.items():
            for schedule_id in schedule_ids:
                sent_ms, answer_ms = answered[schedule_id]
                mine = [o for o in got if o.schedule_id == schedule_id]
                counts = Counter(o.scheduled_ms for o in mine)
                assert set(counts.values()) == {1}, (kind, counts)
                before = [
                    o for o in mine if o.port == old.port or kind != "url"
                ]
                # Made under the old definition: due by the answer.
                assert all(o.scheduled_ms <= answer_ms for o in before), kind
                # None lost before the change (a second of margin for
                # the occurrence the change raced).
                due_before = instants(
                    (int(created_ms) // 1000 + 2) * 1000,
                    int(sent_ms) - 1500,
                    1000,
                )
                assert set(due_before) <= set(counts), (kind, due_before)
                for occurrence in mine:
                    assert occurrence.at_ms >= occurrence.scheduled_ms - 1
                    wait_until(
                        functools.partial(
                            reads_fired, base, occurrence.timer_id
                        ),
                        timeout_s=SETTLE_S,
                        what="the occurrence to read as fired",
                    )
                if kind == "delete":
                    assert (
                        httpx.get(f"{base}/schedules/{schedule_id}")
                    ).status_code == 404
                if kind == "pause":
                    assert view(base, schedule_id)["paused"] is True
    finally:
        old.stop()
        new.stop()


def reads_fired(base: str, timer_id: str) -> bool:
    """Whether a timer reads as fired."""
    reply = httpx.get(f"{base}/timer/{timer_id}", timeout=10)
    return bool(reply.json()["status"] == "fired")


async def _race(
    base: str, groups: dict[str, list[str]], new_url: str
) -> dict[str, tuple[float, float]]:
    """Edit, pause and delete each schedule at a random moment within the
    next 3 s; when each request was sent and answered (epoch ms)."""
    rng = random.Random(18)
    times: dict[str, tuple[float, float]] = {}

    async def one(
        http: httpx.AsyncClient, kind: str, schedule_id: str
    ) -> None:
        await asyncio.sleep(rng.uniform(0, 3))
        sent = time.time() * 1000
        path = f"/schedules/{schedule_id}"
        if kind == "delete":
            reply = await http.delete(path)
            assert reply.status_code == 204, reply.text
        else:
            body = {"url": new_url} if kind == "url" else {"paused": True}
            reply = await http.patch(path, json=body)
            assert reply.status_code == 200, reply.text
        times[schedule_id] = (sent, time.time() * 1000)

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        await asyncio.gather(
            *(
                one(http, kind, schedule_id)
                for kind, schedule_ids in groups.items()
                for schedule_id in schedule_ids
            )
        )
    return times
