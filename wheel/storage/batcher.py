"""Automatic pipelining to one Redis node, with a bound on pipelines.

Under load many callers await Redis at once. Sent one by one, each pays
redis-py's per-command overhead and a socket write; collected into one
pipeline they pay it once (``benchmarks/redis_calls.py``: about three
times the calls per second). Commands queued in one event-loop turn go
out together. At most ``max_in_flight`` pipelines are on the wire at
once: while Redis is slow (a ``CLIENT PAUSE``, a fork), new commands wait
in the queue and leave in one larger pipeline when a slot frees, instead
of each opening a connection of its own.

With ``replica_acks`` set, a pipeline that carries a command needing
acknowledgement ends with ``WAIT``; if fewer replicas confirm in time,
those commands fail with :class:`NotReplicated` (they did run on the
master).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from wheel.storage.errors import NotReplicated

MAX_BATCH = 1000
"""Most commands in one pipeline; a longer queue is split."""


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (RESP), ready for the socket.

    Written here rather than with redis-py's packer: this runs for every
    command of the service, and redis-py's generic encoder was a sixth of
    a create's CPU time. Only bytes, str, int and float are sent.

    Raises:
        TypeError: an argument of any other type (``True``, ``None``).
    """
    out = [b"*%d\r\n" % len(args)]
    add = out.append
    for value in args:
        kind = type(value)
        if kind is bytes:
            data = value
        elif kind is str:
            data = value.encode()
        elif kind is int:
            data = b"%d" % value
        elif kind is float:
            data = repr(value).encode()
        else:
            # A bool would go out as "True", None as "None": a caller's
            # bug that Redis would store without a word.
            raise TypeError(
                f"cannot send a {kind.__name__} to Redis: {value!r}"
            )
        add(b"$%d\r\n" % len(data))
        add(data)
        add(b"\r\n")
    return b"".join(out)


@dataclass(slots=True)
class Call:
    """One queued command and the future of its reply."""

    packed: bytes
    future: asyncio.Future[Any]
    ack: bool = False


@dataclass
class Batcher:
    """Sends the commands of one node in bounded, automatic pipelines."""

    redis: Redis
    max_in_flight: int = 4
    replica_acks: int = 0
    ack_timeout_ms: int = 1000
    reply_timeout_s: float = 10.0
    _queue: list[Call] = field(default_factory=list)
    _in_flight: int = 0
    _scheduled: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def execute(self, *args: Any, ack: bool = False) -> asyncio.Future[Any]:
        """Queue a command; the future resolves to its raw reply.

        Raises:
            TypeError: an argument Redis cannot be sent (see :func:`pack`),
                at once, before anything is queued.
        """
        packed = pack(args)
        loop = asyncio.get_running_loop()
        call = Call(
            packed, loop.create_future(), ack and self.replica_acks > 0
        )
        self._queue.append(call)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return call.future

    @property
    def queued(self) -> int:
        """Commands waiting for a pipeline."""
        return len(self._queue)

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue and self._in_flight < self.max_in_flight:
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            self._in_flight += 1
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Call]) -> None:
        try:
            await self._pipeline(batch)
        finally:
            self._in_flight -= 1
            if self._queue and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def _pipeline(self, batch: list[Call]) -> None:
        commands = [call.packed for call in batch]
        wait = any(call.ack for call in batch)
        if wait:
            commands.append(
                pack(("WAIT", self.replica_acks, self.ack_timeout_ms))
            )
        try:
            replies = await self._roundtrip(commands)
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
        for call, reply in zip(batch, replies, strict=True):
            if call.future.done():
                continue
            if isinstance(reply, Exception):
                call.future.set_exception(reply)
            elif call.ack and short:
                count = confirmed if isinstance(confirmed, int) else 0
                call.future.set_exception(
                    NotReplicated(count, self.replica_acks)
                )
            else:
                call.future.set_result(reply)

    async def _roundtrip(self, commands: list[bytes]) -> list[Any]:
        """Send ``commands`` on one pooled connection; one reply (or
        error reply) each. A transport failure disconnects that connection
        (its state is unknown) and raises."""
        pool = self.redis.connection_pool
        connection = await pool.get_connection()
        try:
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
            return replies
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    async def aclose(self) -> None:
        """Wait for the pipelines on the wire (queued commands stay)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
