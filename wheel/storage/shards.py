"""ShardQueue: the life-cycle commands of a shard, by the role that calls
them.

The life of a timer is the set of ways its shard's keys change, and each
is a method here: ``create``, ``get``, ``cancel``, ``reschedule`` (the
API);
``peek``, ``advance``, ``cascade`` and the lease (the ticker); ``read``,
``claim``, ``complete``, ``requeue``, ``reclaim`` (the worker); ``retry``
of a dead letter (operators). Each reply is decoded by
:mod:`wheel.storage.replies`; callers never spell a command. A reader
finds every write to a shard here and in ``lua/``; operator reads are in
:mod:`wheel.storage.inspect`.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Sequence
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from wheel.core import ids
from wheel.core.buckets import MINUTE_MS, Bucket, minute_of, place_numbers
from wheel.core.states import STATE_OF_CODE, Code, Outcome, TimerState
from wheel.settings import Settings
from wheel.storage.clocks import ShardClocks
from wheel.storage.connection import Connection
from wheel.storage.errors import (
    NotReplicated,
    OutcomeUnknown,
    RedisUnavailable,
    StoreFull,
    group_exists,
    no_group,
)
from wheel.storage.gather import Gatherer
from wheel.storage.keys import GROUP, Keys, ShardKeys
from wheel.storage.replies import (
    Advanced,
    Cascaded,
    Claim,
    Completed,
    Consumer,
    Created,
    DeadLetter,
    Entry,
    Record,
    as_int,
    as_text,
    bucket_of,
    claim_of,
    consumer_of,
    entry_of,
    record_of,
)
from wheel.storage.scripts import SCRIPTS

DEAD_LETTER_MAXLEN = 10_000
"""Approximate cap on each shard's dead-letter stream."""
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
"""How long an ``Idempotency-Key`` keeps mapping to its timer."""
RESULT_CHARS = 200
"""Most characters of an attempt's error kept in a record."""
COMPLETIONS_PER_CALL = 64
"""Most attempts one completion call records."""
CREATES_PER_CALL = 64
"""Most timers one create call stores."""
RESCHEDULE_TRIES = 5
"""Reads and moves a reschedule tries while the timer keeps changing."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class Attempt(msgspec.Struct, frozen=True):
    """What a finished webhook attempt reports to ``complete``."""

    entry: Entry
    attempt: int
    outcome: Outcome
    result: str
    delay_ms: int = 0
    duration_ms: int = 0
    """How long the attempt took (none for a deferral: nothing sent)."""
    schedule_id: bytes = b""
    """The schedule whose occurrence the timer is (its claim said): a
    finished occurrence counts in that schedule's record."""


class Deferral(msgspec.Struct, frozen=True):
    """A saturated destination, for ``claim``: its timers whose url
    starts with ``prefix`` go back on the wheel ``first_ms`` from Redis'
    now, each next one ``step_ms`` later, instead of being claimed."""

    prefix: str
    first_ms: int
    step_ms: int


class NewTimer(msgspec.Struct, frozen=True):
    """One create's share of a create call: its keys (record, minute
    bucket, coarse bucket, idempotency record), its values and its
    finished hash (see ``create.lua``)."""

    keys: list[bytes]
    args: list[Any]
    finished: bytes


class Moved(msgspec.Struct, frozen=True):
    """Reply of ``reschedule``: the code, and the new due ms (done) or
    the state of a timer that cannot move (conflict)."""

    code: Code
    due_ms: int = 0
    state: TimerState | None = None
    now_ms: int = 0


class Idempotency(msgspec.Struct, frozen=True):
    """A create's ``Idempotency-Key``: its digest and the request's."""

    key_digest: bytes
    fingerprint: bytes

    def shard(self, shards: int) -> int:
        """The shard of the key's record and of the timer it creates."""
        return int.from_bytes(self.key_digest[:8], "big") % shards


class ShardQueue:
    """The shards of one deployment, through one :class:`Connection`."""

    def __init__(self, connection: Connection, settings: Settings) -> None:
        self.connection = connection
        self.settings = settings
        self.keys = Keys(settings.key_prefix, settings.shards)
        self.clocks = ShardClocks(settings.shards)
        self.ids = ids.IdSource()
        self._retention_ms = int(settings.retention * 1000)
        self.hold_ms = int(settings.reclaim_idle * 1000)
        """How long a claim holds (``WHEEL_RECLAIM_IDLE``) in ms."""
        self._completions: Gatherer[
            tuple[ShardKeys, str], tuple[Attempt, float], Completed
        ] = Gatherer(self._complete_many, COMPLETIONS_PER_CALL)
        self._creates: Gatherer[ShardKeys, NewTimer, tuple[Created, str]] = (
            Gatherer(self._create_many, CREATES_PER_CALL)
        )
        self._turn: int | None = None
        self._turn_creates = 0
        self._next_shard = random.randrange(settings.shards)

    def shard_of(self, timer_id: bytes) -> ShardKeys:
        """The keys of the shard that owns ``timer_id``."""
        return self.keys.shard(ids.shard_of(timer_id, self.settings.shards))

    def finished_key(self, shard: ShardKeys, timer_id: bytes) -> bytes:
        """The finished hash that holds (or will hold) ``timer_id``."""
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
        at_ms: int | None = None,
        request: bytes = b"",
    ) -> Created:
        """Store a new timer due ``delay_ms`` from Redis' now, or at
        ``at_ms`` (never before Redis' now), sending its own ``request``
        (packed) when given.

        The id is chosen here, before the call, so the connection layer
        may send the call again after a lost reply: the script finds its
        own record and answers as created. A timer without a key or an id
        of its own goes to the shard of this turn of the event loop
        (:meth:`_turn_shard`), so the creates that arrive together share
        one script call (see :mod:`wheel.storage.gather`). Waits for
        replicas when ``replica_acks`` is set.

        Raises:
            OutcomeUnknown: the call may have run (its reply was lost, or
                the replicas did not confirm it); it names the id.
        """
        shards = self.settings.shards
        if at_ms is not None:
            # The estimate only names the id's hour and the buckets.
            delay_ms = max(0, at_ms - self.clocks.now_ms(0))
        if idempotency is not None:
            k = idempotency.shard(shards)
            guess_ms = self.clocks.now_ms(k) + delay_ms
            timer_id = timer_id or self.ids.new(guess_ms, shards, k)
            shard = self.keys.shard(k)
            idem_key = shard.idempotency(idempotency.key_digest)
            fingerprint = idempotency.fingerprint
        else:
            if timer_id is None:
                k = self._turn_shard()
                guess_ms = self.clocks.now_ms(k) + delay_ms
                timer_id = self.ids.new(guess_ms, shards, k)
            shard = self.shard_of(timer_id)
            idem_key, fingerprint = shard.timer(timer_id), b""
        place_keys, place_args = self._placement(
            shard, self.clocks.now_ms(shard.shard) + delay_ms
        )
        new = NewTimer(
            [shard.timer(timer_id), *place_keys, idem_key],
            [
                timer_id,
                url,
                delay_ms,
                *place_args,
                fingerprint,
                "" if at_ms is None else at_ms,
                request,
            ],
            self.finished_key(shard, timer_id),
        )
        try:
            created, unconfirmed = await self._creates.submit(shard, new)
        except RedisUnavailable as exc:
            if exc.maybe_applied:
                raise OutcomeUnknown(timer_id, str(exc)) from exc
            raise
        if unconfirmed:
            # It ran on the primary: its reply names the timer's id.
            raise OutcomeUnknown(created.timer_id, unconfirmed)
        return created

    def _turn_shard(self) -> int:
        """The shard of the plain creates made in this turn of the event
        loop: one shard for up to a call's worth of them, then the next,
        so creates that arrive together go in full calls and every shard
        gets its share."""
        if self._turn is None:
            asyncio.get_running_loop().call_soon(self._end_turn)
        elif self._turn_creates < CREATES_PER_CALL:
            self._turn_creates += 1
            return self._turn
        self._turn = self._next_shard
        self._next_shard = (self._next_shard + 1) % self.settings.shards
        self._turn_creates = 1
        return self._turn

    def _end_turn(self) -> None:
        self._turn = None

    async def _create_many(
        self, shard: ShardKeys, timers: Sequence[NewTimer]
    ) -> list[tuple[Created, str]]:
        """Each timer's reply, and why the replicas did not confirm the
        call ('' when they did)."""
        keys = [shard.index, shard.count]
        args: list[Any] = [IDEMPOTENCY_TTL_MS]
        for timer in timers:
            keys += [*timer.keys, timer.finished]
            args += timer.args
        unconfirmed = ""
        try:
            reply = await self.connection.script(
                SCRIPTS["create"], keys, args, ack=True
            )
        except NotReplicated as exc:
            reply, unconfirmed = exc.reply, str(exc)
        now_ms = as_int(reply[0])
        self.clocks.observe(shard.shard, now_ms)
        return [
            (
                Created(
                    Code(as_text(reply[i])),
                    reply[i + 2],
                    as_int(reply[i + 1]),
                    now_ms,
                ),
                unconfirmed,
            )
            for i in range(1, len(reply), 3)
        ]

    async def get(self, timer_id: bytes) -> Record | None:
        """The timer ``timer_id``, or None when unknown or expired."""
        shard = self.shard_of(timer_id)
        (record,) = await self.get_many(shard, [timer_id])
        return record

    async def get_many(
        self, shard: ShardKeys, timer_ids: Sequence[bytes]
    ) -> list[Record | None]:
        """Timers of one shard in one call, in order (None: unknown)."""
        if not timer_ids:
            return []
        keys: list[bytes] = []
        for timer_id in timer_ids:
            keys += [shard.timer(timer_id), self.finished_key(shard, timer_id)]
        reply = await self.connection.script(
            SCRIPTS["get"], keys, list(timer_ids)
        )
        now_ms = as_int(reply[0])
        self.clocks.observe(shard.shard, now_ms)
        return [record_of(item, now_ms) for item in reply[1:]]

    async def cancel(self, timer_id: bytes) -> tuple[Code, TimerState | None]:
        """Cancel a pending timer; the code and the state it was found in."""
        shard = self.shard_of(timer_id)
        reply = await self.connection.script(
            SCRIPTS["cancel"],
            [
                shard.timer(timer_id),
                self.finished_key(shard, timer_id),
                shard.count,
                shard.finished_hours,
                shard.finished_expiry,
            ],
            [timer_id, self._retention_ms, ids.finished_hour(timer_id)],
            ack=True,
        )
        self.clocks.observe(shard.shard, as_int(reply[0]))
        letter = as_text(reply[2])
        return Code(as_text(reply[1])), STATE_OF_CODE.get(letter)

    async def reschedule(
        self,
        timer_id: bytes,
        delay_ms: int = 0,
        at_ms: int | None = None,
    ) -> Moved:
        """Move a pending timer to ``delay_ms`` from Redis' now (or to
        ``at_ms``), atomically against its claim.

        The script is told where the timer's copy is from a read just
        before; if the timer changed in between it moves nothing and the
        read is made again. One token serves every try, so a try sent
        twice (a lost reply) moves the timer once.
        """
        shard = self.shard_of(timer_id)
        token = os.urandom(8)
        record = await self.get(timer_id)
        for _ in range(RESCHEDULE_TRIES):
            if record is None:
                return Moved(Code.NOT_FOUND)
            if record.state is not TimerState.PENDING:
                return Moved(Code.CONFLICT, state=record.state)
            current = record.next_ms or record.due_ms
            # An instant already past is due now (the script says so too):
            # its copy goes in the bucket of now, as a create's does.
            now_ms = self.clocks.now_ms(shard.shard)
            guess_ms = (
                now_ms + delay_ms if at_ms is None else max(at_ms, now_ms)
            )
            place_keys, place_args = self._placement(shard, guess_ms)
            minute = current // MINUTE_MS
            reply = await self.connection.script(
                SCRIPTS["reschedule"],
                [
                    shard.timer(timer_id),
                    self.finished_key(shard, timer_id),
                    shard.index,
                    shard.minute(minute - 1),
                    shard.minute(minute),
                    shard.minute(minute + 1),
                    shard.tombstones,
                    *place_keys,
                ],
                [
                    timer_id,
                    current,
                    delay_ms,
                    "" if at_ms is None else at_ms,
                    token,
                    *place_args,
                ],
                ack=True,
            )
            now_ms = as_int(reply[0])
            self.clocks.observe(shard.shard, now_ms)
            code = Code(as_text(reply[1]))
            if code is Code.DONE:
                return Moved(code, as_int(reply[2]), now_ms=now_ms)
            if code is Code.CONFLICT:
                return Moved(code, state=STATE_OF_CODE[as_text(reply[2])])
            if code is Code.NOT_FOUND:
                return Moved(code)
            record = await self.get(timer_id)
        return Moved(Code.STALE)

    # -- the ticker -------------------------------------------------------

    async def sync_clocks(
        self, deadline_s: float = 1.0
    ) -> list[BaseException]:
        """Learn every node's clock (``TIME``), for the shards it holds;
        the errors of the nodes that did not answer (each node alone).

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
                self.connection.call(
                    group[0].index, "TIME", deadline_s=deadline_s
                )
                for group in groups
            ),
            return_exceptions=True,
        )
        failed = []
        for group, reply in zip(groups, replies, strict=True):
            if isinstance(reply, BaseException):
                failed.append(reply)
                continue
            seconds, micros = reply
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            for shard in group:
                self.clocks.observe(shard.shard, now_ms)
        return failed

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
            (bucket_of(reply[i]), int(float(reply[i + 1])))
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
        now_ms = as_int(reply[0])
        self.clocks.observe(shard.shard, now_ms)
        next_ms = as_int(reply[4])
        return Advanced(
            Code(as_text(reply[1])),
            as_int(reply[2]),
            bool(as_int(reply[3])),
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
                shard.tombstones,
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
        now_ms = as_int(reply[0])
        self.clocks.observe(shard.shard, now_ms)
        return Cascaded(
            Code(as_text(reply[1])), as_int(reply[2]), as_int(reply[3]), now_ms
        )

    async def acquire(
        self,
        shard: ShardKeys,
        token: str,
        ttl_ms: int,
        deadline_s: float = 1.0,
    ) -> bool:
        """Take or extend the shard's lease; whether it is held now."""
        reply = await self.connection.script(
            SCRIPTS["acquire"],
            [shard.lease],
            [token, ttl_ms],
            deadline_s=deadline_s,
        )
        return bool(as_int(reply[1]))

    async def release(
        self, shard: ShardKeys, token: str, deadline_s: float = 1.0
    ) -> bool:
        """Drop the shard's lease if ``token`` holds it."""
        reply = await self.connection.script(
            SCRIPTS["release"], [shard.lease], [token], deadline_s=deadline_s
        )
        return bool(as_int(reply[1]))

    async def lease_owner(self, shard: ShardKeys) -> str | None:
        """Who holds the shard's lease (for tools and metrics)."""
        owner = await self.connection.call(shard.lease, "GET", shard.lease)
        return None if owner is None else as_text(owner)

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
        except ResponseError as exc:
            if not group_exists(exc):
                raise

    async def read(
        self, shard: ShardKeys, consumer: str, count: int
    ) -> list[Entry]:
        """Take up to ``count`` new entries for ``consumer`` (no blocking).

        A read whose reply is lost is not sent again: it may have given
        entries to ``consumer`` (see :meth:`read_own`), and a second read
        would hide that behind its own answer.

        Raises:
            RedisUnavailable: no answer within a second; with
                ``maybe_applied``, the entries it took are pending under
                ``consumer``, unseen.
        """
        items = await self._read_group(shard, consumer, count, b">")
        return [entry_of(item) for item in items if item[1]]

    async def read_own(
        self, shard: ShardKeys, consumer: str, count: int, after: bytes
    ) -> tuple[list[Entry], bytes | None]:
        """Entries pending under ``consumer``, from the first with an id
        above ``after`` (``b"0"``: from the start), in id order, up to
        ``count`` of them: what a read or claim whose reply was lost left
        there. Entries deleted meanwhile are left out.

        Returns the entries and the id to go on from, or None when this
        was the last page.
        """
        items = await self._read_group(shard, consumer, count, after)
        entries = [entry_of(item) for item in items if item[1]]
        return entries, items[-1][0] if len(items) == count else None

    async def _read_group(
        self, shard: ShardKeys, consumer: str, count: int, start: bytes
    ) -> list[Any]:
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
                start,
                deadline_s=1.0,
                # A history read changes nothing: safe to send again.
                resend=start != b">",
            )
        except ResponseError as exc:
            if not no_group(exc):
                raise
            # A flushed Redis, or one restarted without persistence.
            await self.ensure_group(shard)
            return []
        items: list[Any] = reply[0][1] if reply else []
        return items

    async def claim(
        self,
        shard: ShardKeys,
        consumer: str,
        entries: Sequence[Entry],
        deferrals: Sequence[Deferral] = (),
    ) -> list[Claim]:
        """Claim entries for firing; one verdict each, in order.

        An entry whose url starts with one of ``deferrals``' prefixes is
        not claimed but put back on the wheel (``Verdict.DEFERRED``), as
        long as its new due time falls in the minute of the earliest
        first deferral (the one minute bucket the call names).
        """
        minute = 0
        if deferrals:
            soonest = min(deferral.first_ms for deferral in deferrals)
            minute = (self.clocks.now_ms(shard.shard) + soonest) // MINUTE_MS
        keys: list[bytes] = [
            shard.ready,
            shard.dead,
            shard.count,
            shard.finished_hours,
            shard.finished_expiry,
            shard.index,
            shard.minute(minute) if deferrals else shard.index,
        ]
        args: list[Any] = [
            GROUP,
            consumer,
            self.settings.max_attempts,
            self.hold_ms,
            self._retention_ms,
            DEAD_LETTER_MAXLEN,
            minute,
            len(deferrals),
        ]
        for deferral in deferrals:
            args += [deferral.prefix, deferral.first_ms, deferral.step_ms]
        for entry in entries:
            keys += [
                shard.timer(entry.timer_id),
                self.finished_key(shard, entry.timer_id),
            ]
            args += [
                entry.entry_id,
                entry.timer_id,
                entry.sched_ms,
                ids.finished_hour(entry.timer_id),
            ]
        reply = await self.connection.script(
            SCRIPTS["claim"], keys, args, deadline_s=2.0
        )
        self.clocks.observe(shard.shard, as_int(reply[0]))
        return [claim_of(item) for item in reply[1:]]

    async def complete(
        self,
        shard: ShardKeys,
        consumer: str,
        attempt: Attempt,
        deadline_s: float,
    ) -> Completed:
        """Record an attempt's outcome and ack its entry (retry: wheel).

        Attempts of one shard completed in the same turn of the event
        loop go in one script call (see :mod:`wheel.storage.gather`); a
        failed call fails each of them. With replica acks, a completion
        the replicas did not confirm in time is still done (it ran on the
        master): ``replicated`` says so.
        """
        return await self._completions.submit(
            (shard, consumer), (attempt, deadline_s)
        )

    async def _complete_many(
        self,
        key: tuple[ShardKeys, str],
        attempts: Sequence[tuple[Attempt, float]],
    ) -> list[Completed]:
        shard, consumer = key
        keys = [
            shard.ready,
            shard.dead,
            shard.index,
            shard.count,
            shard.tombstones,
            shard.finished_hours,
            shard.finished_expiry,
        ]
        args: list[Any] = [
            GROUP,
            consumer,
            self._retention_ms,
            DEAD_LETTER_MAXLEN,
        ]
        # An occurrence's schedule record goes after every attempt's keys;
        # its attempt names its place (0: none).
        schedules: list[bytes] = []
        first_extra = len(keys) + 4 * len(attempts) + 1
        for attempt, _ in attempts:
            timer_id = attempt.entry.timer_id
            schedule_at = 0
            if attempt.schedule_id:
                schedule_at = first_extra + len(schedules)
                schedules.append(shard.schedule(attempt.schedule_id))
            if attempt.outcome in (Outcome.RETRY, Outcome.DEFER):
                place_keys, place_args = self._placement(
                    shard, self.clocks.now_ms(shard.shard) + attempt.delay_ms
                )
            else:
                # Nothing goes back on the wheel: no bucket to name.
                place_keys, place_args = [shard.index, shard.index], _NO_PLACE
            keys += [
                shard.timer(timer_id),
                self.finished_key(shard, timer_id),
                *place_keys,
            ]
            args += [
                attempt.entry.entry_id,
                attempt.attempt,
                attempt.outcome.value,
                # One line: the history keeps a line per attempt.
                _CONTROL.sub(" ", attempt.result)[:RESULT_CHARS],
                timer_id,
                attempt.delay_ms,
                *place_args,
                max(0, attempt.duration_ms),
                ids.finished_hour(timer_id),
                schedule_at,
            ]
        call = self.connection.script(
            SCRIPTS["complete"],
            [*keys, *schedules],
            args,
            ack=True,
            deadline_s=min(deadline for _, deadline in attempts),
        )
        replicated = True
        try:
            reply = await call
        except NotReplicated as exc:
            # It ran on the master: the outcomes are recorded there. Only
            # a failover before the replicas catch up could lose them.
            reply, replicated = exc.reply, False
        self.clocks.observe(shard.shard, as_int(reply[0]))
        return [
            Completed(Code(as_text(code)), replicated) for code in reply[1:]
        ]

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
        return Code(as_text(reply[1]))

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
            self.hold_ms,
            cursor,
            "COUNT",
            count,
            "JUSTID",
            deadline_s=2.0,
            # A lost reply may have taken entries all the same, and a
            # second call would skip them (their idle time starts again):
            # the caller reads them back instead.
            resend=False,
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
                entries.append(entry_of(items[0]))
            else:
                gone.append(entry_id)
        if gone:
            await self.connection.call(
                shard.ready, "XACK", shard.ready, GROUP, *gone
            )
        return reply[0], entries

    async def consumers(self, shard: ShardKeys) -> list[Consumer]:
        """The consumers of the workers' group on the shard's stream."""
        try:
            reply = await self.connection.call(
                shard.ready,
                "XINFO",
                "CONSUMERS",
                shard.ready,
                GROUP,
                deadline_s=2.0,
            )
        except ResponseError as exc:
            if no_group(exc):
                return []
            raise
        return [consumer_of(item) for item in reply]

    async def drop_consumer(self, shard: ShardKeys, consumer: str) -> bool:
        """Delete ``consumer`` from the shard's group if it holds no
        pending entry; whether it is gone now."""
        reply = await self.connection.script(
            SCRIPTS["drop_consumer"],
            [shard.ready],
            [GROUP, consumer],
            deadline_s=2.0,
        )
        return bool(as_int(reply[1]))

    # -- operators ----------------------------------------------------------

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
                self.finished_key(shard, timer_id),
                shard.index,
                shard.bucket(minute),
                shard.dead,
                shard.count,
            ],
            [timer_id, letter.url, letter.entry_id, minute.number],
            ack=True,
        )
        return Code(as_text(reply[1])), STATE_OF_CODE.get(as_text(reply[2]))


_NO_PLACE: list[Any] = [0, "m", 0]
