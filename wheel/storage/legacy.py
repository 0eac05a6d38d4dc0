"""``timer-wheel migrate``: move timers of the first key layout into this
one, in place, in the same Redis.

The first layout (releases before the hierarchical wheel) kept a timer as
a hash ``{<prefix>:<shard>}:t:<uuid>`` with ``url``, ``due``, ``state``
and ``attempts``. Every such record is carried over with its id:

* pending (on the wheel or in a ready stream) and firing timers are
  created again due at their old due time (at once when it has passed);
  a firing one may therefore be sent a second time, as after a worker
  crash; their attempt count starts again;
* fired and failed records become finished records, readable for what
  was left of their retention;
* dead letters are carried over with the url of their record when it is
  still there.

Each old record is deleted only after its new one is written, and
creating an id that exists already is a replay (nothing doubles), so a
migration cut short can simply be run again. Stop every process of the
old release first; start the new one after.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from wheel.core import ids
from wheel.core.states import TimerState, state_code
from wheel.storage.keys import LegacyKeys
from wheel.storage.replies import Record
from wheel.storage.scripts import SCRIPTS
from wheel.storage.shards import DEAD_LETTER_MAXLEN, ShardQueue

log = logging.getLogger(__name__)

SCAN_COUNT = 1000
PROGRESS_EVERY = 10_000
_STATES = {
    "fired": TimerState.FIRED,
    "failed": TimerState.FAILED,
}


def _text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


async def pending_migration(queue: ShardQueue) -> bool:
    """Whether this Redis holds timers of the first layout."""
    if queue.connection.cluster:
        return False  # the first layout never ran on a cluster
    marker = LegacyKeys(queue.settings.key_prefix).marker()
    return bool(await queue.connection.call(marker, "EXISTS", marker))


async def migrate(queue: ShardQueue) -> dict[str, int]:
    """Carry every old record over; counts of what was done."""
    legacy = LegacyKeys(queue.settings.key_prefix)
    connection = queue.connection
    link = connection.primaries()[0].client
    counts = {"pending": 0, "finished": 0, "dead_letters": 0, "skipped": 0}
    shards: set[int] = set()
    # Dead letters first: their urls are in records not yet deleted.
    for stream in await _scan(link, legacy.dead_streams()):
        counts["dead_letters"] += await _dead_letters(queue, stream)
    cursor: Any = 0
    started = time.monotonic()
    while True:
        cursor, keys = await link.execute_command(
            "SCAN", cursor, "MATCH", legacy.records(), "COUNT", SCAN_COUNT
        )
        await asyncio.gather(
            *(_one(queue, key, counts, shards) for key in keys)
        )
        done = sum(counts.values())
        if done and done % PROGRESS_EVERY < len(keys):
            log.info(
                "migrating",
                extra={**counts, "s": round(time.monotonic() - started)},
            )
        if int(cursor) == 0:
            break
    for shard in sorted(shards | {0}):
        await _drop_shard(queue, legacy, shard)
    return counts


async def _scan(link: Any, pattern: str) -> list[bytes]:
    found: list[bytes] = []
    cursor: Any = 0
    while True:
        cursor, keys = await link.execute_command(
            "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT
        )
        found += keys
        if int(cursor) == 0:
            return found


async def _one(
    queue: ShardQueue, key: bytes, counts: dict[str, int], shards: set[int]
) -> None:
    connection = queue.connection
    fields = await connection.call(key, "HGETALL", key)
    record = {
        fields[i].decode(): fields[i + 1] for i in range(0, len(fields), 2)
    }
    tag, _, text_id = key.decode().rpartition(":t:")
    shards.add(int(tag.rsplit(":", 1)[1].rstrip("}")))
    try:
        timer_id = uuid.UUID(text_id).bytes
        url, due_ms = _text(record["url"]), int(record["due"])
    except (KeyError, ValueError):
        counts["skipped"] += 1
        return
    state = _text(record.get("state"))
    now_ms = queue.clocks.now_ms(ids.shard_of(timer_id, queue.keys.shards))
    if state in _STATES:
        ttl_ms = await connection.call(key, "PTTL", key)
        finished = Record(
            _STATES[state],
            due_ms,
            int(record.get("attempts") or 0),
            now_ms,
            finished_ms=int(record.get("finished") or now_ms),
            result=_text(record.get("result")).removeprefix("HTTP "),
        )
        await import_finished(queue, timer_id, finished, max(ttl_ms, 60_000))
        counts["finished"] += 1
    else:
        await queue.create(url, max(0, due_ms - now_ms), timer_id=timer_id)
        counts["pending"] += 1
    await connection.call(key, "DEL", key)


async def _dead_letters(queue: ShardQueue, stream: bytes) -> int:
    connection = queue.connection
    entries = await connection.call(stream, "XRANGE", stream, "-", "+")
    tag = stream.decode().rpartition(":dead")[0]
    for _, fields in entries:
        values = {
            fields[i].decode(): fields[i + 1].decode()
            for i in range(0, len(fields), 2)
        }
        record = f"{tag}:t:{values['id']}".encode()
        url = await connection.call(record, "HGET", record, "url")
        await _import_dead_letter(
            queue,
            uuid.UUID(values["id"]).bytes,
            _text(url),
            int(values.get("attempts", 0)),
            values.get("error", "").removeprefix("HTTP "),
            int(values.get("at", 0)),
        )
    return len(entries)


async def _drop_shard(
    queue: ShardQueue, legacy: LegacyKeys, shard: int
) -> None:
    connection = queue.connection
    link = connection.primaries()[0].client
    names = [*legacy.shard_keys(shard), legacy.dead(shard)]
    names += [b.decode() for b in await _scan(link, legacy.buckets(shard))]
    for name in names:
        await connection.call(name.encode(), "DEL", name)


async def import_finished(
    queue: ShardQueue, timer_id: bytes, record: Record, ttl_ms: int
) -> None:
    """Write a finished record as-is (migration from an older layout)."""
    shard = queue.shard_of(timer_id)
    key = queue.finished_key(shard, timer_id)
    finished_ms = record.finished_ms or record.now_ms
    packed = (
        f"{state_code(record.state)}{record.attempts},{record.due_ms},"
        f"{finished_ms - record.due_ms},{record.result}"
    )
    await queue.connection.script(
        SCRIPTS["import_finished"],
        [key, shard.finished_hours, shard.finished_expiry],
        [timer_id, packed, ttl_ms, ids.finished_hour(timer_id)],
    )


async def _import_dead_letter(
    queue: ShardQueue,
    timer_id: bytes,
    url: str,
    attempts: int,
    error: str,
    at_ms: int,
) -> None:
    """Add a dead letter as-is (migration from an older layout)."""
    dead = queue.shard_of(timer_id).dead
    await queue.connection.call(
        dead,
        "XADD",
        dead,
        "MAXLEN",
        "~",
        DEAD_LETTER_MAXLEN,
        "*",
        "i",
        timer_id,
        "u",
        url,
        "a",
        attempts,
        "e",
        error,
        "t",
        at_ms,
    )
