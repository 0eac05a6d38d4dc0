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
import random
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from wheel.storage.connection import Connection
from wheel.storage.errors import REDIS_ERRORS
from wheel.storage.keys import Keys, ShardKeys

log = logging.getLogger(__name__)

POLL_S = 0.5
"""How often a worker reads each of its shards with no doorbell."""
RECONNECT_S = 1.0


async def ring(
    connection: Connection, keys: Keys, shards: Sequence[ShardKeys]
) -> None:
    """Tell the workers that ``shards`` have new ready entries.

    Published on the node of the first shard (in a cluster a ``PUBLISH``
    on any node reaches every node's subscribers): the ticker rings for
    the shards of one node, which just answered, so a doorbell key on a
    node that is down never holds a tick up.
    """
    payload = b",".join(b"%d" % shard.shard for shard in shards)
    await connection.call(
        shards[0].ready, "PUBLISH", keys.doorbell, payload, deadline_s=1.0
    )


class Doorbell:
    """Listens on the channel; calls ``on_ring`` with shard numbers.

    ``on_ring(None)`` means "maybe anything": after (re)subscribing,
    messages may have been missed. ``on_error`` is told of an error that
    is not Redis' own (a bug); the doorbell then listens again.
    """

    def __init__(
        self,
        connection: Connection,
        keys: Keys,
        on_ring: Callable[[list[int] | None], None],
        on_error: Callable[[str, Exception], None],
    ) -> None:
        self.connection = connection
        self.keys = keys
        self.on_ring = on_ring
        self.on_error = on_error
        # Each worker starts on a node of its own choosing: a node that
        # stops without closing its connections (no error comes) leaves
        # only its own listeners to the poll, not the whole fleet.
        self._turn = random.randrange(1 << 16)

    async def listen(self, stop: asyncio.Event) -> None:
        """Listen until ``stop``, resubscribing after any error (on the
        next primary: in a cluster every node carries every message, and
        the one that failed may stay down)."""
        while not stop.is_set():
            try:
                await self._listen_once(stop)
            except REDIS_ERRORS as exc:
                self._turn += 1
                log.debug("doorbell lost", extra={"error": str(exc)})
            except Exception as exc:
                # Listening again rather than ending for good.
                self.on_error("doorbell", exc)
            if not stop.is_set():
                await asyncio.sleep(RECONNECT_S)

    async def _listen_once(self, stop: asyncio.Event) -> None:
        await self.connection.start()
        primaries = self.connection.primaries()
        node = primaries[self._turn % len(primaries)]
        client: Redis = node.client
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
                    # Only the tickers publish here; anything else on the
                    # channel is ignored (the poll still finds the work).
                    shards = [
                        int(part)
                        for part in data.split(b",")
                        if part.isdigit()
                    ]
                    if shards:
                        self.on_ring(shards)
        finally:
            await pubsub.aclose()
