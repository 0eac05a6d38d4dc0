"""The embedded Redis Cluster: formation, failover, rejoin, restart."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from tests.clusters import flush_cluster, running_cluster
from tests.support import (
    PROMOTION_S,
    REPLICA_SYNC_S,
    START_S,
    wait_until,
)
from wheel.embedded.cluster import (
    BUS_PORT_OFFSET,
    CLUSTER_SLOTS,
    EmbeddedCluster,
    cluster_ports,
    conf_port,
    slot_ranges,
)
from wheel.embedded.server import RedisServer, RedisServerError, find_binary

DEBIAN_REDIS = "/usr/bin/redis-server"


def _binaries() -> list[object]:
    debian = pytest.param(
        DEBIAN_REDIS,
        id="redis-7",
        marks=pytest.mark.skipif(
            not os.access(DEBIAN_REDIS, os.X_OK),
            reason=f"!!! {DEBIAN_REDIS} missing: Redis 7 NOT tested !!!",
        ),
    )
    return [pytest.param(find_binary(), id="redis-6.2"), debian]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EmbeddedCluster]:
    """Three masters with one replica each, shared by this module."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def _direct(node: RedisServer) -> redis.Redis:
    # One connection, so WAIT counts the acks of this client's writes.
    return redis.Redis.from_url(
        node.url, decode_responses=True, single_connection_client=True
    )


def _cluster_client(cluster: EmbeddedCluster) -> RedisCluster:
    """A cluster client seeded with every live node (node 0 may be dead)."""
    live = [
        ClusterNode("127.0.0.1", node.port) for node in cluster.live_nodes()
    ]
    return RedisCluster(startup_nodes=live, decode_responses=True)


def _keys_on_every_master(cluster: EmbeddedCluster, each: int) -> list[str]:
    """``each`` keys in every master's slot range (failovers keep ranges)."""
    keys: list[str] = []
    for first, last in slot_ranges(cluster.master_count):
        mine = (f"key:{i}" for i in range(100_000))
        mine = (key for key in mine if first <= key_slot(key.encode()) <= last)
        keys += [next(mine) for _ in range(each)]
    return keys


def test_slot_ranges_are_equal_shares() -> None:
    """Three masters get 5461, 5461 and 5462 slots, in order."""
    assert slot_ranges(3) == [(0, 5460), (5461, 10921), (10922, 16383)]
    assert slot_ranges(1) == [(0, CLUSTER_SLOTS - 1)]


@pytest.mark.parametrize(
    "line",
    [
        "f00 127.0.0.1:12345@22345 myself,master - 0 0 1 connected 0-5460",
        "f00 127.0.0.1:12345@22345,host myself,slave abc 0 0 1 connected",
    ],
)
def test_conf_port_reads_both_formats(tmp_path: Path, line: str) -> None:
    """The node's own port is read from 6.2 and 7.x nodes.conf lines."""
    conf = tmp_path / "nodes.conf"
    other = "e11 127.0.0.1:1@10001 master - 0 0 2 connected 5461-16383"
    conf.write_text(f"{other}\n{line}\nvars currentEpoch 2 lastVoteEpoch 0\n")
    assert conf_port(conf) == 12345


def test_cluster_ports_leave_bus_ports_free() -> None:
    """Each chosen port and its bus port are distinct and bindable."""
    ports = cluster_ports(6)
    buses = [port + BUS_PORT_OFFSET for port in ports]
    assert len(set(ports) | set(buses)) == 12
    assert all(bus <= 65535 for bus in buses)


def test_a_half_formed_folder_is_refused(tmp_path: Path) -> None:
    """A folder where only some nodes have a nodes.conf is an error."""
    conf = tmp_path / "node-0" / "nodes.conf"
    conf.parent.mkdir()
    conf.write_text("f00 127.0.0.1:12345@22345 myself,master - 0 0 0 c\n")
    with pytest.raises(RedisServerError, match="only some nodes"):
        EmbeddedCluster(tmp_path, masters=3).start()


def test_three_masters_cover_every_slot_in_equal_ranges(
    cluster: EmbeddedCluster,
) -> None:
    """CLUSTER SLOTS: 3 masters, one per equal range, 16384 slots."""
    client = _direct(cluster.nodes[0])
    try:
        reply = sorted(client.execute_command("CLUSTER", "SLOTS"))
    finally:
        client.close()
    assert [(row[0], row[1]) for row in reply] == slot_ranges(3)
    owners = {row[2][1] for row in reply}
    assert owners == {node.port for node in cluster.masters()}
    assert len(owners) == 3
    assert sum(last - first + 1 for first, last, *_ in reply) == 16384


def test_each_master_has_one_connected_replica(
    cluster: EmbeddedCluster,
) -> None:
    """Every master reports one online replica, linked up."""
    for master in cluster.masters():
        client = _direct(master)
        try:
            info = client.info("replication")
        finally:
            client.close()
        assert info["role"] == "master"
        assert info["connected_slaves"] == 1
        assert info["slave0"]["state"] == "online"
        (replica,) = cluster.replicas_of(master)
        assert info["slave0"]["port"] == replica.port


def test_cluster_client_writes_and_reads_on_every_master(
    cluster: EmbeddedCluster,
) -> None:
    """RedisCluster routes SET/GET for keys of each master's slots."""
    keys = _keys_on_every_master(cluster, each=3)
    client = RedisCluster.from_url(cluster.seed_url, decode_responses=True)
    try:
        for key in keys:
            assert client.set(key, f"v-{key}")
        assert [client.get(key) for key in keys] == [f"v-{k}" for k in keys]
    finally:
        client.close()
    slots = {cluster.master_for_slot(key_slot(k.encode())) for k in keys}
    assert len(slots) == 3


def test_flush_cluster_empties_masters_and_replicas(
    cluster: EmbeddedCluster,
) -> None:
    """After flush_cluster no node, replica or master, holds a key."""
    client = RedisCluster.from_url(cluster.seed_url)
    try:
        for key in _keys_on_every_master(cluster, each=2):
            client.set(key, "x")
    finally:
        client.close()
    flush_cluster(cluster)
    for node in cluster.nodes:
        direct = _direct(node)
        try:
            assert direct.dbsize() == 0
        finally:
            direct.close()


def test_sigkilled_master_fails_over_and_rejoins_as_replica(
    cluster: EmbeddedCluster,
) -> None:
    """SIGKILL a master: its replica takes over within PROMOTION_S with
    every acknowledged write; the old master comes back as a replica."""
    keys = _keys_on_every_master(cluster, each=5)
    for key in keys:
        client = _direct(cluster.master_for_slot(key_slot(key.encode())))
        try:
            client.set(key, f"v-{key}")
            assert client.execute_command("WAIT", 1, 5000) == 1
        finally:
            client.close()
    slot = key_slot(keys[0].encode())
    victim = cluster.master_for_slot(slot)
    (heir,) = cluster.replicas_of(victim)
    victim_index = cluster.nodes.index(victim)

    started = time.monotonic()
    cluster.kill(victim_index)
    wait_until(
        lambda: cluster.master_for_slot(slot) is heir,
        timeout_s=PROMOTION_S,
        what="the replica to be promoted",
    )
    cluster.wait_ok(timeout_s=PROMOTION_S - (time.monotonic() - started))
    assert victim not in cluster.masters()
    survivors = _cluster_client(cluster)
    try:
        assert [survivors.get(k) for k in keys] == [f"v-{k}" for k in keys]
    finally:
        survivors.close()

    cluster.restart_node(victim_index)

    def rejoined() -> bool:
        if cluster.replicas_of(heir) != [victim]:
            return False
        replica = _direct(victim)
        try:
            link = replica.info("replication").get("master_link_status")
        finally:
            replica.close()
        return link == "up"

    # Restarted, it learns from its peers that it lost its slots, and
    # syncs with the heir as its replica.
    wait_until(
        rejoined,
        timeout_s=START_S + REPLICA_SYNC_S,
        what="the old master back",
    )
    cluster.wait_ok()
    assert cluster.master_for_slot(slot) is heir
    assert victim in cluster.replicas()


@pytest.mark.parametrize("binary", _binaries())
def test_restart_on_the_same_folder_keeps_ids_and_data(
    tmp_path: Path, binary: str
) -> None:
    """Stopped and started again on its folder, the cluster has the same
    node ids, is ok, and still holds its keys (AOF)."""
    first = EmbeddedCluster(tmp_path, masters=3, binary=binary)
    first.start()
    try:
        keys = _keys_on_every_master(first, each=2)
        client = RedisCluster.from_url(first.seed_url, decode_responses=True)
        try:
            for key in keys:
                client.set(key, f"v-{key}")
        finally:
            client.close()
        ids = [_myid(node) for node in first]
    finally:
        first.stop()

    again = EmbeddedCluster(tmp_path, masters=3, binary=binary)
    assert [node.port for node in again] == [node.port for node in first]
    again.start()
    try:
        assert [_myid(node) for node in again] == ids
        again.wait_ok(timeout_s=1)
        client = RedisCluster.from_url(again.seed_url, decode_responses=True)
        try:
            assert [client.get(k) for k in keys] == [f"v-{k}" for k in keys]
        finally:
            client.close()
    finally:
        again.stop()


def test_redis_7_forms_with_replicas(tmp_path: Path) -> None:
    """Redis 7 forms a cluster with replicas and lists them in the map."""
    if not os.access(DEBIAN_REDIS, os.X_OK):
        pytest.skip(f"!!! {DEBIAN_REDIS} missing: Redis 7 NOT tested !!!")
    with running_cluster(tmp_path, binary=DEBIAN_REDIS) as cluster:
        assert len(cluster.replicas()) == 3
        for master in cluster.masters():
            assert len(cluster.replicas_of(master)) == 1


def _myid(node: RedisServer) -> str:
    client = _direct(node)
    try:
        return str(client.execute_command("CLUSTER", "MYID"))
    finally:
        client.close()
