"""ShardQueue: every Redis command of a shard, in one place.

The life of a timer is the set of ways its shard's keys change, and each
is a method here: ``create``, ``get``, ``cancel`` (the API);
``peek``, ``advance``, ``cascade`` and the lease (the ticker); ``read``,
``claim``, ``complete``, ``requeue``, ``reclaim`` (the worker). Each
script's reply is decoded into a small frozen dataclass; callers never
spell a command. A reader finds every write to a shard here and in
``lua/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wheel import ids
from wheel.buckets import (
    MINUTE_MS,
    Bucket,
    Level,
    minute_of,
    place_numbers,
)
from wheel.connection import Connection, StoreFull
from wheel.keys import GROUP, Keys, ShardKeys
from wheel.scripts import SCRIPTS
from wheel.settings import Settings
from wheel.states import (
    STATE_OF_CODE,
    Code,
    Outcome,
    TimerState,
    Verdict,
    state_code,
)

DEAD_LETTER_MAXLEN = 10_000
"""Approximate cap on each shard's dead-letter stream."""
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
"""How long an ``Idempotency-Key`` keeps mapping to its timer."""
RESULT_CHARS = 200
"""Most characters of an attempt's error kept in a record."""


def _int(value: Any) -> int:
    return int(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Created:
    """Reply of ``create``."""

    code: Code
    timer_id: bytes
    due_ms: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class Record:
    """A timer as ``get`` reads it (from its record or finished record)."""

    state: TimerState
    due_ms: int
    attempts: int
    now_ms: int
    next_ms: int | None = None
    finished_ms: int | None = None
    result: str = ""


@dataclass(frozen=True, slots=True)
class Advanced:
    """Reply of ``advance``: ids moved; more due ids left behind; the
    earliest due time left in the buckets (None when they are empty)."""

    code: Code
    moved: int
    more: bool
    now_ms: int
    next_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Cascaded:
    """Reply of ``cascade``: members moved and still in the bucket."""

    code: Code
    moved: int
    left: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One ready-stream entry: its stream id, timer id and schedule."""

    entry_id: bytes
    timer_id: bytes
    sched_ms: int


@dataclass(frozen=True, slots=True)
class Claim:
    """The claim script's verdict on one entry."""

    verdict: Verdict
    url: str = ""
    attempt: int = 0
    due_ms: int = 0
    wait_ms: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a finished webhook attempt reports to ``complete``."""

    entry: Entry
    attempt: int
    outcome: Outcome
    result: str
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A timer that failed, as its shard's dead-letter stream keeps it."""

    entry_id: bytes
    timer_id: bytes
    url: str
    attempts: int
    error: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Survey:
    """Figures of one shard; ``earliest_due_ms`` of a timer due or on its
    way (None when the shard has nothing in minute buckets or streams)."""

    unfinished: int
    ready: int
    in_flight: int
    earliest_due_ms: int | None
    dead_letters: int


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A create's ``Idempotency-Key``: its digest and the request's."""

    key_digest: bytes
    fingerprint: bytes

    def shard(self, shards: int) -> int:
        """The shard of the key's record and of the timer it creates."""
        return int.from_bytes(self.key_digest[:8], "big") % shards


class ShardClocks:
    """Redis' time per shard, estimated from the times Redis returns.

    Each shard lives on one node, so this is the clock of the node that
    holds the shard, kept as an offset from this host's monotonic clock
    (a step of the host's wall clock does not move it). Before any reply
    the host's wall clock stands in: the scripts never trust the
    estimate, it names bucket keys and tells the ticker when to look.
    """

    def __init__(self, shards: int) -> None:
        start = int((time.time() - time.monotonic()) * 1000)
        self._offset_ms = [start] * shards

    def observe(self, shard: int, redis_ms: int) -> None:
        """Record a time the shard's node reported."""
        self._offset_ms[shard] = redis_ms - int(time.monotonic() * 1000)

    def now_ms(self, shard: int) -> int:
        """The estimated Redis time of ``shard``'s node, epoch ms."""
        return int(time.monotonic() * 1000) + self._offset_ms[shard]


class ShardQueue:
    """The shards of one deployment, through one :class:`Connection`."""

    def __init__(self, connection: Connection, settings: Settings) -> None:
        self.connection = connection
        self.settings = settings
        self.keys = Keys(settings.key_prefix, settings.shards)
        self.clocks = ShardClocks(settings.shards)
        self.ids = ids.IdSource()
        self._retention_ms = int(settings.retention * 1000)
        self._hold_ms = int(settings.reclaim_idle * 1000)

    def shard_of(self, timer_id: bytes) -> ShardKeys:
        """The keys of the shard that owns ``timer_id``."""
        return self.keys.shard(ids.shard_of(timer_id, self.settings.shards))

    def _finished_key(self, shard: ShardKeys, timer_id: bytes) -> bytes:
        return shard.finished(ids.finished_hour(timer_id))

    def _placement(
        self, shard: ShardKeys, due_ms: int
    ) -> tuple[list[bytes], list[Any]]:
        """Keys and arguments naming where a timer due then may go."""
        minute = due_ms // MINUTE_MS
        level, number = place_numbers(due_ms, self.clocks.now_ms(shard.shard))
        minute_key = shard.minute(minute)
        coarse_key = (
            minute_key if level == "m" else shard.level_bucket(level, number)
        )
        return [minute_key, coarse_key], [minute, level, number]

    # -- the API ----------------------------------------------------------

    async def create(
        self,
        url: str,
        delay_ms: int,
        idempotency: Idempotency | None = None,
        timer_id: bytes | None = None,
    ) -> Created:
        """Store a new timer due ``delay_ms`` from Redis' now.

        The id is chosen here, before the call, so the connection layer
        may send the call again after a lost reply: the script finds its
        own record and answers as created. Waits for replicas when
        ``replica_acks`` is set.
        """
        shards = self.settings.shards
        if idempotency is None:
            guess_ms = self.clocks.now_ms(0) + delay_ms
            timer_id = timer_id or self.ids.new(guess_ms)
            shard = self.shard_of(timer_id)
            idem_key, fingerprint = shard.timer(timer_id), b""
        else:
            k = idempotency.shard(shards)
            guess_ms = self.clocks.now_ms(k) + delay_ms
            timer_id = timer_id or self.ids.new(guess_ms, shards, k)
            shard = self.keys.shard(k)
            idem_key = shard.idempotency(idempotency.key_digest)
            fingerprint = idempotency.fingerprint
        place_keys, place_args = self._placement(
            shard, self.clocks.now_ms(shard.shard) + delay_ms
        )
        reply = await self.connection.script(
            SCRIPTS["create"],
            [
                shard.timer(timer_id),
                shard.index,
                *place_keys,
                idem_key,
                self._finished_key(shard, timer_id),
                shard.count,
            ],
            [
                timer_id,
                url,
                delay_ms,
                *place_args,
                fingerprint,
                IDEMPOTENCY_TTL_MS,
            ],
            ack=True,
        )
        now_ms = _int(reply[0])
        self.clocks.observe(shard.shard, now_ms)
        return Created(Code(_text(reply[1])), reply[3], _int(reply[2]), now_ms)

    async def get(self, timer_id: bytes) -> Record | None:
        """The timer ``timer_id``, or None when unknown or expired."""
        shard = self.shard_of(timer_id)
        reply = await self.connection.script(
            SCRIPTS["get"],
            [shard.timer(timer_id), self._finished_key(shard, timer_id)],
            [timer_id],
        )
        now_ms = _int(reply[0])
        self.clocks.observe(shard.shard, now_ms)
        if len(reply) == 1:
            return None
        if reply[1] == b"r":
            _, _, state, due, attempts, next_ms, result = reply
            return Record(
                STATE_OF_CODE[_text(state)],
                _int(due),
                _int(attempts),
                now_ms,
                next_ms=_int(next_ms) if next_ms else None,
                result=_text(result),
            )
        return unpack_finished(_text(reply[2]), now_ms)

    async def cancel(self, timer_id: bytes) -> tuple[Code, TimerState | None]:
        """Cancel a pending timer; the code and the state it was found in."""
        shard = self.shard_of(timer_id)
        reply = await self.connection.script(
            SCRIPTS["cancel"],
            [
                shard.timer(timer_id),
                self._finished_key(shard, timer_id),
                shard.count,
            ],
            [timer_id, self._retention_ms],
            ack=True,
        )
        self.clocks.observe(shard.shard, _int(reply[0]))
        letter = _text(reply[2])
        return Code(_text(reply[1])), STATE_OF_CODE.get(letter)

    # -- the ticker -------------------------------------------------------

    async def sync_clocks(self) -> None:
        """Learn every node's clock (``TIME``), for the shards it holds.

        The ticker does this each beat: it decides from its estimate
        whether a bucket is due, so an estimate behind Redis' clock (a
        host clock that is late) would never call the script that
        corrects it.
        """
        await self.connection.start()
        by_node: dict[str, list[ShardKeys]] = {}
        for shard in self.keys.all_shards():
            node = self.connection.node_of(shard.index)
            by_node.setdefault(node, []).append(shard)
        groups = list(by_node.values())
        replies = await asyncio.gather(
            *(
                self.connection.call(group[0].index, "TIME", deadline_s=1.0)
                for group in groups
            )
        )
        for group, (seconds, micros) in zip(groups, replies, strict=True):
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            for shard in group:
                self.clocks.observe(shard.shard, now_ms)

    async def peek(
        self, shard: ShardKeys, count: int, deadline_s: float = 1.0
    ) -> list[tuple[Bucket, int]]:
        """The ``count`` earliest index members with their scores."""
        reply = await self.connection.call(
            shard.index,
            "ZRANGE",
            shard.index,
            0,
            count - 1,
            "WITHSCORES",
            deadline_s=deadline_s,
        )
        return [
            (_bucket(reply[i]), int(float(reply[i + 1])))
            for i in range(0, len(reply), 2)
        ]

    async def advance(
        self, shard: ShardKeys, token: str, minutes: Sequence[int]
    ) -> Advanced:
        """Move due ids of the given minute buckets to the ready stream."""
        reply = await self.connection.script(
            SCRIPTS["advance"],
            [
                shard.lease,
                shard.index,
                shard.ready,
                *(shard.minute(m) for m in minutes),
            ],
            [
                token,
                GROUP,
                self.settings.batch_size,
                self.settings.ready_max,
                *minutes,
            ],
            deadline_s=1.0,
        )
        now_ms = _int(reply[0])
        self.clocks.observe(shard.shard, now_ms)
        next_ms = _int(reply[4])
        return Advanced(
            Code(_text(reply[1])),
            _int(reply[2]),
            bool(_int(reply[3])),
            now_ms,
            next_ms if next_ms >= 0 else None,
        )

    async def cascade(
        self, shard: ShardKeys, token: str, bucket: Bucket, limit: int
    ) -> Cascaded:
        """Move members of a coarse bucket into its children."""
        children = bucket.children()
        reply = await self.connection.script(
            SCRIPTS["cascade"],
            [
                shard.lease,
                shard.index,
                shard.bucket(bucket),
                *(shard.bucket(child) for child in children),
            ],
            [
                token,
                limit,
                bucket.level.value,
                bucket.number,
                children[0].number,
            ],
            deadline_s=1.0,
        )
        now_ms = _int(reply[0])
        self.clocks.observe(shard.shard, now_ms)
        return Cascaded(
            Code(_text(reply[1])), _int(reply[2]), _int(reply[3]), now_ms
        )

    async def acquire(self, shard: ShardKeys, token: str, ttl_ms: int) -> bool:
        """Take or extend the shard's lease; whether it is held now."""
        reply = await self.connection.script(
            SCRIPTS["acquire"], [shard.lease], [token, ttl_ms], deadline_s=1.0
        )
        return bool(_int(reply[1]))

    async def release(self, shard: ShardKeys, token: str) -> bool:
        """Drop the shard's lease if ``token`` holds it."""
        reply = await self.connection.script(
            SCRIPTS["release"], [shard.lease], [token], deadline_s=1.0
        )
        return bool(_int(reply[1]))

    async def lease_owner(self, shard: ShardKeys) -> str | None:
        """Who holds the shard's lease (for tools and metrics)."""
        owner = await self.connection.call(shard.lease, "GET", shard.lease)
        return None if owner is None else _text(owner)

    # -- the worker -------------------------------------------------------

    async def ensure_group(self, shard: ShardKeys) -> None:
        """Create the consumer group, from id 0, if it is missing.

        A full Redis refuses it; the ticker creates it as it first writes
        the stream (advance.lua), so that is not an error.
        """
        try:
            await self.connection.call(
                shard.ready,
                "XGROUP",
                "CREATE",
                shard.ready,
                GROUP,
                "0",
                "MKSTREAM",
            )
        except StoreFull:
            return
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, shard: ShardKeys, consumer: str, count: int
    ) -> list[Entry]:
        """Take up to ``count`` new entries for ``consumer`` (no blocking)."""
        try:
            reply = await self.connection.call(
                shard.ready,
                "XREADGROUP",
                "GROUP",
                GROUP,
                consumer,
                "COUNT",
                count,
                "STREAMS",
                shard.ready,
                ">",
                deadline_s=1.0,
            )
        except Exception as exc:
            if "NOGROUP" not in str(exc):
                raise
            # A flushed Redis, or one restarted without persistence.
            await self.ensure_group(shard)
            return []
        if not reply:
            return []
        return [_entry(entry) for entry in reply[0][1] if entry[1]]

    async def claim(
        self, shard: ShardKeys, consumer: str, entries: Sequence[Entry]
    ) -> list[Claim]:
        """Claim entries for firing; one verdict each, in order."""
        keys: list[bytes] = [shard.ready, shard.dead, shard.count]
        args: list[Any] = [
            GROUP,
            consumer,
            self.settings.max_attempts,
            self._hold_ms,
            self._retention_ms,
            DEAD_LETTER_MAXLEN,
        ]
        for entry in entries:
            keys += [
                shard.timer(entry.timer_id),
                self._finished_key(shard, entry.timer_id),
            ]
            args += [entry.entry_id, entry.timer_id, entry.sched_ms]
        reply = await self.connection.script(
            SCRIPTS["claim"], keys, args, deadline_s=2.0
        )
        self.clocks.observe(shard.shard, _int(reply[0]))
        return [_claim(item) for item in reply[1:]]

    async def complete(
        self,
        shard: ShardKeys,
        consumer: str,
        attempt: Attempt,
        deadline_s: float,
    ) -> Code:
        """Record an attempt's outcome and ack its entry (retry: wheel)."""
        timer_id = attempt.entry.timer_id
        if attempt.outcome in (Outcome.RETRY, Outcome.DEFER):
            place_keys, place_args = self._placement(
                shard, self.clocks.now_ms(shard.shard) + attempt.delay_ms
            )
        else:
            # Nothing goes back on the wheel: no bucket to name.
            place_keys, place_args = [shard.index, shard.index], _NO_PLACE
        reply = await self.connection.script(
            SCRIPTS["complete"],
            [
                shard.ready,
                shard.timer(timer_id),
                self._finished_key(shard, timer_id),
                shard.dead,
                shard.index,
                *place_keys,
                shard.count,
            ],
            [
                GROUP,
                attempt.entry.entry_id,
                consumer,
                attempt.attempt,
                attempt.outcome.value,
                attempt.result[:RESULT_CHARS],
                timer_id,
                attempt.delay_ms,
                *place_args,
                self._retention_ms,
                DEAD_LETTER_MAXLEN,
            ],
            ack=True,
            deadline_s=deadline_s,
        )
        self.clocks.observe(shard.shard, _int(reply[0]))
        return Code(_text(reply[1]))

    async def requeue(self, shard: ShardKeys, entry: Entry) -> Code:
        """Put an entry that is not yet due back on the wheel."""
        place_keys, place_args = self._placement(shard, entry.sched_ms)
        reply = await self.connection.script(
            SCRIPTS["requeue"],
            [
                shard.ready,
                shard.timer(entry.timer_id),
                shard.index,
                *place_keys,
            ],
            [
                GROUP,
                entry.entry_id,
                entry.timer_id,
                entry.sched_ms,
                *place_args,
            ],
        )
        return Code(_text(reply[1]))

    async def reclaim(
        self, shard: ShardKeys, consumer: str, cursor: bytes, count: int
    ) -> tuple[bytes, list[Entry]]:
        """Take over entries idle past the claim hold (``XAUTOCLAIM``).

        Returns the cursor to continue from (``0-0`` once the stream is
        swept) and the entries. Entries deleted from the stream while
        pending are acked here, on Redis 6.2 as on 7 (which drops them
        itself). 6.2 names them only with ``JUSTID`` (its full reply has
        a bare nil in their place), so the ids are taken first and read
        after, in one more round trip only when there are any.
        """
        reply = await self.connection.call(
            shard.ready,
            "XAUTOCLAIM",
            shard.ready,
            GROUP,
            consumer,
            self._hold_ms,
            cursor,
            "COUNT",
            count,
            "JUSTID",
            deadline_s=2.0,
        )
        taken: list[bytes] = reply[1]
        found = await asyncio.gather(
            *(
                self.connection.call(
                    shard.ready, "XRANGE", shard.ready, entry_id, entry_id
                )
                for entry_id in taken
            )
        )
        entries, gone = [], []
        for entry_id, items in zip(taken, found, strict=True):
            if items and items[0][1]:
                entries.append(_entry(items[0]))
            else:
                gone.append(entry_id)
        if gone:
            await self.connection.call(
                shard.ready, "XACK", shard.ready, GROUP, *gone
            )
        return reply[0], entries

    # -- operators: dead letters and the shape of the backlog ------------

    async def dead_letters(
        self, shard: ShardKeys, limit: int
    ) -> list[DeadLetter]:
        """The shard's newest dead letters, newest first."""
        reply = await self.connection.call(
            shard.dead, "XREVRANGE", shard.dead, "+", "-", "COUNT", limit
        )
        return [_dead_letter(entry) for entry in reply]

    async def find_dead_letter(self, timer_id: bytes) -> DeadLetter | None:
        """The dead letter of ``timer_id``, if its shard still keeps it."""
        shard = self.shard_of(timer_id)
        for letter in await self.dead_letters(shard, DEAD_LETTER_MAXLEN * 2):
            if letter.timer_id == timer_id:
                return letter
        return None

    async def retry(
        self, timer_id: bytes, letter: DeadLetter
    ) -> tuple[Code, TimerState | None]:
        """Schedule a failed timer now with a fresh attempt budget."""
        shard = self.shard_of(timer_id)
        minute = minute_of(self.clocks.now_ms(shard.shard))
        reply = await self.connection.script(
            SCRIPTS["retry"],
            [
                shard.timer(timer_id),
                self._finished_key(shard, timer_id),
                shard.index,
                shard.bucket(minute),
                shard.dead,
                shard.count,
            ],
            [timer_id, letter.url, letter.entry_id, minute.number],
            ack=True,
        )
        return Code(_text(reply[1])), STATE_OF_CODE.get(_text(reply[2]))

    async def import_finished(
        self, timer_id: bytes, record: Record, ttl_ms: int
    ) -> None:
        """Write a finished record as-is (migration from an older layout)."""
        shard = self.shard_of(timer_id)
        key = self._finished_key(shard, timer_id)
        finished_ms = record.finished_ms or record.now_ms
        packed = (
            f"{state_code(record.state)}{record.attempts},{record.due_ms},"
            f"{finished_ms - record.due_ms},{record.result}"
        )
        await self.connection.call(key, "HSET", key, timer_id, packed)
        await self._keep(key, ttl_ms)

    async def import_dead_letter(
        self,
        timer_id: bytes,
        url: str,
        attempts: int,
        error: str,
        at_ms: int,
    ) -> None:
        """Add a dead letter as-is (migration from an older layout)."""
        dead = self.shard_of(timer_id).dead
        await self.connection.call(
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

    async def _keep(self, key: bytes, ttl_ms: int) -> None:
        if await self.connection.call(key, "PTTL", key) < ttl_ms:
            await self.connection.call(key, "PEXPIRE", key, ttl_ms)

    async def survey(self, shard: ShardKeys) -> Survey:
        """Cheap figures of one shard, in one round trip (gauges, stats)."""
        count, ready, pending, first, oldest, dead = await asyncio.gather(
            self.connection.call(shard.count, "GET", shard.count),
            self.connection.call(shard.ready, "XLEN", shard.ready),
            self._pending(shard),
            self.connection.call(
                shard.index, "ZRANGE", shard.index, 0, 0, "WITHSCORES"
            ),
            self.connection.call(
                shard.ready, "XRANGE", shard.ready, "-", "+", "COUNT", 1
            ),
            self.connection.call(shard.dead, "XLEN", shard.dead),
        )
        earliest = None
        if first and _bucket(first[0]).level is Level.MINUTE:
            earliest = int(float(first[1]))
        if oldest:
            sched = _entry(oldest[0]).sched_ms
            earliest = sched if earliest is None else min(earliest, sched)
        return Survey(
            int(count or 0), _int(ready), pending, earliest, _int(dead)
        )

    async def _pending(self, shard: ShardKeys) -> int:
        try:
            reply = await self.connection.call(
                shard.ready, "XPENDING", shard.ready, GROUP
            )
        except Exception as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        return _int(reply[0])

    async def backlog(
        self, shard: ShardKeys, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        """(scheduled ms, timers) of the shard's buckets acting before
        ``end_ms``: a minute bucket counts at its earliest due time, a
        coarse one at its start (for the dashboard's backlog chart)."""
        reply = await self.connection.call(
            shard.index,
            "ZRANGE",
            shard.index,
            "-inf",
            end_ms,
            "BYSCORE",
            "WITHSCORES",
        )
        found = [
            (_bucket(reply[i]), int(float(reply[i + 1])))
            for i in range(0, len(reply), 2)
        ]
        sizes = await asyncio.gather(
            *(
                self.connection.call(
                    shard.bucket(bucket),
                    "ZCARD" if bucket.level is Level.MINUTE else "LLEN",
                    shard.bucket(bucket),
                )
                for bucket, _ in found
            )
        )
        return [
            (
                max(
                    start_ms, score if b.level is Level.MINUTE else b.start_ms
                ),
                _int(size),
            )
            for (b, score), size in zip(found, sizes, strict=True)
        ]


_NO_PLACE: list[Any] = [0, "m", 0]


def _bucket(member: bytes) -> Bucket:
    text = member.decode()
    return Bucket(Level(text[0]), int(text[1:]))


def _entry(item: list[Any]) -> Entry:
    entry_id, fields = item[0], item[1]
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return Entry(entry_id, values[b"i"], int(values[b"s"]))


def _dead_letter(item: list[Any]) -> DeadLetter:
    entry_id, fields = item[0], item[1]
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return DeadLetter(
        entry_id,
        values[b"i"],
        _text(values.get(b"u", b"")),
        int(values[b"a"]),
        _text(values[b"e"]),
        int(values[b"t"]),
    )


def _claim(item: list[Any]) -> Claim:
    verdict = Verdict(_text(item[0]))
    if verdict is Verdict.FIRE:
        return Claim(
            verdict, _text(item[1]), _int(item[2]), due_ms=_int(item[3])
        )
    if verdict is Verdict.BUSY:
        return Claim(verdict, wait_ms=_int(item[1]))
    if verdict is Verdict.EARLY:
        return Claim(verdict, due_ms=_int(item[1]))
    return Claim(verdict)


def unpack_finished(packed: str, now_ms: int) -> Record:
    """A finished record from its packed form ``<s><attempts>,due,+ms,r``."""
    head, due, delta, result = packed.split(",", 3)
    due_ms = int(due)
    return Record(
        STATE_OF_CODE[head[0]],
        due_ms,
        int(head[1:]),
        now_ms,
        finished_ms=due_ms + int(delta),
        result=result,
    )
