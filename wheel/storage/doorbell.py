"""The doorbell: tickers tell workers which ready streams just got entries.

Workers read their shards without blocking (a blocking read per shard
would hold a connection per shard, and a cluster cannot block on streams
of two slots in one call). So that an idle worker still reads a new
entry within about a millisecond, the ticker publishes the shard numbers
on a pub/sub channel after moving entries, and every worker listens on
one connection. A missed message costs latency only: workers also poll
each shard they own every :data:`POLL_S`.

In a cluster, ``PUBLISH`` on any node reaches subscribers on every node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from wheel.storage.connection import Connection
from wheel.storage.keys import Keys, ShardKeys

log = logging.getLogger(__name__)

POLL_S = 0.5
"""How often a worker reads each of its shards with no doorbell."""
RECONNECT_S = 1.0


async def ring(
    connection: Connection, keys: Keys, shards: Iterable[ShardKeys]
) -> None:
    """Tell the workers that ``shards`` have new ready entries."""
    payload = b",".join(b"%d" % shard.shard for shard in shards)
    await connection.call(
        keys.doorbell, "PUBLISH", keys.doorbell, payload, deadline_s=1.0
    )


class Doorbell:
    """Listens on the channel; calls ``on_ring`` with shard numbers.

    ``on_ring(None)`` means "maybe anything": after (re)subscribing,
    messages may have been missed.
    """

    def __init__(
        self,
        connection: Connection,
        keys: Keys,
        on_ring: Callable[[list[int] | None], None],
    ) -> None:
        self.connection = connection
        self.keys = keys
        self.on_ring = on_ring

    async def listen(self, stop: asyncio.Event) -> None:
        """Listen until ``stop``, resubscribing after any error."""
        while not stop.is_set():
            try:
                await self._listen_once(stop)
            except (RedisError, OSError) as exc:
                log.debug("doorbell lost", extra={"error": str(exc)})
            if not stop.is_set():
                await asyncio.sleep(RECONNECT_S)

    async def _listen_once(self, stop: asyncio.Event) -> None:
        await self.connection.start()
        link = self.connection.primaries()[0]
        client: Redis = link.client
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.keys.doorbell)
            self.on_ring(None)
            while not stop.is_set():
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=POLL_S
                )
                if message is None:
                    continue
                data = message.get("data")
                if isinstance(data, bytes):
                    self.on_ring([int(part) for part in data.split(b",")])
        finally:
            await pubsub.aclose()
