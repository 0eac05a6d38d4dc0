"""Faults inside Redis cost what the README says, and no more.

Each test makes a fault happen for real (``tests/redis_faults.py``) with
the service's real processes and a real receiver, and bounds what it
cost by the README's promise: delay (lateness percentiles), a 503 that
names its id, or a duplicate only for a webhook in flight at the fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from tests import redis_faults
from tests.clusters import running_cluster
from tests.redis_faults import (
    PROMOTION_GRACE_S,
    Figures,
    describe,
    percentile,
)
from tests.support import (
    FAST_ENV,
    LOADED_LATE_S,
    REPLICA_SYNC_S,
    SETTLE_S,
    STOP_S,
    Behaviour,
    Procs,
    Receiver,
    wait_until,
)
from wheel.core import ids
from wheel.embedded.cluster import EmbeddedCluster
from wheel.embedded.server import RedisServer
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import BACKOFF_MAX_S, DEADLINE_S, connect
from wheel.storage.keys import Keys
from wheel.storage.shards import ShardQueue
from wheel.storage.slots import key_slot

CLUSTER_SHARDS = 48
PROMISED_P99_S = 2.0
"""README: a fault on one node delays the other nodes' timers by at most
this (p99 lateness)."""
REPLICA_STOP_P99_S = 3.0
"""README: with replica acks, a stopped replica delays firing by at most
this (p99 lateness)."""


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A 3 + 3 cluster for one test that breaks it."""
    with running_cluster(tmp_path / "cluster", masters=3, replicas=1) as c:
        yield c


def cluster_procs(
    cluster: EmbeddedCluster, tmp_path: Path, **env: str
) -> Procs:
    """The service's processes on ``cluster`` (48 shards)."""
    return Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": cluster.seed_url,
            "WHEEL_SHARDS": str(CLUSTER_SHARDS),
            **env,
        },
        tmp_path,
    )


def p99(figures: Figures, group: str) -> float:
    """The p99 lateness of a group of timers, in seconds."""
    late = figures.lateness(figures.groups[group])
    assert late, f"no timer of {group} fired: {describe(figures)}"
    return percentile(late, 0.99)


def test_master_sigkill_with_replica_acks_stalls_only_its_shards(
    own_cluster: EmbeddedCluster, tmp_path: Path, receiver: Receiver
) -> None:
    """SIGKILL the master holding most timers, under load, with
    WHEEL_REPLICA_ACKS=1: the other masters' timers keep p99 lateness
    <= 2 s, the failed master's fire within its replica's promotion + 5 s
    (every one, not only the p99: the entries of a read whose reply was
    lost are read back, not left to the reclaim), /readyz is 200 within
    5 s of the promotion, and every
    acknowledged timer fires exactly once (none was in flight at the
    kill)."""
    procs = cluster_procs(
        own_cluster,
        tmp_path,
        WHEEL_REPLICA_ACKS="1",
        WHEEL_REPLICA_ACK_TIMEOUT="1",
    )
    try:
        figures = redis_faults.master_failover(
            own_cluster,
            procs,
            receiver,
            Keys("tw", CLUSTER_SHARDS),
        )
        logs = "".join(procs.output(p) for p in procs.running)
    finally:
        procs.stop_all()
    summary = describe(figures)
    assert "CROSSSLOT" not in logs
    assert "Traceback" not in logs
    assert len(figures.acked) >= 1000, summary
    assert not figures.lost, summary
    assert not figures.duplicated, summary
    assert not figures.unexplained, summary
    assert p99(figures, "others") <= PROMISED_P99_S, summary
    latest = figures.extra["victim_late_after_promotion_max_s"]
    assert latest <= PROMOTION_GRACE_S, summary
    assert "ready" in figures.times, summary
    ready_s = figures.times["ready"] - figures.times["promoted"]
    assert ready_s <= PROMOTION_GRACE_S, summary


@pytest.fixture
def primary_and_replica(
    tmp_path: Path,
) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its one replica, linked."""
    primary = RedisServer(tmp_path / "primary", appendonly=False)
    primary.start()
    replica = RedisServer(
        tmp_path / "replica",
        appendonly=False,
        extra_args=("--replicaof", "127.0.0.1", str(primary.port)),
    )
    replica.start()
    try:
        client = sync_redis.Redis.from_url(primary.url)
        wait_until(
            lambda: client.info("replication")["connected_slaves"] == 1,
            timeout_s=REPLICA_SYNC_S,
            what="the replica to link",
        )
        client.close()
        yield primary, replica
    finally:
        replica.stop(kill=True)
        primary.stop(kill=True)


def test_stopped_replica_delays_no_firing_and_creates_name_their_id(
    primary_and_replica: tuple[RedisServer, RedisServer],
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """SIGSTOP the only replica for 12 s with WHEEL_REPLICA_ACKS=1: timers
    due meanwhile fire with p99 lateness <= 3 s, every create answers 503
    naming its id, and every timer fires exactly once."""
    primary, replica = primary_and_replica
    procs = Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": primary.url,
            "WHEEL_REPLICA_ACKS": "1",
            "WHEEL_REPLICA_ACK_TIMEOUT": "1",
        },
        tmp_path,
    )
    try:
        figures = redis_faults.replica_stop(primary, replica, procs, receiver)
    finally:
        procs.stop_all()
    summary = describe(figures)
    assert figures.extra["fired_while_stopped"] == len(
        figures.groups["before"]
    ), summary
    assert p99(figures, "before") <= REPLICA_STOP_P99_S, summary
    assert figures.extra["unknown_during_stop"] == 30, summary
    # Each named its id, and GET on it told the truth: it exists (the
    # primary applied it) and fires.
    assert figures.unknown_found == figures.unknown, summary
    assert not figures.unknown_misread, summary
    assert not figures.refused, summary
    assert not figures.lost, summary
    assert not figures.duplicated, summary
    assert not figures.unexplained, summary


def test_client_pause_past_the_deadline_503s_name_their_id(
    redis_url: str, tmp_path: Path, receiver: Receiver, procs: Procs
) -> None:
    """CLIENT PAUSE ALL for 6 s (twice the API's deadline) under 100
    creates/s: every 201 fires once, and every timer that fires without a
    201 was answered 503 naming its id."""
    figures = redis_faults.client_pause(redis_url, procs, receiver)
    summary = describe(figures)
    assert figures.unknown, f"the pause outlasted no create: {summary}"
    # GET on each id a 503 named tells the truth: found ones fire, the
    # ones not found never do.
    assert not figures.unknown_misread, summary
    assert not figures.lost, summary
    assert not figures.duplicated, summary
    assert not figures.unexplained, summary
    assert set(figures.refused) <= {503}, summary
    # Timers due meanwhile fire when it ends: late from the later of
    # their due time and the pause's end by no more than on a calm day.
    resumed = figures.times["resumed"]
    after_pause = sorted(
        figures.first[t] - max(figures.due[t], resumed)
        for t in figures.groups["acked"]
        if t in figures.first and t in figures.due
    )
    assert after_pause, summary
    assert percentile(after_pause, 0.99) <= PROMISED_P99_S, summary


@pytest.mark.parametrize("fault", ["NOREPLICAS", "MISCONF"])
def test_refused_writes_never_resend_an_answered_webhook(
    fault: str, redis_url: str, tmp_path: Path
) -> None:
    """Writes refused (NOREPLICAS, or MISCONF after a failed snapshot)
    for 3 s while webhooks are in flight: no receiver that answered 2xx
    gets its webhook again, even after a reclaim could have re-fired it,
    and none is lost. (The claim holds 8 s, more than the refusal, a
    webhook and the margins: past that, the README's rule for an outage
    longer than WHEEL_RECLAIM_IDLE applies.)"""
    procs = Procs(
        {**FAST_ENV, "WHEEL_REDIS_URL": redis_url, "WHEEL_RECLAIM_IDLE": "8"},
        tmp_path,
    )
    refuse: Callable[[sync_redis.Redis], Callable[[], None]] = (
        redis_faults.refuse_noreplicas
        if fault == "NOREPLICAS"
        else redis_faults.refuse_misconf(tmp_path / "snapshots")
    )
    hooks = Receiver(Behaviour(delay_s=1.0))
    hooks.start()
    try:
        figures = redis_faults.refused_writes(
            redis_url, procs, hooks, refuse, reclaim_s=8
        )
    finally:
        procs.stop_all()
        hooks.stop()
    summary = describe(figures)
    assert not figures.lost, summary
    assert not figures.duplicated, summary
    assert not figures.unexplained, summary
    assert figures.extra["pending_after"] == 0, summary


def test_one_stopped_master_delays_only_its_own_shards(
    own_cluster: EmbeddedCluster, tmp_path: Path, receiver: Receiver
) -> None:
    """SIGSTOP one of three masters for 8 s: the other masters' timers
    keep p99 lateness <= 2 s; every timer fires, a second time only if
    its webhook was in flight on the stopped master."""
    procs = cluster_procs(own_cluster, tmp_path)
    try:
        figures = redis_faults.master_stop(
            own_cluster, procs, receiver, Keys("tw", CLUSTER_SHARDS)
        )
    finally:
        procs.stop_all()
    summary = describe(figures)
    assert p99(figures, "others") <= PROMISED_P99_S, summary
    assert not figures.lost, summary
    assert figures.duplicated <= figures.groups["stopped"], summary
    # In flight at the fault: sent before it, so due before it too.
    assert all(
        figures.due[t] <= figures.times["fault"] for t in figures.duplicated
    ), summary
    assert not figures.unexplained, summary


def test_adding_a_master_and_rebalancing_under_load(
    own_cluster: EmbeddedCluster, tmp_path: Path, receiver: Receiver
) -> None:
    """redis-cli --cluster add-node and rebalance under 150 creates/s:
    slots move to the new master, no create answers 5xx (TRYAGAIN and
    ASK are retried), every timer fires exactly once."""
    new_node = own_cluster.spare_node(tmp_path / "new-node")
    new_node.start()
    procs = cluster_procs(own_cluster, tmp_path)
    try:
        figures = redis_faults.rebalance(
            own_cluster, new_node, procs, receiver
        )
    finally:
        procs.stop_all()
        new_node.stop(kill=True)
    summary = describe(figures)
    assert figures.extra["slots_on_new_node"] > 0, summary
    assert not figures.refused, summary
    assert not figures.unknown, summary
    assert not figures.lost, summary
    assert not figures.duplicated, summary
    # Nothing visible: the timers fire on time while slots move.
    assert p99(figures, "acked") <= PROMISED_P99_S, summary


def test_worker_restarts_leave_no_consumers_behind(
    redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Eight worker restarts (SIGTERM and SIGKILL in turn): the consumer
    groups hold at most the live worker plus two, once a reclaim sweep
    has run; every timer fired once. (Heartbeats live 2 s: a killed
    worker's shards go to the next one that soon.)"""
    heartbeat_s = 2.0
    procs = Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": redis_url,
            "WHEEL_HEARTBEAT_TTL": str(heartbeat_s),
        },
        tmp_path,
    )
    sweep_s = float(FAST_ENV["WHEEL_RECLAIM_IDLE"]) / 4
    try:
        figures = redis_faults.worker_restarts(redis_url, procs, receiver)
        # The live worker's sweeps drop the dead ones' consumers: looked
        # at while it runs, not after every process is gone.
        wait_until(
            lambda: max(redis_faults.consumer_counts(redis_url).values()) <= 3,
            # A dead worker's heartbeat lapses, then a sweep that starts
            # after it (one sweep apart) drops its consumers.
            timeout_s=heartbeat_s + 2 * sweep_s,
            what="the dead workers' consumers to go",
        )
    finally:
        procs.stop_all()
    assert not figures.lost, describe(figures)
    assert not figures.duplicated, describe(figures)


def test_a_worker_stopped_gracefully_deletes_its_consumers(
    redis_url: str, procs: Procs, receiver: Receiver
) -> None:
    """A worker that read every shard, SIGTERMed with nothing in flight,
    leaves no consumer in any group: it deletes its own as it stops, with
    no other worker left to sweep them."""
    base = procs.api()
    procs.role("ticker")
    worker = procs.role("worker")
    figures = Figures()
    asyncio.run(
        redis_faults.create_timers(base, receiver.url, [0] * 40, figures)
    )
    wait_until(
        lambda: redis_faults.all_fired(base, figures.acked),
        timeout_s=LOADED_LATE_S + SETTLE_S,
        interval_s=0.1,
        what="the timers to fire",
    )
    counts = redis_faults.consumer_counts(redis_url)
    assert counts and all(n == 1 for n in counts.values()), counts

    assert procs.terminate(worker, timeout_s=STOP_S) == 0

    counts = redis_faults.consumer_counts(redis_url)
    assert counts and all(n == 0 for n in counts.values()), counts


MIGRATION_HELD_S = DEADLINE_S - 2 * BACKOFF_MAX_S
"""How long the test keeps a slot half moved: longer than the backoff of
MAX_REDIRECTS pauses (about 0.6 s), and short enough that the read's
next try (at most BACKOFF_MAX_S later) and its answer fall within the
call's deadline."""


class SlotMove:
    """One slot moved by hand between two masters, as ``redis-cli
    --cluster reshard`` does it: IMPORTING and MIGRATING, MIGRATE of its
    keys, then SETSLOT NODE on both."""

    def __init__(self, cluster: EmbeddedCluster, slot: int) -> None:
        owner = redis_faults.slot_owners(cluster.seed_url)[slot]
        (self.source,) = [m for m in cluster.masters() if m.port == owner]
        (self.target,) = [m for m in cluster.masters() if m.port != owner]
        self.slot = slot
        self.src = sync_redis.Redis.from_url(self.source.url)
        self.dst = sync_redis.Redis.from_url(self.target.url)
        self.dst_id = self.dst.execute_command("CLUSTER", "MYID").decode()
        src_id = self.src.execute_command("CLUSTER", "MYID").decode()
        self.dst.execute_command(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id
        )
        self.src.execute_command(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", self.dst_id
        )

    def move(self, keys: list[bytes]) -> None:
        """MIGRATE ``keys`` of the slot to the importing master."""
        self.src.migrate("127.0.0.1", self.target.port, keys, 0, 5000)

    def finish(self) -> None:
        """Move the slot's other keys, then give the slot to the target."""
        rest = self.src.execute_command(
            "CLUSTER", "GETKEYSINSLOT", self.slot, 1000
        )
        if rest:
            self.move(rest)
        for node in (self.dst, self.src):
            node.execute_command(
                "CLUSTER", "SETSLOT", self.slot, "NODE", self.dst_id
            )
        self.src.close()
        self.dst.close()


def test_a_call_rides_out_a_half_moved_slot_within_its_deadline(
    tmp_path: Path,
) -> None:
    """A slot is left half migrated (the timer's record moved to the
    importing master, the rest not) for :data:`MIGRATION_HELD_S`: Redis
    6.2 answers a read of the timer ASK, then TRYAGAIN at the importing
    master, again and again. The read is paced by backoff, not cut short
    by the redirect count, and answers once the move completes, within
    its deadline."""
    settings_of = Settings(shards=4).replace

    async def scenario(cluster: EmbeddedCluster) -> tuple[object, float]:
        settings = settings_of(redis_url=cluster.seed_url)
        connection = connect(settings, client_name("half-moved"))
        queue = ShardQueue(connection, settings)
        try:
            created = await queue.create("http://a.example/h", 600_000)
            shard = ids.shard_of(created.timer_id, settings.shards)
            record = queue.keys.shard(shard).timer(created.timer_id)
            slot_move = SlotMove(cluster, key_slot(record))
            slot_move.move([record])
            began = time.monotonic()
            read = asyncio.create_task(queue.get(created.timer_id))
            # The fault's length, not a wait for the read.
            await asyncio.sleep(MIGRATION_HELD_S)
            assert not read.done(), read
            slot_move.finish()
            got = await read
            return got, time.monotonic() - began
        finally:
            await connection.aclose()

    with running_cluster(tmp_path / "cluster", masters=2, replicas=0) as c:
        got, took_s = asyncio.run(scenario(c))
    assert got is not None
    assert took_s < DEADLINE_S
