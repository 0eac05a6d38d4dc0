"""The Redis of a harness: one server or a local Redis Cluster, of the
binary and fsync policy asked for."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

DEBIAN_REDIS = "/usr/bin/redis-server"


def redis_binary(choice: str) -> str:
    """The redis-server of ``--redis``: 7, 6.2 or a path."""
    if choice == "7":
        return DEBIAN_REDIS
    if choice in ("6", "6.2"):
        from wheel.embedded.server import find_binary

        return find_binary()
    return choice


@dataclass
class RedisDeployment:
    """One Redis, or a local Redis Cluster of ``masters`` masters."""

    workdir: Path
    binary: str
    appendfsync: str = "always"
    masters: int = 0
    config: tuple[str, ...] = ()
    """redis-server settings as NAME=VALUE (a single Redis only)."""
    _single: object = None
    _cluster: object = None

    def start(self) -> RedisDeployment:
        aof = self.appendfsync != "off"
        fsync = self.appendfsync if aof else "everysec"
        if self.masters and self.config:
            raise SystemExit("--redis-config is for a single Redis only")
        if self.masters:
            from wheel.embedded.cluster import EmbeddedCluster

            self._cluster = EmbeddedCluster(
                self.workdir / "cluster",
                masters=self.masters,
                appendonly=aof,
                appendfsync=fsync,
                binary=self.binary,
            )
            self._cluster.start()
        else:
            from wheel.embedded.server import RedisServer

            self._single = RedisServer(
                self.workdir / "redis",
                appendonly=aof,
                appendfsync=fsync,
                binary=self.binary,
                extra_args=[
                    part for setting in self.config for part in _flag(setting)
                ],
            )
            self._single.start()
        return self

    @property
    def url(self) -> str:
        """What WHEEL_REDIS_URL gets (a cluster's seed node)."""
        if self._cluster is not None:
            return self._cluster.seed_url
        return self._single.url

    def nodes(self) -> list:
        """The RedisServer of every master (one for a single Redis)."""
        if self._cluster is not None:
            return list(self._cluster.masters())
        return [self._single]

    @property
    def node_urls(self) -> list[str]:
        return [node.url for node in self.nodes()]

    @property
    def pids(self) -> list[int]:
        return [node.process.pid for node in self.nodes()]

    def version(self) -> str:
        from wheel.embedded.server import binary_version

        return ".".join(map(str, binary_version(self.binary)))

    def describe(self) -> dict[str, object]:
        return {
            "binary": self.binary,
            "version": self.version(),
            "appendfsync": self.appendfsync,
            "cluster_masters": self.masters,
            "config": list(self.config),
        }

    def client(self):
        """A synchronous client (a cluster client for a cluster)."""
        import redis

        if self._cluster is not None:
            return redis.RedisCluster.from_url(self.url)
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        if self._single is not None:
            self._single.stop()
            self._single = None


def _flag(setting: str) -> list[str]:
    """``NAME=VALUE`` as redis-server's ``--NAME VALUE``."""
    name, sep, value = setting.partition("=")
    if not sep or not name:
        raise SystemExit(f"--redis-config wants NAME=VALUE, not {setting!r}")
    return [f"--{name}", value]


def describe_redis(args: argparse.Namespace) -> dict[str, object]:
    """The Redis that ``--redis``, ``--appendfsync`` and
    ``--cluster-masters`` select, for a result's JSON."""
    return RedisDeployment(
        Path("."),
        redis_binary(args.redis),
        args.appendfsync,
        args.cluster_masters,
        tuple(getattr(args, "redis_config", ())),
    ).describe()


HARNESS_COMMANDS = frozenset({"info", "scan", "xinfo|groups"})
"""Commands the harness sends itself (:class:`RedisCost`,
:class:`ReadyBacklog`); the service never does while timers fire."""


class ReadyBacklog:
    """The ready streams' consumer groups, sampled while timers fire.

    ``lag`` is what the ticker has moved to a ready stream and no worker
    has read yet; ``pending`` what workers have read and not completed.
    A burst whose lag stays near zero waits on the ticker; one with a
    standing lag waits on the workers, and a pending count well below
    their slots says the slots are not what holds them back.
    """

    def __init__(self, urls: list[str]) -> None:
        import redis

        self._clients = [redis.Redis.from_url(url) for url in urls]
        # The streams that have a consumer group (dead letters have
        # none), found once: the workers created every group at start.
        self._streams = [
            [
                key
                for key in client.scan_iter(count=1000, _type="stream")
                if client.xinfo_groups(key)
            ]
            for client in self._clients
        ]
        self.lag: list[int] = []
        self.pending: list[int] = []

    def sample(self) -> None:
        """Add one sample of the lag and the pending entries, summed."""
        lag = pending = 0
        for client, streams in zip(self._clients, self._streams, strict=True):
            pipe = client.pipeline(transaction=False)
            for key in streams:
                pipe.xinfo_groups(key)
            for groups in pipe.execute():
                for group in groups:
                    lag += group.get("lag") or 0
                    pending += group.get("pending") or 0
        self.lag.append(lag)
        self.pending.append(pending)

    def summary(self) -> dict[str, float]:
        """Median and largest lag and pending count over the samples."""
        if not self.lag:
            return {}
        return {
            "ready_lag_median": statistics.median(self.lag),
            "ready_lag_max": max(self.lag),
            "pending_median": statistics.median(self.pending),
            "pending_max": max(self.pending),
        }

    def close(self) -> None:
        for client in self._clients:
            client.close()


class RedisCost:
    """Redis' own CPU and commands over a window, on every master.

    ``used_cpu_sys + used_cpu_user`` of ``INFO cpu`` and the calls of
    ``INFO commandstats`` are read at the start and at :meth:`per`; the
    difference over a count of timers is the cost per timer as Redis
    itself accounts it (a script's inner commands count under their
    names, the script under ``evalsha``). ``us_<command>`` is the time
    Redis spent in a command's own work (``usec`` of commandstats; a
    script's includes its inner commands'): what the total CPU has on top
    of the commands sent is reading, parsing and answering them.
    ``aof_bytes`` is what the append-only file grew by (0 without one):
    under ``appendfsync always`` each event-loop turn's share of it is
    synced to disk before Redis answers.
    """

    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self._start = self._read()

    def _read(self) -> tuple[float, int, dict[str, tuple[int, int]]]:
        import redis

        cpu = 0.0
        aof = 0
        calls: dict[str, tuple[int, int]] = {}
        for url in self.urls:
            client = redis.Redis.from_url(url)
            try:
                info = client.info("cpu")
                cpu += float(info["used_cpu_sys"]) + float(
                    info["used_cpu_user"]
                )
                aof += int(
                    client.info("persistence").get("aof_current_size", 0)
                )
                for name, stats in client.info("commandstats").items():
                    command = name.removeprefix("cmdstat_")
                    n, us = calls.get(command, (0, 0))
                    calls[command] = (
                        n + int(stats["calls"]),
                        us + int(stats["usec"]),
                    )
            finally:
                client.close()
        return cpu, aof, calls

    def per(self, count: int) -> dict[str, float]:
        """Redis CPU (us), AOF bytes and commands per one of ``count``
        since start."""
        cpu, aof, calls = self._read()
        start_cpu, start_aof, start_calls = self._start
        count = max(1, count)
        out = {
            "redis_cpu_us": round((cpu - start_cpu) * 1e6 / count, 1),
            "aof_bytes": round((aof - start_aof) / count, 1),
        }
        for command, (n, us) in sorted(calls.items()):
            start_n, start_us = start_calls.get(command, (0, 0))
            # The harness' own calls are not the service's.
            if n > start_n and command not in HARNESS_COMMANDS:
                out[f"calls_{command}"] = round((n - start_n) / count, 3)
                out[f"us_{command}"] = round((us - start_us) / count, 2)
        return out
