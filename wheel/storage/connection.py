"""The connection layer: one Redis or a Redis Cluster, found out at start.

Everything above this module names a key and a command; this module
alone knows whether the deployment is a single Redis or a cluster, which
node holds a key, how many connections there are, what is retried and
how. Every command goes through the :class:`~wheel.storage.batcher.Batcher` of
its node, so concurrent commands share round trips and a node never has
more than a few pipelines on the wire.

Retries. Every script of the service is safe to send twice (a replay
finds its own effect and answers as the first call did), so any command
that failed in transport is sent again on a fresh connection, with
backoff and jitter, until the caller's deadline: ``ConnectionError``
(``LOADING`` too), timeouts, ``CLUSTERDOWN``, ``TRYAGAIN`` and a
demoted master's ``READONLY``. ``MOVED`` and ``ASK`` are followed at
once; ``NOSCRIPT`` loads the scripts into that node (once, however many
callers meet it) and re-sends. Idle pooled connections of a node that
failed are dropped, so a stale connection left by a Redis restart never
reaches a caller.

Why not redis-py's ``RedisCluster``: its node pools raise
``MaxConnectionsError`` instead of waiting, a connection error closes
every node's connections, and a failed pipeline is re-sent to every node.
This module uses redis-py's plain client (a blocking pool per node) and
its error classes, and keeps the slot map itself (``CLUSTER SLOTS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
)

from wheel.core.delays import backoff_s
from wheel.settings import Settings
from wheel.storage.errors import (
    OOM_MESSAGE,
    TRANSIENT,
    RedisUnavailable,
    StoreFull,
    describe,
)
from wheel.storage.node import SOCKET_TIMEOUT_S, Limits, Node
from wheel.storage.scripts import Script
from wheel.storage.slots import SLOTS, key_slot

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_S = 5
"""A pooled connection idle this long is PINGed before reuse."""
DEADLINE_S = 3.0
"""Default time a call may take, retries included."""
BACKOFF_FIRST_S = 0.02
BACKOFF_MAX_S = 1.0
MAX_REDIRECTS = 5
REFRESH_EVERY_S = 0.5
"""Most often the cluster slot map is re-read."""


class Outage:
    """Logs "Redis unreachable" once and "Redis back after N s" once."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.failures = 0

    def failed(self, node: str, exc: BaseException) -> None:
        """Note a transport failure."""
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning(
                "Redis unreachable",
                extra={"node": node, "error": describe(exc)},
            )

    def succeeded(self) -> None:
        """Note a reply; ends an outage."""
        if self.down_since is not None:
            log.warning(
                "Redis back",
                extra={
                    "after_s": round(time.monotonic() - self.down_since, 1),
                    "failed_calls": self.failures,
                },
            )
            self.down_since = None
            self.failures = 0


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a reply's error as seen, for a caller that stopped awaiting.

    A caller whose deadline passed no longer awaits its reply; asyncio
    would log each such error as never retrieved (a traceback per
    timed-out call after an outage).
    """
    if not future.cancelled():
        future.exception()


class Connection:
    """Routes commands to the node of their key, batched and retried.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://``; for a cluster, any
            node's URL.
        name: the client name every connection announces (``CLIENT
            SETNAME``), so operators can count a process' connections.
        limits: per-node bounds.
    """

    def __init__(
        self, url: str, name: str, limits: Limits | None = None
    ) -> None:
        self.url = url
        self.limits = limits or Limits()
        self._kwargs = dict(parse_url(url))
        self._kwargs.update(
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_keepalive=True,
            health_check_interval=HEALTH_CHECK_S,
            client_name=name,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
            # RESP2: the replies storage/replies.py parses (redis-py 8
            # may default to RESP3, whose maps and doubles differ).
            protocol=2,
        )
        self.cluster = False
        self._seed = self._name_of(self._kwargs)
        self._nodes: dict[str, Node] = {}
        self._slots: list[str] = []
        self._started: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self.outage = Outage()
        self._rng = random.Random()

    # -- topology ---------------------------------------------------------

    @staticmethod
    def _name_of(kwargs: dict[str, Any]) -> str:
        if "path" in kwargs:
            return f"unix:{kwargs['path']}"
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"

    def _node(self, name: str) -> Node:
        node = self._nodes.get(name)
        if node is None:
            kwargs = dict(self._kwargs)
            if name != self._seed:
                host, _, port = name.rpartition(":")
                kwargs.update(host=host, port=int(port))
                kwargs.pop("path", None)
            node = Node(name, kwargs, self.limits)
            self._nodes[name] = node
        return node

    async def start(self) -> None:
        """Find out whether Redis is a cluster; load the scripts.

        Concurrent callers share one attempt; a failed attempt is tried
        again by the next call.
        """
        task = self._started
        if task is None or (
            task.done() and (task.cancelled() or task.exception())
        ):
            task = self._started = asyncio.create_task(self._detect())
        await asyncio.shield(task)

    @property
    def started(self) -> bool:
        """Whether the topology is known."""
        task = self._started
        return (
            task is not None
            and task.done()
            and not task.cancelled()
            and task.exception() is None
        )

    async def _detect(self) -> None:
        seed = self._node(self._seed)
        info = await seed.batcher.execute("INFO", "cluster")
        self.cluster = b"cluster_enabled:1" in info
        if self.cluster:
            await self._read_slots([self._seed])
        for node in self.primaries():
            # Loaded again on the first NOSCRIPT if this fails.
            with contextlib.suppress(RedisError):
                await node.load_scripts()
        log.info(
            "connected to Redis",
            extra={
                "cluster": self.cluster,
                "primaries": [node.name for node in self.primaries()],
            },
        )

    async def _read_slots(self, candidates: Sequence[str]) -> None:
        last: BaseException | None = None
        for name in candidates:
            try:
                reply = await asyncio.wait_for(
                    self._node(name).batcher.execute("CLUSTER", "SLOTS"),
                    CONNECT_TIMEOUT_S,
                )
            except (RedisError, OSError, TimeoutError) as exc:
                last = exc
                continue
            slots = slot_map(reply)
            if slots is None:
                last = ClusterDownError("not every slot is served")
                continue
            self._slots = slots
            self._refreshed_at = time.monotonic()
            return
        raise RedisUnavailable(
            f"no node answered CLUSTER SLOTS: {last}"
        ) from last

    def refresh_soon(self) -> None:
        """Re-read the slot map in the background (rate-limited)."""
        if not self.cluster:
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        wait = max(
            0.0, self._refreshed_at + REFRESH_EVERY_S - time.monotonic()
        )
        self._refreshing = asyncio.create_task(self._refresh(wait))

    async def _refresh(self, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        known = list(dict.fromkeys([*set(self._slots), *self._nodes]))
        try:
            await self._read_slots(known or [self._seed])
        except RedisUnavailable as exc:
            log.debug("slot map refresh failed", extra={"error": str(exc)})

    def node_of(self, key: bytes) -> str:
        """The name of the node that holds ``key``."""
        if not self.cluster:
            return self._seed
        return self._slots[key_slot(key)]

    def primaries(self) -> list[Node]:
        """Every primary node (the one node of a single Redis)."""
        if not self.cluster:
            return [self._node(self._seed)]
        return [self._node(name) for name in dict.fromkeys(self._slots)]

    # -- calls ------------------------------------------------------------

    async def call(
        self,
        key: bytes,
        *args: Any,
        ack: bool = False,
        deadline_s: float = DEADLINE_S,
    ) -> Any:
        """Run a command on the node of ``key``; its raw reply.

        Raises:
            RedisUnavailable: no reply within ``deadline_s``, retries
                included.
            StoreFull: Redis is at maxmemory and refused a write.
            NotReplicated: ``ack`` and too few replicas confirmed.
        """
        return await self._run(key, args, None, ack, deadline_s)

    async def script(
        self,
        script: Script,
        keys: Sequence[bytes],
        args: Sequence[Any],
        *,
        ack: bool = False,
        deadline_s: float = DEADLINE_S,
    ) -> Any:
        """Run a script (``EVALSHA``) on the node of its keys."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        return await self._run(keys[0], command, script, ack, deadline_s)

    async def _run(
        self,
        key: bytes,
        command: tuple[Any, ...],
        script: Script | None,
        ack: bool,
        deadline_s: float,
    ) -> Any:
        deadline = time.monotonic() + deadline_s
        attempt = 0
        redirects = 0
        name = self._seed
        loads = 0
        while True:
            try:
                if not self.started:
                    await asyncio.wait_for(
                        self.start(), max(0.0, deadline - time.monotonic())
                    )
                name = self.node_of(key)
                node = self._node(name)
                loads = node.loads
                future = node.batcher.execute(*command, ack=ack)
                future.add_done_callback(_retrieve)
                # A deadline that passes cancels this future only; the
                # batcher skips it, the other callers of its pipeline
                # get their replies.
                async with asyncio.timeout(deadline - time.monotonic()):
                    reply = await future
            except MovedError as exc:
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RedisUnavailable(describe(exc)) from exc
                self._moved(exc)
                continue
            except AskError as exc:
                return await self._asking(exc, command)
            except NoScriptError:
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise
                await self._node(name).load_scripts(loads)
                continue
            except OutOfMemoryError as exc:
                self.outage.succeeded()
                raise StoreFull(str(exc)) from exc
            except TRANSIENT as exc:
                await self._failed(name, exc)
                pause = backoff_s(
                    attempt, BACKOFF_FIRST_S, BACKOFF_MAX_S, self._rng
                )
                attempt += 1
                if time.monotonic() + pause >= deadline:
                    raise RedisUnavailable(describe(exc)) from exc
                await asyncio.sleep(pause)
                continue
            except ResponseError as exc:
                # After TRANSIENT: READONLY, CLUSTERDOWN and TRYAGAIN are
                # response errors too, and are retried. Inside a script
                # Redis 6.2 wraps a refusal at maxmemory in a plain
                # script error.
                if OOM_MESSAGE in str(exc):
                    self.outage.succeeded()
                    raise StoreFull(str(exc)) from exc
                raise
            self.outage.succeeded()
            return reply

    def _moved(self, exc: MovedError) -> None:
        name = f"{exc.host}:{exc.port}"
        if self._slots:
            self._slots[exc.slot_id] = name
        self.refresh_soon()

    async def _asking(self, exc: AskError, command: tuple[Any, ...]) -> Any:
        # ASKING applies to the next command on the same connection: a
        # pipeline of its own, outside the batcher.
        pipe = self._node(f"{exc.host}:{exc.port}").client.pipeline(
            transaction=False
        )
        pipe.execute_command("ASKING")
        pipe.execute_command(*command)
        _, reply = await pipe.execute()
        return reply

    async def _failed(self, name: str, exc: BaseException) -> None:
        self.outage.failed(name, exc)
        node = self._nodes.get(name)
        if node is not None:
            await node.drop_idle()
        self.refresh_soon()

    async def each_primary(
        self, *args: Any, deadline_s: float = DEADLINE_S
    ) -> dict[str, Any]:
        """Run a command on every primary; reply (or error) per node."""
        if not self.started:
            await asyncio.wait_for(self.start(), deadline_s)
        nodes = self.primaries()

        async def one(node: Node) -> Any:
            return await asyncio.wait_for(
                node.batcher.execute(*args), deadline_s
            )

        replies = await asyncio.gather(
            *(one(node) for node in nodes), return_exceptions=True
        )
        return {
            node.name: reply
            for node, reply in zip(nodes, replies, strict=True)
        }

    async def aclose(self) -> None:
        """Close every node's connections."""
        for task in (self._refreshing, self._started):
            if task is not None and not task.done():
                task.cancel()
        nodes, self._nodes = list(self._nodes.values()), {}
        await asyncio.gather(
            *(node.aclose() for node in nodes), return_exceptions=True
        )


def slot_map(reply: list[Any]) -> list[str] | None:
    """Node name per slot from a ``CLUSTER SLOTS`` reply; None if a slot
    is unserved (the cluster is not fully formed or is failing over)."""
    slots: list[str | None] = [None] * SLOTS
    for entry in reply:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        host = primary[0].decode() if primary[0] else "127.0.0.1"
        name = f"{host}:{int(primary[1])}"
        for slot in range(start, end + 1):
            slots[slot] = name
    if any(slot is None for slot in slots):
        return None
    return [slot for slot in slots if slot is not None]


def connect(settings: Settings, name: str) -> Connection:
    """The connection of one process, as every role builds it.

    ``name`` is announced by every connection (``CLIENT SETNAME``), so
    ``CLIENT LIST`` tells which process holds what.
    """
    return Connection(settings.redis_url, name, Limits.from_settings(settings))
