"""Redis Cluster: even spread, bounded connections, failover without loss.

The end-to-end tests marked ``both`` in tests/test_e2e.py run on the
session's 3 + 3 cluster too; this module adds what only a cluster has.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from tests.clusters import running_cluster
from tests.support import FAST_ENV, Procs, Receiver, wait_until
from tests.test_e2e import create_many
from wheel.embedded.cluster import EmbeddedCluster
from wheel.embedded.server import free_port
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import connect
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
        timer_ids = create_many([base], receiver.url, [0, 1] * 300)
        wait_until(
            lambda: set(receiver.ids()) == set(timer_ids),
            timeout_s=60,
            what="600 webhooks",
        )
        counts = client_counts(redis_cluster, worker.pid)
    finally:
        procs.stop_all()
    assert 0 < sum(counts.values()) <= 64, counts


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A 3 + 3 cluster for one test that breaks it."""
    with running_cluster(tmp_path / "cluster", masters=3, replicas=1) as c:
        yield c


def test_master_failover_under_load_loses_no_acknowledged_timer(
    own_cluster: EmbeddedCluster, tmp_path: Path, receiver: Receiver
) -> None:
    """With WHEEL_REPLICA_ACKS=1, SIGKILL the master holding most timers
    under load: every acknowledged timer fires, duplicates only for
    webhooks in flight, /readyz is 200 again within 20 s, no CROSSSLOT."""
    env = {
        **FAST_ENV,
        "WHEEL_REDIS_URL": own_cluster.seed_url,
        "WHEEL_SHARDS": "48",
        "WHEEL_REPLICA_ACKS": "1",
        "WHEEL_REPLICA_ACK_TIMEOUT": "1",
        "WHEEL_RECLAIM_IDLE": "20",
    }
    procs = Procs(env, tmp_path)
    acknowledged: list[str] = []
    refused: list[int] = []
    try:
        base = procs.api()
        for role in ("ticker", "ticker", "worker", "worker"):
            procs.role(role)

        async def load(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                i = 0
                while time.monotonic() < deadline:
                    i += 1
                    try:
                        reply = await http.post(
                            "/timer",
                            json={"seconds": 2 + i % 4, "url": receiver.url},
                        )
                    except httpx.HTTPError:
                        refused.append(0)
                        continue
                    if reply.status_code == 201:
                        acknowledged.append(reply.json()["id"])
                    else:
                        refused.append(reply.status_code)
                    await asyncio.sleep(0.01)

        async def scenario() -> float:
            loading = asyncio.create_task(load(14))
            await asyncio.sleep(4)
            counts = per_master(own_cluster)
            victim = max(counts, key=lambda port: counts[port])
            index = [n.port for n in own_cluster].index(victim)
            own_cluster.kill(index)
            killed_at = time.monotonic()
            await loading
            return killed_at

        killed_at = asyncio.run(scenario())
        wait_until(
            lambda: httpx.get(f"{base}/readyz").status_code == 200,
            timeout_s=max(0.5, killed_at + 20 - time.monotonic()),
            what="/readyz 200 within 20 s of the kill",
        )
        wait_until(
            lambda: set(acknowledged) <= set(receiver.ids()),
            timeout_s=60,
            what="every acknowledged timer to fire",
        )
        logs = "".join(procs.output(p) for p in procs.running)
    finally:
        procs.stop_all()
    assert len(acknowledged) > 200
    assert "CROSSSLOT" not in logs
    assert set(refused) <= {0, 503}, refused
    counts = receiver.ids()
    duplicated = [t for t in acknowledged if counts[t] > 1]
    # At most the webhooks in flight on the failing master's shards.
    assert len(duplicated) <= 50, duplicated


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

        wait_until(up, timeout_s=60, what="dev --cluster to be ready")
        return process

    try:
        dev = start()
        now = httpx.post(
            f"{base}/timer", json={"seconds": 0, "url": receiver.url}
        ).json()["id"]
        later = httpx.post(
            f"{base}/timer", json={"seconds": 6, "url": receiver.url}
        ).json()["id"]
        wait_until(lambda: now in receiver.ids(), what="the first webhook")
        assert procs.terminate(dev, timeout_s=40) == 0
        assert later not in receiver.ids()
        dev = start()
        wait_until(
            lambda: later in receiver.ids(),
            timeout_s=30,
            what="the pending timer after the restart",
        )
        assert receiver.ids() == {now: 1, later: 1}
        assert procs.terminate(dev, timeout_s=40) == 0
    finally:
        procs.stop_all()
