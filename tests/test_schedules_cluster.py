"""Schedules on a 3 + 3 Redis Cluster: spread over the masters, and a
master SIGKILLed (replica acks on) loses no occurrence and doubles none
but a webhook in flight at the kill; the failed master's occurrences
fire within its replica's promotion + 5 s, the others' on time."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clusters import running_cluster
from tests.redis_faults import promoted, run_roles, slot_owners
from tests.support import (
    FAST_ENV,
    LOADED_LATE_S,
    PROMOTION_S,
    Procs,
    Receiver,
    wait_until,
)
from wheel.core import ids
from wheel.core.delays import parse_rfc3339, rfc3339
from wheel.embedded.cluster import EmbeddedCluster
from wheel.storage.keys import Keys
from wheel.storage.slots import key_slot

SHARDS = 48
SCHEDULES = 24
PERIOD_MS = 2000
SPAN_MS = 36_000
PROMOTION_GRACE_S = 5.0
"""README: a failed master's timers fire within its replica's promotion
plus this."""
OTHERS_LATE_S = 2.0
"""README: a fault on one node delays the other nodes' timers by at most
this (p99)."""
IN_FLIGHT_S = 2.0
"""An occurrence due this close before the kill may have been in flight
(sent, its completion not yet on a replica): the one allowed repeat."""


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A 3 + 3 cluster for one test that breaks it."""
    with running_cluster(tmp_path / "cluster", masters=3, replicas=1) as c:
        yield c


def test_a_master_failover_loses_and_doubles_no_occurrence(
    own_cluster: EmbeddedCluster, tmp_path: Path, receiver: Receiver
) -> None:
    """24 schedules every 2 s for 36 s over 48 shards on 3 masters; the
    master holding most of them is SIGKILLed with WHEEL_REPLICA_ACKS=1.
    Every occurrence arrives, none before its instant, none twice but
    those due within 2 s before the kill; the failed master's within its
    replica's promotion + 5 s, the others' p99 within 2 s."""
    procs = Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": own_cluster.seed_url,
            "WHEEL_SHARDS": str(SHARDS),
            "WHEEL_REPLICA_ACKS": "1",
            "WHEEL_REPLICA_ACK_TIMEOUT": "1",
        },
        tmp_path,
    )
    keys = Keys("tw", SHARDS)
    try:
        base = run_roles(procs)
        first_ms = (int(time.time() * 1000) // PERIOD_MS + 3) * PERIOD_MS
        last_ms = first_ms + SPAN_MS
        schedule_ids = []
        for _ in range(SCHEDULES):
            reply = httpx.post(
                f"{base}/schedules",
                json={
                    "cron": "*/2 * * * * *",
                    "url": receiver.url,
                    "start_at": rfc3339(first_ms),
                    "end_at": rfc3339(last_ms),
                },
                timeout=10,
            )
            assert reply.status_code == 201, reply.text
            schedule_ids.append(reply.json()["id"])
        owners = slot_owners(own_cluster.masters()[0].url)

        def port_of(schedule_id: str) -> int:
            raw = ids.parse(schedule_id)
            assert raw is not None
            shard = keys.shard(ids.shard_of(raw, SHARDS))
            return owners[key_slot(shard.schedules_next)]

        ports = Counter(port_of(s) for s in schedule_ids)
        assert len(ports) == 3, ports
        victim_port = ports.most_common(1)[0][0]
        victim = next(n for n in own_cluster if n.port == victim_port)
        survivor = next(
            n for n in own_cluster.masters() if n.port != victim_port
        )
        wait_until(
            lambda: len(receiver.arrivals) >= 4 * SCHEDULES,
            timeout_s=(first_ms + 3 * PERIOD_MS) / 1000
            + LOADED_LATE_S
            - time.time(),
            what="four occurrences of each schedule",
        )
        killed_at = time.time()
        own_cluster.kill(own_cluster.nodes.index(victim))
        wait_until(
            lambda: promoted(own_cluster, victim_port, survivor),
            timeout_s=killed_at + PROMOTION_S - time.time(),
            interval_s=0.05,
            what="a replica promoted",
        )
        promoted_at = time.time()
        expected = SCHEDULES * (SPAN_MS // PERIOD_MS + 1)
        wait_until(
            lambda: len({a.timer_id for a in receiver.arrivals}) >= expected,
            timeout_s=max(last_ms / 1000, promoted_at)
            - time.time()
            + PROMOTION_GRACE_S,
            what="every occurrence",
        )
        logs = "".join(procs.output(p) for p in procs.running)
    finally:
        procs.stop_all()

    assert "Traceback" not in logs and "CROSSSLOT" not in logs
    arrivals: dict[tuple[str, int], list[float]] = {}
    for arrival in receiver.arrivals:
        body = json.loads(arrival.body)
        key = (body["schedule_id"], parse_rfc3339(body["scheduled_for"]))
        arrivals.setdefault(key, []).append(arrival.at)
    instants = range(first_ms, last_ms + 1, PERIOD_MS)
    wanted = {(s, ms) for s in schedule_ids for ms in instants}
    assert set(arrivals) == wanted, "an occurrence was lost or made up"
    repeated = {
        key
        for key, times in arrivals.items()
        if len(times) > 1
        and not killed_at - IN_FLIGHT_S <= key[1] / 1000 <= killed_at
    }
    assert not repeated, repeated
    others_late = []
    for (schedule_id, at_ms), times in arrivals.items():
        first = min(times)
        assert first * 1000 >= at_ms - 1, "early"
        if port_of(schedule_id) == victim_port:
            bound = max(at_ms / 1000, promoted_at) + PROMOTION_GRACE_S
            assert first <= bound, (schedule_id, at_ms, first - bound)
        else:
            others_late.append(first - at_ms / 1000)
    others_late.sort()
    assert others_late[int(0.99 * len(others_late)) - 1] <= OTHERS_LATE_S
