"""Automatic pipelining to one Redis node, with bounds on pipelines and
on the queue.

Under load many callers await Redis at once. Sent one by one, each pays
redis-py's per-command overhead and a socket write; collected into one
pipeline they pay it once (``benchmarks/redis_calls.py``: about three
times the calls per second). Commands queued in one event-loop turn go
out together. At most ``max_in_flight`` pipelines are on the wire at
once: while Redis is slow (a ``CLIENT PAUSE``, a fork), new commands wait
in the queue and leave in one larger pipeline when one comes back,
instead of each opening a connection of its own. The queue is bounded
(:data:`MAX_QUEUED`): past it a call fails at once with
:class:`~wheel.storage.errors.Overloaded` instead of growing memory.

A call whose caller gave up (its future cancelled) or whose deadline
passed while it waited is never sent: after a pause of the node, the
queue must not deliver writes their callers already reported as failed.
Each call records whether it was written to the socket, so the
connection layer can tell "not applied" from "maybe applied".

With ``replica_acks`` set, commands needing acknowledgement go in
pipelines of their own that end with ``WAIT``, never mixed with reads,
claims or ticker calls (a ``WAIT`` holds its pipeline up to the ack
timeout). If fewer replicas confirm in time those commands fail with
:class:`~wheel.storage.errors.NotReplicated`, which carries their reply
(they did run on the master).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from wheel.storage.errors import NotReplicated, Overloaded, RedisUnavailable

MAX_BATCH = 1000
"""Most commands in one pipeline; a longer queue is split."""
MAX_QUEUED = 20_000
"""Most calls waiting for a pipeline, per node; past it calls fail at
once (a node that does not answer must not grow the process' memory)."""


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (RESP), ready for the socket.

    hiredis' packer, in C: this runs for every command of the service
    (redis-py's generic encoder was a sixth of a create's CPU time, and a
    packer in Python still took 32 us for a completion call of eight
    attempts, against 14 us here). Only bytes, str, int and float are
    sent.

    Raises:
        TypeError: an argument of any other type (``True``, ``None``):
            a caller's bug that Redis would store without a word.
    """
    return pack_command(args)


@dataclass(slots=True)
class Call:
    """One queued command and the future of its reply."""

    packed: bytes
    future: asyncio.Future[Any]
    deadline: float
    """Monotonic time after which it is no longer sent."""
    ack: bool = False
    asking: bool = False
    """Preceded by ``ASKING`` on the same connection (a migrating slot)."""
    sent: bool = False
    """Written to a connection: from then on it may have run."""


ASKING = pack(("ASKING",))


@dataclass
class Batcher:
    """Sends the commands of one node in bounded, automatic pipelines."""

    redis: Redis
    max_in_flight: int = 4
    replica_acks: int = 0
    ack_timeout_ms: int = 1000
    reply_timeout_s: float = 10.0
    max_acked_in_flight: int = 2
    max_queued: int = MAX_QUEUED
    _plain: collections.deque[Call] = field(default_factory=collections.deque)
    _acked: collections.deque[Call] = field(default_factory=collections.deque)
    _in_flight: int = 0
    _acked_in_flight: int = 0
    _scheduled: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def execute(self, *args: Any, ack: bool = False) -> asyncio.Future[Any]:
        """Queue a command; the future resolves to its raw reply."""
        return self.submit(args, ack=ack).future

    def submit(
        self,
        args: tuple[Any, ...],
        *,
        ack: bool = False,
        deadline: float = math.inf,
        asking: bool = False,
    ) -> Call:
        """Queue a command; the call's future resolves to its raw reply.

        Raises:
            TypeError: an argument Redis cannot be sent (see :func:`pack`),
                at once, before anything is queued.
            Overloaded: :data:`MAX_QUEUED` calls wait already.
        """
        if len(self._plain) + len(self._acked) >= self.max_queued:
            raise Overloaded(
                f"{self.max_queued} calls already wait for this Redis node"
            )
        packed = pack(args)
        loop = asyncio.get_running_loop()
        acked = ack and self.replica_acks > 0
        call = Call(packed, loop.create_future(), deadline, acked, asking)
        (self._acked if acked else self._plain).append(call)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return call

    @property
    def queued(self) -> int:
        """Commands waiting for a pipeline."""
        return len(self._plain) + len(self._acked)

    def _flush(self) -> None:
        self._scheduled = False
        while self._plain and self._in_flight < self.max_in_flight:
            batch = self._take(self._plain)
            if batch:
                self._in_flight += 1
                self._start(batch, wait=False)
        while self._acked and self._acked_in_flight < self.max_acked_in_flight:
            batch = self._take(self._acked)
            if batch:
                self._acked_in_flight += 1
                self._start(batch, wait=True)

    @staticmethod
    def _take(queue: collections.deque[Call]) -> list[Call]:
        """Up to :data:`MAX_BATCH` calls from the head of ``queue`` that
        are still wanted; the others are dropped (never sent)."""
        now = time.monotonic()
        batch: list[Call] = []
        while queue and len(batch) < MAX_BATCH:
            call = queue.popleft()
            if _wanted(call, now):
                batch.append(call)
        return batch

    def _start(self, batch: list[Call], wait: bool) -> None:
        task = asyncio.create_task(self._send(batch, wait))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Call], wait: bool) -> None:
        try:
            await self._pipeline(batch, wait)
        finally:
            if wait:
                self._acked_in_flight -= 1
            else:
                self._in_flight -= 1
            if (self._plain or self._acked) and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def _pipeline(self, batch: list[Call], wait: bool) -> None:
        try:
            replies, batch = await self._roundtrip(batch, wait)
        except asyncio.CancelledError:
            for call in batch:
                call.future.cancel()
            raise
        except Exception as exc:
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        confirmed = replies.pop() if wait else 0
        short = wait and (
            isinstance(confirmed, Exception) or confirmed < self.replica_acks
        )
        replies.reverse()
        for call in batch:
            if call.asking:
                replies.pop()  # ASKING's OK
            reply = replies.pop()
            if call.future.done():
                continue
            if isinstance(reply, Exception):
                call.future.set_exception(reply)
            elif short:
                count = confirmed if isinstance(confirmed, int) else 0
                call.future.set_exception(
                    NotReplicated(count, self.replica_acks, reply)
                )
            else:
                call.future.set_result(reply)

    async def _roundtrip(
        self, batch: list[Call], wait: bool
    ) -> tuple[list[Any], list[Call]]:
        """Send the calls of ``batch`` still wanted once a pooled
        connection is free (waiting for one may outlast their callers);
        their replies (or error replies), ``WAIT``'s last, and the calls
        sent. A transport failure disconnects that connection (its state
        is unknown) and raises."""
        pool = self.redis.connection_pool
        connection = await pool.get_connection()
        try:
            now = time.monotonic()
            batch = [call for call in batch if _wanted(call, now)]
            commands: list[bytes] = []
            for call in batch:
                call.sent = True
                if call.asking:
                    commands.append(ASKING)
                commands.append(call.packed)
            if not commands:
                return ([0] if wait else []), batch
            if wait:
                commands.append(
                    pack(("WAIT", self.replica_acks, self.ack_timeout_ms))
                )
            await connection.send_packed_command(b"".join(commands))
            replies: list[Any] = []
            # One deadline for the whole pipeline's replies, rather than
            # a timeout context per reply (a tenth of a create's time).
            async with asyncio.timeout(self.reply_timeout_s):
                for _ in commands:
                    try:
                        replies.append(
                            await connection.read_response(timeout=math.inf)
                        )
                    except ResponseError as exc:
                        replies.append(exc)
            return replies, batch
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    async def aclose(self) -> None:
        """Wait for the pipelines on the wire (queued commands stay)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _wanted(call: Call, now: float) -> bool:
    """Whether a queued call is still to be sent; fails one whose deadline
    passed in the queue (its caller is told it was never sent)."""
    if call.future.done():
        return False  # the caller gave up
    if call.deadline <= now:
        call.future.set_exception(
            RedisUnavailable("not sent: its deadline passed in the queue")
        )
        return False
    return True
