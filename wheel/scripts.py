"""The Lua scripts, read once from ``lua/``, and their typed wrappers.

Each wrapper shares its script's verb and decodes its reply; the keys and
arguments follow the contract header of the ``.lua`` file.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from wheel.batcher import Batcher
from wheel.keys import GROUP, ShardKeys

DEAD_LETTER_MAXLEN = 10_000
"""Approximate cap on each shard's dead-letter stream."""


def _read(name: str) -> str:
    return (resources.files("wheel") / "lua" / f"{name}.lua").read_text()


SOURCES: dict[str, str] = {
    name: _read(name)
    for name in (
        "create",
        "get",
        "advance",
        "acquire",
        "release",
        "beat",
        "claim",
        "complete",
    )
}


@dataclass(frozen=True, slots=True)
class Created:
    """Reply of ``create``: code 1 created, 0 exists, -1 slot misfit."""

    code: int
    now_ms: int
    due_ms: int


@dataclass(frozen=True, slots=True)
class Record:
    """A timer's record as ``get`` reads it."""

    now_ms: int
    due_ms: int
    state: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Advanced:
    """Reply of ``advance``: moved is -1 when the lease is not ours."""

    moved: int
    now_ms: int
    next_due_ms: int


@dataclass(frozen=True, slots=True)
class Claim:
    """One entry's verdict from ``claim``: fire, skip, busy or dead."""

    verdict: str
    url: str = ""
    attempt: int = 0


class Scripts:
    """The scripts of one Redis client, called through one :class:`Batcher`.

    Each script's SHA1 is computed once; calls are ``EVALSHA`` queued on the
    batcher, so concurrent calls share round trips. When Redis answers
    ``NOSCRIPT`` (it restarted, or its script cache was flushed) every
    script is loaded again and the call is retried once.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.batcher = Batcher(redis)
        self._sha = {
            name: hashlib.sha1(source.encode()).hexdigest()
            for name, source in SOURCES.items()
        }

    async def load(self) -> None:
        """Load every script into Redis' script cache."""
        await asyncio.gather(
            *(self.redis.script_load(source) for source in SOURCES.values())
        )

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        command = ("EVALSHA", self._sha[name], len(keys), *keys, *args)
        try:
            return await self.batcher.execute(*command)
        except NoScriptError:
            await self.load()
            return await self.batcher.execute(*command)

    async def create(
        self,
        shard: ShardKeys,
        timer_id: str,
        url: str,
        minute: int,
        delay_ms: int,
    ) -> Created:
        """Store a timer due in ``delay_ms`` in slot ``minute``."""
        reply = await self._run(
            "create",
            [
                shard.timer(timer_id),
                shard.slot(minute),
                shard.slots,
                shard.ready,
            ],
            [timer_id, url, minute, delay_ms],
        )
        return Created(int(reply[0]), int(reply[1]), int(reply[2]))

    async def get(
        self, shard: ShardKeys, timer_id: str
    ) -> tuple[int, Record | None]:
        """Redis' time and the timer's record (None when there is none)."""
        reply = await self._run("get", [shard.timer(timer_id)], [])
        now_ms = int(reply[0])
        if len(reply) == 1:
            return now_ms, None
        return now_ms, Record(
            now_ms, int(reply[1]), str(reply[2]), int(reply[3])
        )

    async def advance(
        self, shard: ShardKeys, token: str, minutes: list[int], limit: int
    ) -> Advanced:
        """Move due ids of ``minutes``' slots to the ready stream."""
        reply = await self._run(
            "advance",
            [shard.lease, shard.slots, shard.ready]
            + [shard.slot(m) for m in minutes],
            [token, limit, *minutes],
        )
        return Advanced(int(reply[0]), int(reply[1]), int(reply[2]))

    async def acquire(self, lease_key: str, token: str, ttl_ms: int) -> bool:
        """Take or extend a lease; whether it is held afterwards."""
        return bool(await self._run("acquire", [lease_key], [token, ttl_ms]))

    async def release(self, lease_key: str, token: str) -> bool:
        """Drop a lease if ``token`` owns it; whether it was released."""
        return bool(await self._run("release", [lease_key], [token]))

    async def beat(
        self, registry_key: str, member: str, ttl_ms: int
    ) -> list[str]:
        """Mark ``member`` alive; return the live members."""
        reply = await self._run("beat", [registry_key], [member, ttl_ms])
        return [str(m) for m in reply]

    async def claim(
        self,
        shard: ShardKeys,
        entries: list[tuple[str, str]],
        max_attempts: int,
        hold_ms: int,
        retention_ms: int,
    ) -> list[Claim]:
        """Claim ``(entry id, timer id)`` pairs; one verdict each."""
        reply = await self._run(
            "claim",
            [shard.ready, shard.dead]
            + [shard.timer(timer_id) for _, timer_id in entries],
            [
                GROUP,
                max_attempts,
                hold_ms,
                retention_ms,
                DEAD_LETTER_MAXLEN,
                *(entry for entry, _ in entries),
                *(timer_id for _, timer_id in entries),
            ],
        )
        return [
            Claim(str(r[0]), str(r[1]), int(r[2]))
            if len(r) == 3
            else Claim(str(r[0]))
            for r in reply
        ]

    async def complete(
        self,
        shard: ShardKeys,
        entry_id: str,
        timer_id: str,
        attempt: int,
        outcome: str,
        result: str,
        retention_ms: int,
        retry_delay_ms: int = 0,
        retry_minute: int = 0,
    ) -> tuple[int, int]:
        """Record an attempt's outcome; returns (code, Redis now ms)."""
        reply = await self._run(
            "complete",
            [
                shard.ready,
                shard.timer(timer_id),
                shard.dead,
                shard.slots,
                shard.slot(retry_minute),
            ],
            [
                GROUP,
                entry_id,
                attempt,
                outcome,
                result,
                retry_delay_ms,
                retry_minute,
                retention_ms,
                timer_id,
                DEAD_LETTER_MAXLEN,
            ],
        )
        return int(reply[0]), int(reply[1])
