"""Roller: hands schedules' due occurrences to the workers, in the ticker.

A live schedule's next occurrence is one member of its shard's schedules
set, scored by the instant. For the shards whose leases its ticker
holds, the roller peeks at the members due within the next tick
interval (one ``ZRANGE`` a shard, at most every tick interval, batched),
sleeps until the earliest is due, reads the due schedules' records (one
call a shard, :data:`ROLL_BATCH` at most), decides in Python what fires
now and what follows (cron, zone, misfire policy, ``end_at``:
:func:`wheel.core.schedules.plan_roll`), and calls one compare-and-set
script per schedule that creates the occurrences as timers in the ready
stream and puts the successor in the set. Shards that got occurrences
ring the workers' doorbell, each as soon as its rolls are done.

No leader and no extra process: tickers share shards by lease, and two
rollers on one shard (a lease moving) are safe, because a roll whose
read is stale changes nothing (the script's compare-and-set) and an
occurrence's id is derived from its schedule and instant. Like the
ticker, it rolls each Redis node's shards in a loop of its own, so a
node that is down delays only its shards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wheel.core.schedules import RollPlan, occurrence_request, plan_roll
from wheel.core.states import Code
from wheel.runtime.lifecycle import ErrorLog, supervise
from wheel.settings import Settings
from wheel.storage.doorbell import ring
from wheel.storage.keys import ShardKeys
from wheel.storage.replies import Rolled, ScheduleRecord
from wheel.storage.schedules import ScheduleStore
from wheel.storage.shards import ShardQueue

log = logging.getLogger(__name__)

MIN_SLEEP_S = 0.002
EARLY_SLEEP_S = 0.005
"""How long to wait after Redis found an occurrence not yet due (this
host's estimate of Redis' clock ran a little ahead)."""
ROLL_BATCH = 100
"""Most schedules of one shard a step rolls (the rest at once after)."""
FULL_PAUSE_S = 0.05
"""How long a shard whose ready stream is full is left alone."""

Groups = Callable[[], dict[str, list[ShardKeys]]]
"""The shards the ticker holds, by Redis node."""


@dataclass(slots=True)
class _Seen:
    """What the last peek (and the rolls since) tell of one shard's set:
    members and scores, complete up to ``bound`` (the end of the window
    looked at, or the last score of a full peek)."""

    members: dict[bytes, int]
    bound: int
    peeked_at: float


class Roller:
    """Hands due occurrences of the held shards' schedules over."""

    def __init__(
        self, queue: ShardQueue, settings: Settings, groups: Groups
    ) -> None:
        self.queue = queue
        self.store = ScheduleStore(queue)
        self.settings = settings
        self.groups = groups
        self.peek = settings.batch_size
        self.grace_ms = int(settings.misfire_grace * 1000)
        self.created_total = 0
        """Occurrences its rolls reported created (a roll that found
        another roller's identical roll done reports that one's)."""
        self.missed_total = 0
        self._seen: dict[int, _Seen] = {}
        self._paused_until: dict[int, float] = {}
        self._errors = ErrorLog(log)

    async def roll_shards(self, group: Sequence[ShardKeys]) -> float:
        """Hand over what is due in ``group`` (shards of one node);
        seconds until worth again."""
        now = time.monotonic()
        tick_s = self.settings.tick_interval
        shards = [
            s for s in group if self._paused_until.get(s.shard, 0.0) <= now
        ]
        if not shards:
            return FULL_PAUSE_S if group else tick_s
        await self._look(shards, now)
        wait_s = tick_s
        work = []
        for shard in shards:
            seen = self._seen.get(shard.shard)
            if seen is None:
                continue
            now_ms = self.queue.clocks.now_ms(shard.shard)
            due = [sid for sid, at in seen.members.items() if at <= now_ms]
            ahead = min(
                [at for at in seen.members.values() if at > now_ms]
                + [seen.bound]
            )
            if len(due) > ROLL_BATCH:
                # A big minute: a batch a step, so that the first
                # occurrences go out before the last are decided.
                due, wait_s = due[:ROLL_BATCH], 0.0
            elif ahead <= now_ms:
                # Every member the peek saw was due: more may wait.
                seen.peeked_at = 0.0
            else:
                wait_s = min(wait_s, max((ahead - now_ms) / 1e3, MIN_SLEEP_S))
            if due:
                work.append(self._roll(shard, seen, due, now_ms))
            wait_s = min(
                wait_s, max(MIN_SLEEP_S, seen.peeked_at + tick_s - now)
            )
        for again_s in await asyncio.gather(*work):
            wait_s = min(wait_s, again_s)
        return wait_s

    async def _look(self, shards: list[ShardKeys], now: float) -> None:
        """Peek at the shards whose last look is a tick interval old: the
        members due by the end of the next tick interval (at most a peek's
        worth; what the look did not return is later than its bound)."""
        stale = [
            shard
            for shard in shards
            if shard.shard not in self._seen
            or self._seen[shard.shard].peeked_at + self.settings.tick_interval
            <= now
        ]
        if not stale:
            return
        tick_ms = int(self.settings.tick_interval * 1000)
        until = [
            self.queue.clocks.now_ms(shard.shard) + tick_ms for shard in stale
        ]
        peeks = await asyncio.gather(
            *(
                self.store.due(shard, self.peek, until_ms)
                for shard, until_ms in zip(stale, until, strict=True)
            ),
            return_exceptions=True,
        )
        for shard, until_ms, peek in zip(stale, until, peeks, strict=True):
            if isinstance(peek, BaseException):
                self._errors.note("peek schedules", peek)
                self._seen.pop(shard.shard, None)
                continue
            full = len(peek) >= self.peek
            self._seen[shard.shard] = _Seen(
                dict(peek), peek[-1][1] if full else until_ms, now
            )

    async def _roll(
        self,
        shard: ShardKeys,
        seen: _Seen,
        due: list[bytes],
        now_ms: int,
    ) -> float:
        """Roll one shard's due schedules, ring the workers' doorbell
        when that made occurrences (at once: a big minute's other shards
        need not be rolled first), and say how soon to look again."""
        try:
            records = await self.store.get_many(shard, due)
        except Exception as exc:
            self._errors.note(f"schedules of shard {shard.shard}", exc)
            seen.peeked_at = 0.0
            return self.settings.tick_interval
        calls: list[asyncio.Future[Rolled]] = []
        plans: list[tuple[ScheduleRecord, RollPlan]] = []
        for sid, record in zip(due, records, strict=True):
            if record is None or record.next_ms is None:
                # Deleted, paused or ended since the peek.
                seen.members.pop(sid, None)
                continue
            if record.next_ms > now_ms:
                seen.members[sid] = record.next_ms
                continue
            try:
                plan, call = self._call(shard, record, now_ms)
            except Exception as exc:
                # One unreadable schedule must not hold up the others.
                self._errors.note(f"schedule {sid.hex()}", exc)
                seen.members.pop(sid, None)
                continue
            calls.append(call)
            plans.append((record, plan))
        replies = await asyncio.gather(*calls, return_exceptions=True)
        created = 0
        again_s = self.settings.tick_interval
        for (record, plan), reply in zip(plans, replies, strict=True):
            sid = record.schedule_id
            if isinstance(reply, BaseException):
                self._errors.note(f"roll shard {shard.shard}", reply)
                seen.peeked_at = 0.0
                continue
            if reply.code is Code.DONE:
                created += reply.created
                if plan.next_ms is None:
                    seen.members.pop(sid, None)
                else:
                    seen.members[sid] = plan.next_ms
                if plan.missed:
                    self._missed(record, plan)
            elif reply.code is Code.EARLY:
                again_s = min(again_s, EARLY_SLEEP_S)
            elif reply.code is Code.FULL:
                self._paused_until[shard.shard] = (
                    time.monotonic() + FULL_PAUSE_S
                )
                again_s = min(again_s, FULL_PAUSE_S)
            else:
                # Changed under the read (an edit, another roller): the
                # next look reads it again.
                seen.members.pop(sid, None)
                seen.peeked_at = 0.0
        self.created_total += created
        if created:
            try:
                await ring(self.queue.connection, self.queue.keys, [shard])
            except Exception as exc:
                self._errors.note("doorbell", exc)
        return again_s

    def _call(
        self, shard: ShardKeys, record: ScheduleRecord, now_ms: int
    ) -> tuple[RollPlan, asyncio.Future[Rolled]]:
        """The plan of a due schedule's roll, and the call making it."""
        assert record.next_ms is not None
        plan = plan_roll(
            record.schedule_id,
            record.definition,
            record.next_ms,
            now_ms,
            self.settings.shards,
            self.grace_ms,
        )
        own = record.definition.own_request()
        requests = [
            occurrence_request(
                own, occurrence.id, record.schedule_id, occurrence.scheduled_ms
            )
            for occurrence in plan.fire
        ]
        call = asyncio.ensure_future(
            self.store.roll(shard, record, plan, requests)
        )
        return plan, call

    def _missed(self, record: ScheduleRecord, plan: RollPlan) -> None:
        """Log a roll that found the service had been down."""
        self.missed_total += plan.missed
        log.info(
            "occurrences missed",
            extra={
                "schedule": record.schedule_id.hex(),
                "missed": plan.missed,
                "fired": len(plan.fire),
                "policy": record.definition.misfire,
            },
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Roll until ``stop``: a loop per Redis node of the held shards,
        started and ended as the ticker's leases (or the slot map)
        change."""
        loops: dict[str, asyncio.Task[None]] = {}

        async def node_loop(node: str) -> None:
            async def step() -> float:
                return await self.roll_shards(self.groups().get(node, []))

            await supervise(f"roll {node}", step, stop, self._errors)

        async def regroup() -> float:
            groups = self.groups()
            for node in groups:
                if node not in loops or loops[node].done():
                    loops[node] = asyncio.create_task(node_loop(node))
            for node in [n for n in loops if n not in groups]:
                loops.pop(node).cancel()
            return self.settings.tick_interval

        try:
            await supervise("roll groups", regroup, stop, self._errors)
        finally:
            for task in loops.values():
                task.cancel()
            await asyncio.gather(*loops.values(), return_exceptions=True)
            log.info(
                "roller stopped",
                extra={
                    "created": self.created_total,
                    "missed": self.missed_total,
                },
            )
