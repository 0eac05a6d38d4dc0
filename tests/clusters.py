"""Helpers for fixtures that need a real Redis Cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from wheel.embedded.cluster import EmbeddedCluster

FLUSH_WAIT_MS = 5000


def start_cluster(
    folder: Path, masters: int = 3, replicas: int = 1, **kw: Any
) -> EmbeddedCluster:
    """A formed, ok cluster with its data in ``folder``."""
    cluster = EmbeddedCluster(folder, masters=masters, replicas=replicas, **kw)
    cluster.start()
    return cluster


@contextmanager
def running_cluster(
    folder: Path, masters: int = 3, replicas: int = 1, **kw: Any
) -> Iterator[EmbeddedCluster]:
    """A started cluster, stopped on the way out."""
    cluster = start_cluster(folder, masters, replicas, **kw)
    try:
        yield cluster
    finally:
        cluster.stop()


def flush_cluster(cluster: EmbeddedCluster) -> None:
    """FLUSHALL every master and wait until its replicas have it too."""
    for master in cluster.masters():
        expected = len(cluster.replicas_of(master))
        # One connection: WAIT counts the acks of this client's writes.
        client = redis.Redis.from_url(
            master.url, single_connection_client=True
        )
        try:
            client.flushall()
            acked = client.execute_command("WAIT", expected, FLUSH_WAIT_MS)
        finally:
            client.close()
        if acked < expected:
            raise AssertionError(
                f"FLUSHALL on {master.port} reached {acked} of {expected} "
                f"replicas within {FLUSH_WAIT_MS} ms"
            )
