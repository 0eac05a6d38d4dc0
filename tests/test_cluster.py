"""Redis Cluster: even spread, bounded connections, dev on a cluster.

The end-to-end tests marked ``both`` in tests/test_e2e.py run on the
session's 3 + 3 cluster too; failover, a stopped master and resharding
are in tests/test_redis_faults.py, bounded by the README's promises.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from tests.clusters import running_cluster
from tests.redis_faults import stopped
from tests.support import (
    BACK_S,
    CLUSTER_START_S,
    FAST_ENV,
    LOADED_LATE_S,
    SIGNAL_S,
    STOP_S,
    Procs,
    Receiver,
    wait_until,
)
from tests.test_e2e import create_many
from wheel.embedded.cluster import EmbeddedCluster
from wheel.embedded.server import free_port
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import (
    CONNECT_TIMEOUT_S,
    SCRIPT_LOAD_WAIT_S,
    SLOTS_TIMEOUT_S,
    connect,
)
from wheel.storage.errors import RedisUnavailable
from wheel.storage.keys import Keys
from wheel.storage.shards import ShardQueue
from wheel.storage.slots import key_slot


def per_master(cluster: EmbeddedCluster) -> dict[int, int]:
    """Keys held by each master (by port)."""
    counts = {}
    for master in cluster.masters():
        client = sync_redis.Redis.from_url(master.url)
        counts[master.port] = client.dbsize()
        client.close()
    return counts


async def test_shards_spread_evenly_over_masters(
    cluster_url: str, redis_cluster: EmbeddedCluster
) -> None:
    """48 shards on 3 masters: each holds within 25% of the mean of the
    service's keys, and every shard's keys live in one slot."""
    settings = Settings(redis_url=cluster_url, shards=48)
    connection = connect(settings, client_name("spread"))
    queue = ShardQueue(connection, settings)
    try:
        created = await asyncio.gather(
            *(queue.create("http://a.example/h", 600_000) for _ in range(6000))
        )
    finally:
        await connection.aclose()
    assert len({c.timer_id for c in created}) == 6000
    counts = per_master(redis_cluster)
    mean = sum(counts.values()) / len(counts)
    assert all(abs(n - mean) <= 0.25 * mean for n in counts.values()), counts
    keys = Keys(settings.key_prefix, settings.shards)
    for shard in keys.all_shards():
        slots = {
            key_slot(key)
            for key in (shard.index, shard.ready, shard.lease, shard.dead)
        }
        assert len(slots) == 1


def client_counts(cluster: EmbeddedCluster, pid: int) -> dict[int, int]:
    """Connections of the worker process ``pid`` on every node, by port."""
    counts = {}
    for node in cluster.live_nodes():
        client = sync_redis.Redis.from_url(node.url)
        counts[node.port] = sum(
            1
            for c in client.client_list()
            if c["name"].startswith("tw:worker:") and f":{pid}:" in c["name"]
        )
        client.close()
    return counts


def test_worker_connections_stay_bounded_at_256_shards(
    cluster_url: str,
    redis_cluster: EmbeddedCluster,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """One worker on 256 shards of a 3 + 3 cluster holds at most 64
    connections, counted with CLIENT LIST on every node, while firing."""
    procs = Procs(
        {**FAST_ENV, "WHEEL_REDIS_URL": cluster_url, "WHEEL_SHARDS": "256"},
        tmp_path,
    )
    try:
        base = procs.api()
        procs.role("ticker")
        worker = procs.role("worker")
        delays = [0, 1] * 300
        timer_ids = create_many([base], receiver.url, delays)
        wait_until(
            lambda: set(receiver.ids()) == set(timer_ids),
            timeout_s=max(delays) + LOADED_LATE_S,
            what="600 webhooks",
        )
        counts = client_counts(redis_cluster, worker.pid)
    finally:
        procs.stop_all()
    assert 0 < sum(counts.values()) <= 64, counts


def test_dev_cluster_fires_and_keeps_timers_across_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    """`timer-wheel dev --cluster` runs on an embedded 3-master cluster,
    fires timers, and keeps pending ones when started again."""
    procs = Procs({**FAST_ENV, "WHEEL_SHARDS": "8"}, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"

    def start() -> subprocess.Popen[bytes]:
        process = procs.start(
            "dev", "--cluster", "--port", str(port), "--data-dir", str(data)
        )

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(procs.output(process))
            try:
                return httpx.get(f"{base}/readyz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_until(
            up, timeout_s=CLUSTER_START_S, what="dev --cluster to be ready"
        )
        return process

    try:
        dev = start()
        now = httpx.post(
            f"{base}/timer", json={"seconds": 0, "url": receiver.url}
        ).json()["id"]
        later = httpx.post(
            f"{base}/timer", json={"seconds": 6, "url": receiver.url}
        ).json()["id"]
        later_due = time.monotonic() + 6
        wait_until(
            lambda: now in receiver.ids(),
            timeout_s=LOADED_LATE_S,
            what="the first webhook",
        )
        assert procs.terminate(dev, timeout_s=STOP_S) == 0
        assert later not in receiver.ids()
        dev = start()
        # On time if still ahead; if it came due while dev was down, as
        # soon as dev is back.
        wait_until(
            lambda: later in receiver.ids(),
            timeout_s=max(
                later_due - time.monotonic() + LOADED_LATE_S, BACK_S
            ),
            what="the pending timer after the restart",
        )
        assert receiver.ids() == {now: 1, later: 1}
        assert procs.terminate(dev, timeout_s=STOP_S) == 0
    finally:
        procs.stop_all()


SEED_START_S = SLOTS_TIMEOUT_S + SCRIPT_LOAD_WAIT_S
"""How long a start on a seed may take while the URL's node is stopped:
every seed is asked at once, so the stopped node holds nothing up; the
masters answer, the slot map is read and the scripts' load into them is
waited for a moment. A start without seeds gives up only after the
connect and answer timeouts (:data:`ALONE_GIVES_UP_S`)."""
ALONE_GIVES_UP_S = CONNECT_TIMEOUT_S + SLOTS_TIMEOUT_S


def test_a_process_starts_on_its_seeds_while_its_urls_node_is_stopped(
    tmp_path: Path,
) -> None:
    """WHEEL_REDIS_URL names a replica that is SIGSTOPped (on a cluster
    of the test's own: the stop outlasts the node timeout); with the
    masters in WHEEL_REDIS_SEEDS the connection starts within
    :data:`SEED_START_S` and a timer is created and read back. Without
    seeds the same start gives up, unavailable, when its timeouts end."""

    async def starts(cluster: EmbeddedCluster) -> str | None:
        replica = cluster.replicas()[0]
        assert replica.pid is not None
        seeds = ",".join(f"127.0.0.1:{m.port}" for m in cluster.masters())
        settings = Settings(
            redis_url=replica.url, redis_seeds=seeds, shards=16
        )
        alone = connect(settings.replace(redis_seeds=""), client_name("a"))
        connection = connect(settings, client_name("seeded"))
        try:
            with stopped(replica.pid):
                await asyncio.wait_for(connection.start(), SEED_START_S)
                assert connection.cluster
                queue = ShardQueue(connection, settings)
                created = await queue.create("http://a.example/h", 600_000)
                got = await queue.get(created.timer_id)
                with pytest.raises(RedisUnavailable):
                    await asyncio.wait_for(
                        alone.start(), ALONE_GIVES_UP_S + SIGNAL_S
                    )
        finally:
            await connection.aclose()
            await alone.aclose()
        return None if got is None else got.url

    with running_cluster(tmp_path / "cluster", masters=3, replicas=1) as c:
        assert asyncio.run(starts(c)) == "http://a.example/h"
