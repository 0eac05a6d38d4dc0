"""ScheduleStore: every way a schedule's keys change, by the role that
calls it: ``create``, ``get``, ``edit``, ``delete`` and the listing's
reads (the API); ``due`` and ``roll`` (the roller in the ticker).

A schedule lives on the shard of its id (:func:`wheel.core.ids.
shard_of`), and so do its occurrences (their ids are steered there), so
each script touches one slot. The compare-and-set scripts
(``patch_schedule.lua``, ``roll.lua``) make edits and hand-overs atomic
against each other; see the scripts' headers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wheel.core import ids
from wheel.core.schedules import (
    Definition,
    RollPlan,
    chunks,
    pack_definition,
)
from wheel.core.states import Code
from wheel.storage.errors import (
    NotReplicated,
    OutcomeUnknown,
    RedisUnavailable,
)
from wheel.storage.keys import GROUP, ShardKeys
from wheel.storage.replies import (
    Rolled,
    ScheduleRecord,
    as_int,
    as_text,
    schedule_of,
)
from wheel.storage.scripts import SCRIPTS
from wheel.storage.shards import ShardQueue

DELETED_MARKER_MS = 24 * 3600 * 1000
"""How long a deleted schedule answers a repeated DELETE with 204."""
EDIT_TRIES = 5
"""Reads and writes an edit tries while the schedule keeps changing."""


@dataclass(frozen=True, slots=True)
class Edit:
    """What an edit writes: paused or not, the next occurrence (None:
    none on the wheel) and the new definition (None: unchanged)."""

    paused: bool
    next_ms: int | None
    definition: Definition | None = None


@dataclass(frozen=True, slots=True)
class Edited:
    """Reply of ``edit``: the code, and the schedule as written."""

    code: Code
    record: ScheduleRecord | None = None


class ScheduleStore:
    """The schedules of one deployment, through a :class:`ShardQueue`'s
    connection, keys and clocks."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue
        self.connection = queue.connection
        self.keys = queue.keys
        self.settings = queue.settings

    def shard_of(self, schedule_id: bytes) -> ShardKeys:
        """The keys of the shard that owns ``schedule_id``."""
        return self.queue.shard_of(schedule_id)

    # -- the API ----------------------------------------------------------

    async def create(
        self,
        definition: Definition,
        next_ms: int,
        schedule_id: bytes | None = None,
    ) -> tuple[Code, bytes, int | None]:
        """Store a new schedule whose first occurrence is ``next_ms``;
        its code (done, or exists for a replayed id), id and next
        occurrence.

        The id is chosen before the call, so the connection may send it
        again after a lost reply; replica acks are waited for as a
        timer's create waits.

        Raises:
            OutcomeUnknown: the call may have run (reply lost, or the
                replicas did not confirm it); it names the id.
        """
        schedule_id = schedule_id or self.queue.ids.new(
            self.queue.clocks.now_ms(0)
        )
        shard = self.shard_of(schedule_id)
        try:
            reply = await self.connection.script(
                SCRIPTS["create_schedule"],
                [
                    shard.schedule(schedule_id),
                    shard.schedules_next,
                    shard.schedules,
                ],
                [schedule_id, next_ms, *chunks(pack_definition(definition))],
                ack=True,
            )
        except RedisUnavailable as exc:
            if exc.maybe_applied:
                raise OutcomeUnknown(
                    schedule_id, str(exc), schedule=True
                ) from exc
            raise
        except NotReplicated as exc:
            raise OutcomeUnknown(schedule_id, str(exc), schedule=True) from exc
        self.queue.clocks.observe(shard.shard, as_int(reply[0]))
        stored = reply[2]
        return (
            Code(as_text(reply[1])),
            schedule_id,
            int(stored) if stored else None,
        )

    async def get(self, schedule_id: bytes) -> ScheduleRecord | None:
        """The schedule ``schedule_id``, or None when unknown."""
        shard = self.shard_of(schedule_id)
        (record,) = await self.get_many(shard, [schedule_id])
        return record

    async def get_many(
        self, shard: ShardKeys, schedule_ids: Sequence[bytes]
    ) -> list[ScheduleRecord | None]:
        """Schedules of one shard, in order (None: unknown), in one call
        (``read_schedules.lua``)."""
        if not schedule_ids:
            return []
        reply = await self.connection.script(
            SCRIPTS["read_schedules"],
            [shard.schedule(sid) for sid in schedule_ids],
            [],
        )
        self.queue.clocks.observe(shard.shard, as_int(reply[0]))
        return [
            schedule_of(sid, fields)
            for sid, fields in zip(schedule_ids, reply[1:], strict=True)
        ]

    async def edit(
        self,
        schedule_id: bytes,
        change: Callable[[ScheduleRecord], Edit],
    ) -> Edited:
        """Apply ``change`` (computed from the schedule as read) with a
        compare-and-set on its version; read and try again while other
        edits change the version under it (rolls do not change it).
        ``change`` may raise to refuse the edit.

        One token serves every try, so a try sent twice (a lost reply)
        edits once.
        """
        shard = self.shard_of(schedule_id)
        token = os.urandom(8)
        for _ in range(EDIT_TRIES):
            record = await self.get(schedule_id)
            if record is None:
                return Edited(Code.NOT_FOUND)
            edit = change(record)
            parts: list[bytes] = []
            if edit.definition is not None:
                parts = chunks(pack_definition(edit.definition))
            reply = await self.connection.script(
                SCRIPTS["patch_schedule"],
                [shard.schedule(schedule_id), shard.schedules_next],
                [
                    schedule_id,
                    record.version,
                    "" if record.next_ms is None else record.next_ms,
                    token,
                    "1" if edit.paused else "0",
                    "" if edit.next_ms is None else edit.next_ms,
                    *parts,
                ],
                ack=True,
            )
            self.queue.clocks.observe(shard.shard, as_int(reply[0]))
            code = Code(as_text(reply[1]))
            if code is Code.DONE:
                return Edited(code, await self.get(schedule_id))
            if code is Code.NOT_FOUND:
                return Edited(code)
        return Edited(Code.STALE)

    async def delete(self, schedule_id: bytes) -> Code:
        """Delete a schedule: done (now, or already), or not found."""
        shard = self.shard_of(schedule_id)
        reply = await self.connection.script(
            SCRIPTS["delete_schedule"],
            [
                shard.schedule(schedule_id),
                shard.schedules_next,
                shard.schedules,
            ],
            [schedule_id, DELETED_MARKER_MS],
            ack=True,
        )
        self.queue.clocks.observe(shard.shard, as_int(reply[0]))
        return Code(as_text(reply[1]))

    async def ids_after(
        self, shard: ShardKeys, after: bytes, count: int
    ) -> list[bytes]:
        """Up to ``count`` schedule ids of the shard after ``after`` (all
        from the first when empty), in id order."""
        start = b"(" + after if after else b"-"
        reply = await self.connection.call(
            shard.schedules,
            "ZRANGE",
            shard.schedules,
            start,
            b"+",
            "BYLEX",
            "LIMIT",
            0,
            count,
        )
        return list(reply)

    # -- the roller -------------------------------------------------------

    async def due(
        self,
        shard: ShardKeys,
        count: int,
        until_ms: int,
        deadline_s: float = 1.0,
    ) -> list[tuple[bytes, int]]:
        """The earliest next occurrences of the shard's live schedules
        due by ``until_ms``, at most ``count``: (schedule id, instant)."""
        reply = await self.connection.call(
            shard.schedules_next,
            "ZRANGE",
            shard.schedules_next,
            "-inf",
            until_ms,
            "BYSCORE",
            "LIMIT",
            0,
            count,
            "WITHSCORES",
            deadline_s=deadline_s,
        )
        return [
            (reply[i], int(float(reply[i + 1])))
            for i in range(0, len(reply), 2)
        ]

    async def roll(
        self,
        shard: ShardKeys,
        record: ScheduleRecord,
        plan: RollPlan,
        requests: Sequence[bytes],
    ) -> Rolled:
        """Hand the due occurrence of ``record`` over as ``plan`` says:
        create the occurrences to fire (each sending its request, in
        order) and make the successor the next occurrence; a
        compare-and-set on the version and next occurrence read."""
        assert record.next_ms is not None
        keys: list[bytes] = [
            shard.schedules_next,
            shard.schedule(record.schedule_id),
            shard.ready,
            shard.count,
        ]
        args: list[Any] = [
            record.schedule_id,
            record.version,
            record.next_ms,
            GROUP,
            self.settings.ready_max,
            "" if plan.next_ms is None else plan.next_ms,
            plan.missed,
            record.definition.url,
        ]
        for occurrence, request in zip(plan.fire, requests, strict=True):
            keys += [
                shard.timer(occurrence.id),
                shard.finished(ids.finished_hour(occurrence.id)),
            ]
            args += [occurrence.id, occurrence.scheduled_ms, request]
        reply = await self.connection.script(
            SCRIPTS["roll"], keys, args, deadline_s=2.0
        )
        now_ms = as_int(reply[0])
        self.queue.clocks.observe(shard.shard, now_ms)
        return Rolled(Code(as_text(reply[1])), as_int(reply[2]), now_ms)
