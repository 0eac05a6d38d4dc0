"""The connection layer: one Redis or a Redis Cluster, found out at start.

Everything above this module names a key and a command; this module
alone knows whether the deployment is a single Redis or a cluster, which
node holds a key, how many connections there are, what is retried and
how. Every command goes through the :class:`~wheel.storage.batcher.Batcher`
of its node, so concurrent commands share round trips and a node never
has more than a few pipelines on the wire.

Retries. Every script of the service is safe to send twice (a replay
finds its own effect and answers as the first call did), so one loop
owns every failure, classified once by :func:`~wheel.storage.errors.
classify`: a lost connection or reply, a busy node (``LOADING``,
``BUSY``, ``MASTERDOWN``, ``CLUSTERDOWN``, ``TRYAGAIN``, a demoted
master's ``READONLY``) and a refused write (``NOREPLICAS``,
``MISCONF``) are sent again after a jittered backoff until the caller's
deadline; ``MOVED`` and ``ASK`` are followed at once (``ASKING`` goes in
the same pipeline as the command); ``NOSCRIPT`` loads the scripts into
that node (once, however many callers meet it) and re-sends; a full
Redis is :class:`StoreFull`; anything else is the caller's bug and is
raised as it is. Idle pooled connections of a node that failed are
dropped, so a stale connection left by a Redis restart never reaches a
caller. When the deadline passes the call fails with
:class:`RedisUnavailable`, which says whether an attempt may have been
applied (written, reply lost) or certainly was not.

Why not redis-py's ``RedisCluster``: its node pools raise
``MaxConnectionsError`` instead of waiting, a connection error closes
every node's connections, and a failed pipeline is re-sent to every node.
This module uses redis-py's plain client (a blocking pool per node) and
its error classes, and keeps the slot map itself (``CLUSTER SLOTS``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, ClusterDownError

from wheel.core.delays import backoff_s
from wheel.settings import Settings, SettingsError
from wheel.storage.errors import (
    Kind,
    RedisUnavailable,
    StoreFull,
    classify,
    describe,
    retrieve,
)
from wheel.storage.node import SOCKET_TIMEOUT_S, Limits, Node
from wheel.storage.scripts import Script
from wheel.storage.slots import SLOTS, key_slot

log = logging.getLogger(__name__)

_T = TypeVar("_T")

CONNECT_TIMEOUT_S = 5.0
SLOTS_TIMEOUT_S = 2.0
"""Longest wait for one node's ``CLUSTER SLOTS``."""
HEALTH_CHECK_S = 5
"""A pooled connection idle this long is PINGed before reuse."""
DEADLINE_S = 3.0
"""Default time a call may take, retries included."""
BACKOFF_FIRST_S = 0.02
BACKOFF_MAX_S = 1.0
MAX_REDIRECTS = 5
"""Most MOVED, ASK and NOSCRIPT answers in a row with no pause between
them: a loop of redirects, not a cluster at work."""
REFRESH_EVERY_S = 0.5
"""Most often the cluster slot map is re-read."""
SCRIPT_LOAD_WAIT_S = 1.0
"""How long a start waits for the scripts to load into every primary
before it goes on without a node that has not answered."""


class Outage:
    """Logs "Redis unreachable" once per node and "Redis back" once."""

    def __init__(self) -> None:
        self.down_since: dict[str, float] = {}
        self.by_node: dict[str, int] = {}
        self.failures = 0
        """Failed attempts since every node last answered."""

    def failed(self, node: str, exc: BaseException) -> None:
        """Note a failed attempt on ``node``."""
        self.failures += 1
        self.by_node[node] = self.by_node.get(node, 0) + 1
        if node not in self.down_since:
            self.down_since[node] = time.monotonic()
            log.warning(
                "Redis unreachable",
                extra={"node": node, "error": describe(exc)},
            )

    def succeeded(self, node: str) -> None:
        """Note a reply from ``node``; ends its outage."""
        since = self.down_since.pop(node, None)
        if since is not None:
            log.warning(
                "Redis back",
                extra={
                    "node": node,
                    "after_s": round(time.monotonic() - since, 1),
                    "failed_calls": self.by_node.pop(node, 0),
                },
            )
            if not self.down_since:
                self.failures = 0


class Connection:
    """Routes commands to the node of their key, batched and retried.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://``; for a cluster, any
            node's URL.
        name: the client name every connection announces (``CLIENT
            SETNAME``), so operators can count a process' connections.
        limits: per-node bounds.
        seeds: more nodes of the same cluster (``host:port``, reached with
            the URL's scheme, password and options), asked at start and on
            every slot map read with the URL's node, so that a process
            starts while that node is down.
    """

    def __init__(
        self,
        url: str,
        name: str,
        limits: Limits | None = None,
        seeds: Sequence[str] = (),
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
        self._seeds = list(dict.fromkeys([self._seed, *seeds]))
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
            task.add_done_callback(retrieve)
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
        async def ask(name: str) -> bytes:
            info: bytes = await self._node(name).batcher.execute(
                "INFO", "cluster"
            )
            return info

        # The first call opens the connection: its connect may take as
        # long as a connect does, its answer as long as a slot map read.
        name, info = await self._first_answer(
            self._seeds, ask, CONNECT_TIMEOUT_S + SLOTS_TIMEOUT_S
        )
        self.cluster = b"cluster_enabled:1" in info
        if not self.cluster and len(self._seeds) > 1:
            # A mistake of the settings, not an outage: said loudly, with
            # a traceback, each time a start is tried.
            raise SettingsError(
                f"WHEEL_REDIS_SEEDS is set, but {name} is a single Redis, "
                "not a cluster node: seeds are for a Redis Cluster"
            )
        if self.cluster:
            await self._read_slots(self._seeds)
        # All at once, and waited for a moment only: a stopped node
        # would hold the start up for its whole timeout. A call that
        # meets NOSCRIPT meanwhile waits for that node's load (or starts
        # another when it failed).
        loads = [node.start_loading() for node in self.primaries()]
        await asyncio.wait(loads, timeout=SCRIPT_LOAD_WAIT_S)
        log.info(
            "connected to Redis",
            extra={
                "cluster": self.cluster,
                "primaries": [node.name for node in self.primaries()],
            },
        )

    async def _read_slots(self, candidates: Sequence[str]) -> None:
        """Read the slot map from the first candidate with a complete one.

        Candidates are asked at once, not in turn: during a failover the
        failed master (stopped, not dead) would hold each attempt up for
        the whole timeout.
        """

        async def ask(name: str) -> list[str]:
            reply = await self._node(name).batcher.execute("CLUSTER", "SLOTS")
            slots = slot_map(reply, host_of(name))
            if slots is None:
                raise ClusterDownError("not every slot is served")
            return slots

        _, self._slots = await self._first_answer(
            candidates, ask, SLOTS_TIMEOUT_S
        )
        self._refreshed_at = time.monotonic()

    @staticmethod
    async def _first_answer(
        candidates: Sequence[str],
        ask: Callable[[str], Awaitable[_T]],
        timeout_s: float,
    ) -> tuple[str, _T]:
        """The first answer of ``ask`` to any candidate, asked at once,
        each within ``timeout_s``, and the node that gave it.

        Raises:
            RedisUnavailable: when no candidate answered, naming each
                one's error.
            Exception: an error of a kind that is a bug (see
                :func:`~wheel.storage.errors.classify`), as it was raised.
        """

        async def one(name: str) -> tuple[str, _T]:
            return name, await asyncio.wait_for(ask(name), timeout_s)

        tasks = {asyncio.ensure_future(one(name)): name for name in candidates}
        for task in tasks:
            # Every answer is seen, the ones that lost the race included.
            task.add_done_callback(retrieve)
        pending = set(tasks)
        errors: dict[str, BaseException] = {}
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        return task.result()
                    if classify(exc) is Kind.BUG and not isinstance(
                        exc, RedisUnavailable
                    ):
                        raise exc
                    errors[tasks[task]] = exc
        finally:
            for task in pending:
                task.cancel()
        raise RedisUnavailable(
            "no node answered: "
            + "; ".join(f"{n}: {describe(e)}" for n, e in errors.items())
        ) from next(iter(errors.values()), None)

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
        self._refreshing.add_done_callback(retrieve)

    async def _refresh(self, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        known = [*set(self._slots), *self._nodes, *self._seeds]
        try:
            await self._read_slots(list(dict.fromkeys(known)))
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
        resend: bool = True,
    ) -> Any:
        """Run a command on the node of ``key``; its raw reply.

        ``resend=False`` is for a command whose lost reply the caller
        must know of (a read that moves entries to its consumer): once
        an attempt was written and its reply lost, it is not sent again
        and the call raises ``RedisUnavailable(maybe_applied=True)``.

        Raises:
            RedisUnavailable: not applied within ``deadline_s``, retries
                included (``maybe_applied`` says whether it may have
                run); :class:`~wheel.storage.errors.Overloaded` at once
                when the node's queue is full.
            StoreFull: Redis is at maxmemory and refused a write.
            NotReplicated: ``ack`` and too few replicas confirmed (the
                command ran on the master; the error carries its reply).
            redis.exceptions.ResponseError: the command is wrong (a bug).
        """
        return await self._run(key, args, ack, deadline_s, resend)

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
        return await self._run(keys[0], command, ack, deadline_s)

    async def _run(
        self,
        key: bytes,
        command: tuple[Any, ...],
        ack: bool,
        deadline_s: float,
        resend: bool = True,
    ) -> Any:
        deadline = time.monotonic() + deadline_s
        pauses = 0
        redirects = 0
        asking: str | None = None
        maybe_applied = False
        last: BaseException | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RedisUnavailable(
                    f"no reply within {deadline_s}s"
                    + (f" ({describe(last)})" if last else ""),
                    maybe_applied=maybe_applied,
                ) from last
            if not self.started:
                try:
                    await asyncio.wait_for(self.start(), left)
                except Exception as exc:
                    last = exc
                    await self._pause(pauses, deadline)
                    pauses += 1
                    continue
            name = asking or self._seed
            call = None
            loads = 0
            try:
                name = asking or self.node_of(key)
                node = self._node(name)
                loads = node.loads
                call = node.batcher.submit(
                    command, ack=ack, deadline=deadline, asking=bool(asking)
                )
                future = call.future
                future.add_done_callback(retrieve)
                asking = None
                # A deadline that passes fails this future only, with a
                # TimeoutError; the batcher skips it if not sent yet, and
                # the other callers of its pipeline get their replies.
                # Every call pays for this: a timer handle costs 0.7 us,
                # an asyncio.timeout context 3.4 us (under uvloop).
                expiry = future.get_loop().call_later(
                    deadline - time.monotonic(), _expire, future
                )
                try:
                    reply = await future
                finally:
                    expiry.cancel()
            except RedisUnavailable as exc:
                # Overloaded, or not sent before its deadline: not applied.
                if maybe_applied:
                    raise RedisUnavailable(
                        str(exc), maybe_applied=True
                    ) from exc
                raise
            except Exception as exc:
                last = exc
                if isinstance(exc, DeadlinePassed):
                    # The caller's deadline: no reply, and no more tries
                    # (the timer may have run a hair before it).
                    if call is not None and call.sent:
                        maybe_applied = True
                    deadline = min(deadline, time.monotonic())
                    continue
                kind = classify(exc)
                if kind is Kind.BUG:
                    raise
                if kind is Kind.FULL:
                    self.outage.succeeded(name)
                    if maybe_applied:
                        raise RedisUnavailable(
                            describe(exc), maybe_applied=True
                        ) from exc
                    raise StoreFull(str(exc)) from exc
                if kind in (Kind.MOVED, Kind.ASK, Kind.NOSCRIPT):
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise RedisUnavailable(
                            describe(exc), maybe_applied=maybe_applied
                        ) from exc
                    if kind is Kind.NOSCRIPT:
                        failed = await self._load_scripts(
                            name, loads, deadline
                        )
                        if failed is not None:
                            last = failed
                            await self._pause(pauses, deadline)
                            pauses += 1
                    elif kind is Kind.ASK:
                        assert isinstance(exc, AskError)
                        asking = redirect_name(exc, name)
                    else:
                        assert isinstance(exc, AskError)
                        self._moved(exc, name)
                    continue
                if kind is Kind.LOST and call is not None and call.sent:
                    maybe_applied = True
                await self._failed(name, exc, kind)
                if maybe_applied and not resend:
                    raise RedisUnavailable(
                        describe(exc), maybe_applied=True
                    ) from exc
                await self._pause(pauses, deadline)
                pauses += 1
                # A pause paces what follows, so the redirects before it
                # were no loop: while a slot's keys move, Redis 6.2
                # answers ASK, then TRYAGAIN at the importing node, for
                # as long as the move takes; the deadline bounds that.
                redirects = 0
                continue
            self.outage.succeeded(name)
            return reply

    async def _load_scripts(
        self, name: str, loads: int, deadline: float
    ) -> BaseException | None:
        """Load the scripts into a node that answered ``NOSCRIPT`` (a
        restart, a promoted replica), within the call's deadline; the
        error when that failed (the call then tries again, or ends at its
        deadline as unavailable, never with a raw client error)."""
        try:
            await asyncio.wait_for(
                self._node(name).load_scripts(loads),
                max(0.0, deadline - time.monotonic()),
            )
        except Exception as exc:
            kind = classify(exc)
            if kind is Kind.BUG:
                raise
            if time.monotonic() < deadline:
                await self._failed(name, exc, kind)
            return exc
        return None

    async def _pause(self, pauses: int, deadline: float) -> None:
        """Wait before trying again: jittered backoff, within the deadline."""
        pause = backoff_s(pauses, BACKOFF_FIRST_S, BACKOFF_MAX_S, self._rng)
        await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    def _moved(self, exc: AskError, asked: str) -> None:
        if self._slots:
            self._slots[exc.slot_id] = redirect_name(exc, asked)
        self.refresh_soon()

    async def _failed(self, name: str, exc: BaseException, kind: Kind) -> None:
        self.outage.failed(name, exc)
        if kind is Kind.LOST:
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
            try:
                return await asyncio.wait_for(
                    node.batcher.execute(*args), deadline_s
                )
            except Exception as exc:
                await self._failed(node.name, exc, classify(exc))
                raise

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


def host_of(name: str) -> str:
    """The host part of a node name ``host:port``."""
    return name.rpartition(":")[0]


def redirect_name(exc: AskError, asked: str) -> str:
    """The node a ``MOVED`` or ``ASK`` points to; an empty host means the
    host of the node that was asked (Redis 7's ``cluster-preferred-
    endpoint-type unknown-endpoint``)."""
    return f"{exc.host or host_of(asked)}:{exc.port}"


def slot_map(reply: list[Any], asked_host: str) -> list[str] | None:
    """Node name per slot from a ``CLUSTER SLOTS`` reply; None if a slot
    is unserved (the cluster is not fully formed or is failing over).

    An empty or NULL host means the host of the node that was asked.
    """
    slots: list[str | None] = [None] * SLOTS
    for entry in reply:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        host = primary[0].decode() if primary[0] else asked_host
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
    return Connection(
        settings.redis_url,
        name,
        Limits.from_settings(settings),
        settings.seeds,
    )


class DeadlinePassed(TimeoutError):
    """A call's own deadline passed before its reply came.

    Its own class, not a clock comparison: a loop's timer may run a
    fraction of a millisecond before the deadline by ``time.monotonic``
    (uvloop rounds to milliseconds), and a plain ``TimeoutError`` is an
    ``OSError``, a lost connection, which drops the node's idle
    connections and looks for a new slot map.
    """


def _expire(future: asyncio.Future[Any]) -> None:
    """Fail the reply of a call whose deadline passed."""
    if not future.done():
        future.set_exception(DeadlinePassed("the call's deadline passed"))
