"""One Redis node: its connection pool, its batcher, its scripts.

The connection layer (:mod:`wheel.storage.connection`) keeps one
:class:`Node` per Redis server it talks to and routes each command to
the node that holds its key.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from wheel.settings import Settings
from wheel.storage.batcher import Batcher
from wheel.storage.errors import retrieve
from wheel.storage.scripts import SCRIPTS

SOCKET_TIMEOUT_S = 10.0
"""Longest wait for one reply before the connection counts as broken."""
POOL_WAIT_S = 10.0
"""How long a burst waits for a free pooled connection."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Connection bounds of one process, per node."""

    pool_size: int = 8
    in_flight: int = 4
    replica_acks: int = 0
    ack_timeout_ms: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """A few pipelines per node, a few spare connections, and the
        replica acknowledgements the settings ask for."""
        return cls(
            replica_acks=settings.replica_acks,
            # At least 1 ms (the settings' bound): WAIT 0 never returns.
            ack_timeout_ms=round(settings.replica_ack_timeout * 1000),
        )


class Node:
    """One Redis node: a blocking connection pool and its batcher."""

    def __init__(
        self, name: str, kwargs: dict[str, Any], limits: Limits
    ) -> None:
        self.name = name
        pool = BlockingConnectionPool(
            max_connections=limits.pool_size,
            timeout=POOL_WAIT_S,
            **kwargs,
        )
        self.client = Redis(connection_pool=pool)
        # Raw replies everywhere: storage/replies.py parses what it reads.
        self.client.response_callbacks.clear()
        self.batcher = Batcher(
            self.client,
            max_in_flight=limits.in_flight,
            replica_acks=limits.replica_acks,
            ack_timeout_ms=limits.ack_timeout_ms,
            reply_timeout_s=SOCKET_TIMEOUT_S,
        )
        self._loading: asyncio.Task[None] | None = None
        self.loads = 0
        """Script loads finished on this node so far."""

    async def load_scripts(self, seen: int | None = None) -> None:
        """Load every script into this node; concurrent callers share it.

        Args:
            seen: :attr:`loads` when the caller's command was sent. A
                load that finished since then already cured its
                ``NOSCRIPT`` (the command left before it), so the caller
                only sends again: one load however late the replies.
        """
        if seen is not None and self.loads > seen:
            return
        await asyncio.shield(self.start_loading())

    def start_loading(self) -> asyncio.Task[None]:
        """Start loading every script into this node, unless a load is
        under way; that load."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self._load())
            # A caller that gave up must not leave its error unseen.
            self._loading.add_done_callback(retrieve)
        return self._loading

    async def _load(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for script in SCRIPTS.values():
            pipe.execute_command("SCRIPT", "LOAD", script.source)
        await pipe.execute()
        self.loads += 1

    async def drop_idle(self) -> None:
        """Close the pooled connections not in use (they may be stale);
        best effort: a connection that fails to close is gone too."""
        pool = self.client.connection_pool
        with contextlib.suppress(Exception):
            await pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        """Wait for pipelines on the wire, then close every connection."""
        await self.batcher.aclose()
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
