"""What a fault inside Redis costs: the scenarios of ``tests/redis_faults.py``
for any checkout, old and new side by side.

Each run starts its own Redis (a 3 + 3 cluster, a primary and its replica,
or one server, by scenario), the roles of the code under test as real
processes (``--code DIR``) with the end-to-end tests' settings, and a
receiver in this process; makes the fault happen; and reports what the
clients were told, what arrived, and how late::

    python benchmarks/redis_faults.py --scenario failover
    python benchmarks/compare.py --old /tmp/tw-old --runs 3 -- \\
        redis_faults.py --scenario replica-stop

Scenarios: ``failover`` (SIGKILL of the master holding most timers, with
replica acks), ``replica-stop`` (the only replica SIGSTOPped 12 s, with
replica acks), ``pause`` (``CLIENT PAUSE ALL`` 6 s under 100 creates/s),
``noreplicas`` and ``misconf`` (writes refused 3 s while webhooks are in
flight, arrivals counted until a reclaim after), ``master-stop`` (one of
three masters SIGSTOPped 8 s), ``rebalance`` (a fourth master added and
slots moved under 150 creates/s), ``worker-restarts`` (8 restarts;
consumers left per group). The ``summary`` holds every figure:
acknowledged, 503 with an id, other refusals by status, lost,
duplicated, unexplained arrivals, lateness percentiles by group, and the
fault's moments.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    REPO_DIR,
    Code,
    add_common_args,
    deadline_alarm,
    machine,
    process_group,
    save,
)

sys.path.insert(0, str(REPO_DIR))

SHARDS = 48
SCENARIOS = (
    "failover",
    "replica-stop",
    "pause",
    "noreplicas",
    "misconf",
    "master-stop",
    "rebalance",
    "worker-restarts",
)


def run(scenario: str, tmp: Path) -> Any:
    """Run one scenario in ``tmp``; its Figures."""
    from tests import redis_faults as faults
    from tests.clusters import running_cluster
    from tests.support import FAST_ENV, Behaviour, Procs, Receiver
    from wheel.embedded.server import RedisServer
    from wheel.storage.keys import Keys

    def procs_for(url: str, **env: str) -> Procs:
        return Procs({**FAST_ENV, "WHEEL_REDIS_URL": url, **env}, tmp)

    receiver = Receiver(
        Behaviour(delay_s=1.0)
        if scenario in ("noreplicas", "misconf")
        else Behaviour()
    )
    receiver.start()
    procs: Procs | None = None
    try:
        if scenario in ("failover", "master-stop", "rebalance"):
            with running_cluster(tmp / "cluster", 3, 1) as cluster:
                acks = (
                    {"WHEEL_REPLICA_ACKS": "1"}
                    if scenario == "failover"
                    else {}
                )
                procs = procs_for(
                    cluster.seed_url, WHEEL_SHARDS=str(SHARDS), **acks
                )
                keys = Keys("tw", SHARDS)
                if scenario == "failover":
                    return faults.master_failover(
                        cluster, procs, receiver, keys
                    )
                if scenario == "master-stop":
                    return faults.master_stop(cluster, procs, receiver, keys)
                new_node = cluster.spare_node(tmp / "new-node")
                new_node.start()
                try:
                    return faults.rebalance(cluster, new_node, procs, receiver)
                finally:
                    new_node.stop(kill=True)
        if scenario == "replica-stop":
            primary = RedisServer(tmp / "primary", appendonly=False)
            primary.start()
            replica = RedisServer(
                tmp / "replica",
                appendonly=False,
                extra_args=("--replicaof", "127.0.0.1", str(primary.port)),
            )
            replica.start()
            try:
                time.sleep(1.0)  # the replica's first sync
                procs = procs_for(primary.url, WHEEL_REPLICA_ACKS="1")
                return faults.replica_stop(primary, replica, procs, receiver)
            finally:
                replica.stop(kill=True)
                primary.stop(kill=True)
        server = RedisServer(tmp / "redis", appendonly=False)
        server.start()
        try:
            if scenario == "pause":
                procs = procs_for(server.url)
                return faults.client_pause(server.url, procs, receiver)
            if scenario == "worker-restarts":
                procs = procs_for(server.url, WHEEL_HEARTBEAT_TTL="2")
                figures = faults.worker_restarts(server.url, procs, receiver)
                # One sweep later: what a deployment keeps.
                time.sleep(float(FAST_ENV["WHEEL_RECLAIM_IDLE"]) / 2 + 1)
                figures.extra["consumers_after_sweep"] = max(
                    faults.consumer_counts(server.url).values()
                )
                return figures
            procs = procs_for(server.url, WHEEL_RECLAIM_IDLE="8")
            refuse: Callable[[Any], Callable[[], None]] = (
                faults.refuse_noreplicas
                if scenario == "noreplicas"
                else faults.refuse_misconf(tmp / "snapshots")
            )
            return faults.refused_writes(
                server.url, procs, receiver, refuse, reclaim_s=8
            )
        finally:
            server.stop(kill=True)
    finally:
        if procs is not None:
            procs.stop_all()
        receiver.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    add_common_args(parser)
    args = parser.parse_args()
    code = Code(args.code)
    for key in list(os.environ):
        if key.startswith("WHEEL_") and not code.knows(key[6:].lower()):
            code.dropped.add(key)
            del os.environ[key]
    deadline_alarm(600)

    from tests import support

    support.TIMER_WHEEL = str(code.timer_wheel)
    started = time.time()
    with (
        tempfile.TemporaryDirectory(prefix="bench-faults-") as folder,
        process_group(Path(folder)),
    ):
        figures = run(args.scenario, Path(folder))
    summary = figures.summary()
    print(f"{args.scenario}: {summary}")
    path = save(
        "redis_faults",
        {
            "machine": machine(),
            "code": code.describe(),
            "args": vars(args),
            "elapsed_s": round(time.time() - started, 1),
            "summary": summary,
            "lost_ids": sorted(figures.lost)[:20],
            "duplicated_ids": sorted(figures.duplicated)[:20],
            "unexplained_ids": sorted(figures.unexplained)[:20],
        },
        args.out,
    )
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
