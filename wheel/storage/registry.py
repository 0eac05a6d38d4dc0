"""The deployment's global keys: who is alive, and what the deployment is.

* Heartbeats: a sorted set per role (member ``host:pid:random`` scored by
  Redis' time of its last beat). Tickers and workers share shards among
  the fresh members; health checks look for their own host.
* Identity: the key prefix and shard count, written on first start. A
  process whose settings disagree refuses to start: an API writing 32
  shards that tickers at 16 never advance would lose timers silently.
  A hash of every prefix in the Redis helps an operator spot a process
  started with the wrong ``WHEEL_KEY_PREFIX``.

Each key stands alone (in a cluster, on the node of its own slot).
"""

from __future__ import annotations

import logging

from wheel.settings import Settings
from wheel.storage.connection import Connection
from wheel.storage.errors import StoreFull
from wheel.storage.keys import DEPLOYMENTS, SCHEMA, Keys
from wheel.storage.scripts import SCRIPTS

log = logging.getLogger(__name__)


class IdentityError(RuntimeError):
    """This process' settings disagree with the deployment in Redis."""


class Registry:
    """Heartbeats and identity of one deployment."""

    def __init__(self, connection: Connection, settings: Settings) -> None:
        self.connection = connection
        self.settings = settings
        self.keys = Keys(settings.key_prefix, settings.shards)

    async def beat(
        self, role: str, member: str, ttl_ms: int, deadline_s: float = 2.0
    ) -> list[str]:
        """Mark ``member`` alive; the fresh members of ``role``."""
        key = self.keys.heartbeats(role)
        reply = await self.connection.script(
            SCRIPTS["beat"], [key], [member, ttl_ms], deadline_s=deadline_s
        )
        return [m.decode() for m in reply[1:]]

    async def leave(self, role: str, member: str) -> None:
        """Leave the role's registry at once (a graceful stop)."""
        key = self.keys.heartbeats(role)
        await self.connection.call(key, "ZREM", key, member, deadline_s=2.0)

    async def members(self, role: str) -> list[tuple[str, int]]:
        """Every registered member of ``role`` with its last beat ms."""
        key = self.keys.heartbeats(role)
        reply = await self.connection.call(
            key, "ZRANGE", key, 0, -1, "WITHSCORES"
        )
        return [
            (reply[i].decode(), int(float(reply[i + 1])))
            for i in range(0, len(reply), 2)
        ]

    async def now_ms(self, key: bytes) -> int:
        """Redis' time on the node that holds ``key``."""
        seconds, micros = await self.connection.call(key, "TIME")
        return int(seconds) * 1000 + int(micros) // 1000

    async def _refuse_legacy(self) -> None:
        from wheel.storage.legacy import pending_migration
        from wheel.storage.shards import ShardQueue

        if await pending_migration(ShardQueue(self.connection, self.settings)):
            raise IdentityError(
                "this Redis holds timers of the previous key layout "
                f"(prefix {self.settings.key_prefix!r}): stop the old "
                "processes and run `timer-wheel migrate` first"
            )

    async def check_identity(self) -> None:
        """Record this deployment's identity, or refuse a mismatch.

        Raises:
            IdentityError: naming the setting that disagrees.
        """
        meta = self.keys.meta
        shards = str(self.settings.shards)
        prefix = self.settings.key_prefix
        # Read first and write only what is missing: a process restarted
        # while Redis is full (refusing writes) can still start.
        stored = await self.connection.call(
            meta, "HMGET", meta, "shards", "schema"
        )
        if None in stored:
            await self._refuse_legacy()
            await self.connection.call(meta, "HSETNX", meta, "shards", shards)
            await self.connection.call(meta, "HSETNX", meta, "schema", SCHEMA)
            stored = await self.connection.call(
                meta, "HMGET", meta, "shards", "schema"
            )
        stored_shards, stored_schema = (v.decode() for v in stored)
        if stored_shards != shards:
            raise IdentityError(
                f"WHEEL_SHARDS is {shards}, but the deployment with key "
                f"prefix {prefix!r} in this Redis has {stored_shards} "
                "shards; every process must use the same count (changing "
                "it needs a migration, see the README)"
            )
        if stored_schema != SCHEMA:
            raise IdentityError(
                f"the deployment with key prefix {prefix!r} uses key "
                f"layout {stored_schema}, this release {SCHEMA}: run "
                "`timer-wheel migrate` first (see the README)"
            )
        known = await self.connection.call(DEPLOYMENTS, "HGETALL", DEPLOYMENTS)
        others = {
            known[i].decode(): known[i + 1].decode()
            for i in range(0, len(known), 2)
            if known[i].decode() != prefix
        }
        registered = prefix.encode() in known[::2]
        if registered:
            return
        try:
            added = await self.connection.call(
                DEPLOYMENTS, "HSETNX", DEPLOYMENTS, prefix, shards
            )
        except StoreFull:
            return
        if added and others:
            log.warning(
                "new deployment next to others in this Redis",
                extra={
                    "key_prefix": prefix,
                    "other_prefixes": sorted(others),
                    "hint": "set WHEEL_KEY_PREFIX to join one of them",
                },
            )
