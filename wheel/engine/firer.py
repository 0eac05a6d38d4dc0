"""Firer: claims ready entries, sends their webhooks, records outcomes.

Every entry handed to :meth:`Firer.dispatch` already holds one permit
of the worker's :class:`~wheel.engine.capacity.Capacity`; the permit is
given back when the entry needs no webhook or its webhook is done. A
completion is kept until it is written: it is retried on any Redis error,
with backoff, for as long as the claim holds (after that another worker
may take the entry over), and while it waits the reader takes no new
work from that completion's Redis node (the other nodes' shards go on).

The firer knows which entries it holds (:attr:`Firer.held`), from their
dispatch to their end, and each is dispatched once at a time: an entry
handed over twice (by a read that recovers what a lost reply left
pending, and by the reclaimer) is claimed once. A claim or a reclaim
that fails leaves entries pending under this worker that it does not
hold; their shard is noted in :attr:`Firer.lost` for the reader to read
them back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from wheel.core import ids
from wheel.core.delays import (
    CLAIM_MARGIN_S,
    backoff_s,
    honour_retry_after,
    outcome_of,
)
from wheel.core.states import Code, Outcome, Verdict
from wheel.core.webhook_request import unpack
from wheel.engine.capacity import Capacity
from wheel.runtime import metrics
from wheel.runtime.lifecycle import ErrorLog, LineLimit
from wheel.settings import Settings
from wheel.storage.errors import REDIS_ERRORS, describe
from wheel.storage.keys import ShardKeys
from wheel.storage.minute_stats import MinuteCounters
from wheel.storage.shards import (
    Attempt,
    Claim,
    Deferral,
    Entry,
    ShardQueue,
)
from wheel.webhooks.host_limits import LOCAL_WAIT_S, HostLimiter
from wheel.webhooks.sender import (
    Delivery,
    WebhookSender,
    destination_prefix,
    host_key,
)

log = logging.getLogger(__name__)

GONE = 410
"""A receiver's 410 Gone: the timer fails at once, no retry."""
COMPLETE_CALL_S = 5.0
"""Deadline of one completion call (it is retried until the claim ends)."""
COMPLETE_BACKOFF_S = 0.02
COMPLETE_BACKOFF_MAX_S = 1.0
"""First and longest pause between two tries of a completion."""


@dataclass(eq=False)
class _Waiter:
    """A claimed timer waiting (with its permit) for a permit of its host."""

    shard: ShardKeys
    entry: Entry
    claim: Claim
    sent_at: float
    timer: asyncio.TimerHandle | None = None


def _nothing() -> None:
    pass


class Unreplicated(Exception):
    """A write that ran on the master without enough replica acks (for
    the log: counted, not retried)."""


class Firer:
    """Claims, fires and completes the entries a reader hands over."""

    def __init__(
        self,
        queue: ShardQueue,
        sender: WebhookSender,
        capacity: Capacity,
        settings: Settings,
        consumer: str,
        rng: random.Random | None = None,
        minutes: MinuteCounters | None = None,
    ) -> None:
        self.queue = queue
        self.sender = sender
        self.capacity = capacity
        self.settings = settings
        self.consumer = consumer
        self.rng = rng or random.Random()
        self.minutes = minutes
        self.hosts = HostLimiter(
            settings.host_share, ceiling=settings.worker_concurrency
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._waiting: dict[str, collections.deque[_Waiter]] = {}
        self.stuck: collections.Counter[str] = collections.Counter()
        """Completions retrying a write, by Redis node: the reader takes
        no new work from those nodes meanwhile (only from those)."""
        self.on_unstuck: Callable[[], None] = _nothing
        """Called when a node's last retrying completion is written."""
        self.held: set[tuple[int, bytes]] = set()
        """Entries from their dispatch to their end here, as (shard,
        stream entry id)."""
        self.lost: set[int] = set()
        """Shards where entries may be pending under this worker that it
        does not hold: a read, claim or reclaim whose outcome is unknown
        took them. The reader reads them back
        (:meth:`ShardQueue.read_own
        <wheel.storage.shards.ShardQueue.read_own>`)."""
        self.counts = {
            "fired": 0,
            "retried": 0,
            "failed": 0,
            "deferred": 0,
            "stale": 0,
            "abandoned": 0,
        }
        self._hold_s = settings.reclaim_idle
        self._errors = ErrorLog(log)
        self._failure_lines = LineLimit()
        self._abandon_lines = LineLimit()

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.ensure_future(work())
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def close(self) -> None:
        """The worker is stopping: start no timer it has not claimed.

        A timer waiting for its host is claimed and still starts; an
        entry waiting to look again at another worker's claim
        (:meth:`_recheck_later`) is left pending here, for a reclaim,
        rather than claimed and sent now only to be cut off by the end
        of the shutdown grace.
        """
        self._closing.set()

    def _done(self, task: asyncio.Future[None]) -> None:
        """Forget a finished task, and log what it raised: every error of
        a firing task is seen (each path already handles Redis' own; this
        is the owner of last resort, for a bug)."""
        self.tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._errors.note("fire", exc)

    def holds(self, shard: int, entry_id: bytes) -> bool:
        """Whether the entry is dispatched here and not yet done."""
        return (shard, entry_id) in self.held

    def _release(self, shard: ShardKeys, entry: Entry) -> None:
        self.held.discard((shard.shard, entry.entry_id))

    async def dispatch(self, shard: ShardKeys, entries: list[Entry]) -> None:
        """Claim ``entries`` (each holding a permit) and start their webhooks.

        An entry this firer already holds is left to its first dispatch
        (its permit goes back): claiming it again would replay that
        claim and send its webhook twice.

        Never raises: a claim that cannot be made gives the permits back
        and leaves the entries pending under this worker; their shard is
        marked :attr:`lost`, for the reader to read them back.
        """
        fresh = []
        for entry in entries:
            key = (shard.shard, entry.entry_id)
            if key not in self.held:
                self.held.add(key)
                fresh.append(entry)
        if len(fresh) < len(entries):
            self.capacity.give(len(entries) - len(fresh))
        entries = fresh
        if not entries:
            return
        sent_at = time.monotonic()
        # Timers for destinations the worker would defer anyway are
        # deferred inside the claim: no claim written, no permit held, no
        # completion call each.
        saturated = self.hosts.saturated()
        try:
            claims = await self.queue.claim(
                shard,
                self.consumer,
                entries,
                [
                    Deferral(
                        host.prefix,
                        int(host.first_s * 1000),
                        int(host.step_s * 1000),
                    )
                    for host in saturated
                ],
            )
        except Exception as exc:
            self.capacity.give(len(entries))
            for entry in entries:
                self._release(shard, entry)
            self.lost.add(shard.shard)
            self._errors.note("claim", exc)
            return
        unused = 0
        for entry, claim in zip(entries, claims, strict=True):
            if claim.verdict is Verdict.FIRE:
                self._start(shard, entry, claim, sent_at)
                continue
            unused += 1
            if claim.verdict not in (Verdict.BUSY, Verdict.EARLY):
                # Done with in the claim; the other two end in a task.
                self._release(shard, entry)
            if claim.verdict is Verdict.DEFERRED:
                # Its place in the host's virtual queue is taken (the
                # script numbers the destinations it was given from 1).
                if 0 < claim.deferral <= len(saturated):
                    self.hosts.defer_s(saturated[claim.deferral - 1].host)
                self._count_deferred()
            elif claim.verdict is Verdict.DEAD:
                self._count("failed", "fail")
            elif claim.verdict is Verdict.BUSY:
                self._recheck_later(shard, entry, claim.wait_ms)
            elif claim.verdict is Verdict.EARLY:
                self._spawn(functools.partial(self._requeue, shard, entry))
        if unused:
            self.capacity.give(unused)

    def _start(
        self, shard: ShardKeys, entry: Entry, claim: Claim, sent_at: float
    ) -> None:
        host = host_key(claim.url)
        if self.hosts.try_take(host):
            self._spawn(lambda: self._fire(shard, entry, claim, host, sent_at))
            return
        if self.hosts.worth_waiting(host):
            waiter = _Waiter(shard, entry, claim, sent_at)
            self._waiting.setdefault(host, collections.deque()).append(waiter)
            waiter.timer = asyncio.get_running_loop().call_later(
                LOCAL_WAIT_S, self._waited_too_long, host, waiter
            )
            return
        self.hosts.note_prefix(host, destination_prefix(claim.url))
        self._spawn(lambda: self._defer(shard, entry, claim, host, sent_at))

    def _next_waiter(self, host: str) -> None:
        """A permit of ``host`` freed: start the oldest timer waiting."""
        queue = self._waiting.get(host)
        if not queue:
            return
        if self.hosts.try_take(host):
            waiter = queue.popleft()
            if waiter.timer is not None:
                waiter.timer.cancel()
            self._spawn(
                lambda: self._fire(
                    waiter.shard,
                    waiter.entry,
                    waiter.claim,
                    host,
                    waiter.sent_at,
                )
            )
        if not queue:
            del self._waiting[host]

    def _waited_too_long(self, host: str, waiter: _Waiter) -> None:
        queue = self._waiting.get(host)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:  # started meanwhile
            return
        if not queue:
            del self._waiting[host]
        self.hosts.note_prefix(host, destination_prefix(waiter.claim.url))
        self._spawn(
            lambda: self._defer(
                waiter.shard, waiter.entry, waiter.claim, host, waiter.sent_at
            )
        )

    def _recheck_later(
        self, shard: ShardKeys, entry: Entry, wait_ms: int
    ) -> None:
        # Another worker's claim is in flight; this worker now owns the
        # entry (it reclaimed it), so it looks again when that claim lapses.
        closing = self._closing

        async def recheck() -> None:
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), wait_ms / 1000)
                if closing.is_set():
                    return
                await self.capacity.take(1)
            finally:
                self._release(shard, entry)
            if closing.is_set():
                self.capacity.give(1)
                return
            await self.dispatch(shard, [entry])

        self._spawn(recheck)

    async def _requeue(self, shard: ShardKeys, entry: Entry) -> None:
        try:
            await self.queue.requeue(shard, entry)
        except Exception as exc:
            self._errors.note("requeue", exc)
        finally:
            self._release(shard, entry)

    async def _fire(
        self,
        shard: ShardKeys,
        entry: Entry,
        claim: Claim,
        host: str,
        sent_at: float,
    ) -> None:
        if claim.attempt == 1:
            # Here, as the attempt starts: a timer deferred for its host
            # is claimed as a first attempt again later.
            late_ms = max(
                0, self.queue.clocks.now_ms(shard.shard) - claim.due_ms
            )
            metrics.FIRE_LATENESS.observe(late_ms / 1000)
            if self.minutes:
                self.minutes.late(late_ms)
        started = time.monotonic()
        delivery: Delivery | None = None
        try:
            delivery = await self._send(entry, claim)
        except Exception as exc:
            # The sender answers every failure of a receiver with a
            # Delivery; what it raises is this code's own fault. Counted
            # as a failed attempt, the timer keeps its backoff, attempt
            # limit and dead letter; left pending, it would be reclaimed
            # and sent again by this worker without end.
            self._errors.note("send", exc)
            delivery = Delivery.failed(exc)
        finally:
            took_s = time.monotonic() - started
            self.hosts.give(host, took_s)
            self._next_waiter(host)
            metrics.WEBHOOK_DURATION.observe(took_s)
            if delivery is None:
                # Cancelled at shutdown: the entry stays pending.
                self.capacity.give(1)
                self._release(shard, entry)
        try:
            await self._finish(
                shard,
                entry,
                claim,
                host,
                delivery,
                sent_at,
                int(took_s * 1000),
            )
        finally:
            self.capacity.give(1)
            self._release(shard, entry)

    async def _send(self, entry: Entry, claim: Claim) -> Delivery:
        """The webhook of a claimed timer: its own request, if it has one,
        the same on every attempt."""
        timer_id = ids.to_text(entry.timer_id)
        if not claim.request:
            return await self.sender.send(claim.url, timer_id)
        try:
            request = unpack(claim.request)
        except ValueError as exc:
            return Delivery(
                False, f"unreadable stored request: {exc}", None, True
            )
        return await self.sender.send(claim.url, timer_id, request)

    async def _finish(
        self,
        shard: ShardKeys,
        entry: Entry,
        claim: Claim,
        host: str,
        delivery: Delivery,
        sent_at: float,
        took_ms: int = 0,
    ) -> None:
        if delivery.final or delivery.status == GONE:
            # 410: the receiver says the resource is gone for good.
            outcome, delay_ms = Outcome.FAIL, 0
        else:
            outcome, delay_ms = outcome_of(
                delivery.ok,
                claim.attempt,
                self.settings.max_attempts,
                self.settings.retry_base,
                self.settings.retry_max,
                self.rng,
            )
            if outcome is Outcome.RETRY:
                delay_ms = honour_retry_after(
                    delay_ms,
                    delivery.status,
                    delivery.retry_after_s,
                    self.settings.retry_after_max,
                )
        result = str(delivery.status) if delivery.status else delivery.result
        attempt = Attempt(
            entry,
            claim.attempt,
            outcome,
            result,
            delay_ms,
            took_ms,
            claim.schedule_id,
        )
        code = await self._write(shard, attempt, sent_at)
        if code is None:
            return
        if code is Code.STALE:
            self.counts["stale"] += 1
            log.warning(
                "stale completion ignored",
                extra={"id": ids.to_text(entry.timer_id)},
            )
            return
        key = {"ok": "fired", "retry": "retried", "fail": "failed"}[outcome]
        self._count(key, outcome.value)
        if outcome is not Outcome.OK:
            # One line per destination per interval: a receiver that is
            # down fails every timer sent to it (each attempt is in the
            # timer's history, each failure in the metrics).
            self._failure_lines.log(
                host,
                log.info,
                "webhook failed",
                {
                    "id": ids.to_text(entry.timer_id),
                    "attempt": claim.attempt,
                    "result": delivery.result,
                    "outcome": outcome.value,
                },
            )

    async def _defer(
        self,
        shard: ShardKeys,
        entry: Entry,
        claim: Claim,
        host: str,
        sent_at: float,
    ) -> None:
        delay_ms = int(self.hosts.defer_s(host) * 1000)
        attempt = Attempt(
            entry, claim.attempt, Outcome.DEFER, "deferred", delay_ms
        )
        try:
            code = await self._write(shard, attempt, sent_at)
        finally:
            self.capacity.give(1)
            self._release(shard, entry)
        if code is Code.DONE:
            self._count_deferred()

    def _count_deferred(self) -> None:
        self.counts["deferred"] += 1
        metrics.DEFERRED.inc()
        if self.minutes:
            self.minutes.add("deferred")

    def _count(self, key: str, outcome: str) -> None:
        self.counts[key] += 1
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        if self.minutes:
            self.minutes.add(key)

    async def _write(
        self, shard: ShardKeys, attempt: Attempt, sent_at: float
    ) -> Code | None:
        """Complete ``attempt``, retrying until written or the claim ends.

        Any Redis error is retried, with backoff, for as long as the claim
        holds: a completion that gives up lets the entry be reclaimed and
        its webhook sent again. One the replicas did not confirm in time
        is done (it ran on the master), counted and logged, never retried.
        Returns None when the claim lapsed first (the entry will be
        reclaimed; a webhook that was sent may then be sent again).
        """
        give_up_at = sent_at + self._hold_s - CLAIM_MARGIN_S
        node = self.queue.connection.node_of(shard.ready)
        tries = 0
        waiting = False
        try:
            while True:
                left_s = give_up_at - time.monotonic()
                try:
                    completed = await self.queue.complete(
                        shard,
                        self.consumer,
                        attempt,
                        deadline_s=max(0.1, min(COMPLETE_CALL_S, left_s)),
                    )
                except REDIS_ERRORS as exc:
                    if not waiting:
                        waiting = True
                        self.stuck[node] += 1
                    pause = backoff_s(
                        tries,
                        COMPLETE_BACKOFF_S,
                        COMPLETE_BACKOFF_MAX_S,
                        self.rng,
                    )
                    tries += 1
                    if time.monotonic() + pause >= give_up_at:
                        self.counts["abandoned"] += 1
                        self._abandon_lines.log(
                            node,
                            log.warning,
                            "completion abandoned: the claim lapsed",
                            {
                                "id": ids.to_text(attempt.entry.timer_id),
                                "outcome": attempt.outcome.value,
                                "error": describe(exc),
                            },
                        )
                        return None
                    await asyncio.sleep(pause)
                    continue
                if not completed.replicated:
                    metrics.UNREPLICATED_WRITES.labels("complete").inc()
                    self._errors.note(
                        "complete",
                        Unreplicated(
                            "a completion ran on the master but was not "
                            "confirmed by its replicas in time"
                        ),
                        expected=True,
                    )
                return completed.code
        finally:
            if waiting:
                self.stuck[node] -= 1
                if not self.stuck[node]:
                    del self.stuck[node]
                    self.on_unstuck()

    async def wait_idle(self, timeout_s: float | None) -> bool:
        """Wait for in-flight work, and work it starts (a timer that
        waited for its host); False when some was left."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.tasks or self._waiting:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if not self.tasks:
                await asyncio.sleep(min(0.05, left or 0.05))
                continue
            await asyncio.wait(set(self.tasks), timeout=left)
        return True
