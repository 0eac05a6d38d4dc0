"""Firer: what it keeps while a host is at its limit (no Redis: the
queue and the sender are stand-ins that record what they are asked)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from wheel.core.states import Code, Outcome, Verdict
from wheel.core.webhook_request import WebhookRequest, pack
from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.settings import Settings
from wheel.storage.errors import RedisUnavailable
from wheel.storage.keys import Keys
from wheel.storage.replies import Completed
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

URL = "http://receiver.example/hook"


class Clocks:
    def now_ms(self, shard: int) -> int:
        return 0


class OneNode:
    """A connection whose every key is on one node."""

    def node_of(self, key: bytes) -> str:
        return "node"


class RecordingQueue:
    """Claims every entry for firing; completes every attempt."""

    def __init__(self) -> None:
        self.clocks = Clocks()
        self.connection = OneNode()
        self.completed: list[Outcome] = []
        self.deferrals: list[list[Deferral]] = []
        """The deferrals each claim call named, one list per call."""
        self.busy_ms: int | None = None
        """Answer every claim BUSY for this long (another worker's)."""

    async def claim(
        self,
        shard: Any,
        consumer: str,
        entries: list[Entry],
        deferrals: Sequence[Deferral] = (),
    ) -> list[Claim]:
        """FIRE each entry; DEFERRED when its url's prefix is saturated
        (as ``claim.lua`` answers); BUSY with :attr:`busy_ms`."""
        self.deferrals.append(list(deferrals))
        if self.busy_ms is not None:
            return [Claim(Verdict.BUSY, wait_ms=self.busy_ms) for _ in entries]
        for number, deferral in enumerate(deferrals, 1):
            if deferral.prefix == destination_prefix(URL):
                return [
                    Claim(
                        Verdict.DEFERRED,
                        wait_ms=deferral.first_ms,
                        deferral=number,
                    )
                    for _ in entries
                ]
        return [Claim(Verdict.FIRE, URL, 1, 0) for _ in entries]

    async def complete(
        self, shard: Any, consumer: str, attempt: Any, deadline_s: float
    ) -> Completed:
        self.completed.append(attempt.outcome)
        return Completed(Code.DONE)


def busy_host_firer(queue: RecordingQueue, capacity: Capacity) -> Firer:
    """A firer whose one permit for URL's host (a share of 1) is taken
    by a webhook that has not answered for twice LOCAL_WAIT_S: a timer
    for that host is not worth waiting for."""
    now = [100.0]
    firer = Firer(
        cast(ShardQueue, queue),
        cast(WebhookSender, object()),
        capacity,
        Settings(host_concurrency=1, worker_concurrency=4),
        "w1",
    )
    firer.hosts = HostLimiter(1, clock=lambda: now[0])
    assert firer.hosts.try_take(host_key(URL))
    now[0] += 2 * LOCAL_WAIT_S
    assert not firer.hosts.worth_waiting(host_key(URL))
    return firer


def lateness_count() -> float:
    """How many lateness observations this process made."""
    count = REGISTRY.get_sample_value(
        "timer_wheel_fire_lateness_seconds_count"
    )
    return count or 0.0


async def test_a_deferral_leaves_nothing_behind_for_shutdown() -> None:
    """A timer for a host at its limit that is not worth waiting for
    goes back on the wheel, and the firer is idle at once: no empty
    waiting line is left to hold a shutdown until its grace runs out.
    Its lateness is not observed: it is a first attempt again when it
    comes back."""
    before = lateness_count()
    queue = RecordingQueue()
    capacity = Capacity(4)
    firer = busy_host_firer(queue, capacity)
    await capacity.take(1)
    await firer.dispatch(Keys("tw", 1).shard(0), [Entry(b"1-0", bytes(16), 0)])
    assert await firer.wait_idle(0.5)
    assert queue.completed == [Outcome.DEFER]
    assert capacity.free == 4
    assert lateness_count() == before


async def test_a_saturated_host_is_deferred_inside_the_claim() -> None:
    """Once a host's timer was deferred (its url's prefix is known), the
    next claims name it as saturated: its timers come back DEFERRED,
    counted, their permits given back, with no completion call; the
    deferrals take their places in the host's virtual queue."""
    queue = RecordingQueue()
    capacity = Capacity(4)
    firer = busy_host_firer(queue, capacity)
    shard = Keys("tw", 1).shard(0)
    await capacity.take(1)
    await firer.dispatch(shard, [Entry(b"1-0", bytes(16), 0)])
    assert await firer.wait_idle(0.5)
    assert queue.completed == [Outcome.DEFER]
    assert queue.deferrals == [[]]
    step_ms = int(1000 * firer.hosts.saturated()[0].step_s)

    await capacity.take(3)
    entries = [Entry(b"%d-0" % n, bytes(16), 0) for n in range(2, 5)]
    await firer.dispatch(shard, entries)

    assert queue.deferrals[1] == [
        Deferral(destination_prefix(URL), 2 * step_ms, step_ms)
    ]
    assert queue.completed == [Outcome.DEFER]
    assert firer.counts["deferred"] == 4
    assert capacity.free == 4
    # The three took the next three places: the next starts after them.
    assert firer.hosts.saturated()[0].first_s == pytest.approx(
        5 * step_ms / 1000
    )


class Answering:
    """A sender that answers every webhook with one ``Delivery`` and
    records the requests it was given."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.requests: list[WebhookRequest | None] = []

    async def send(
        self, url: str, timer_id: str, request: WebhookRequest | None = None
    ) -> Delivery:
        self.requests.append(request)
        return self.delivery


class KeepingQueue(RecordingQueue):
    """Claims with a request and keeps every attempt it completes."""

    def __init__(self, request: bytes = b"", attempt: int = 1) -> None:
        super().__init__()
        self.request = request
        self.attempt = attempt
        self.attempts: list[Attempt] = []

    async def claim(
        self,
        shard: Any,
        consumer: str,
        entries: list[Entry],
        deferrals: Sequence[Deferral] = (),
    ) -> list[Claim]:
        return [
            Claim(Verdict.FIRE, URL, self.attempt, 0, request=self.request)
            for _ in entries
        ]

    async def complete(
        self, shard: Any, consumer: str, attempt: Any, deadline_s: float
    ) -> Completed:
        self.attempts.append(attempt)
        return await super().complete(shard, consumer, attempt, deadline_s)


def firer_of(
    queue: RecordingQueue,
    sender: Answering,
    capacity: Capacity,
    **settings: Any,
) -> Firer:
    """A Firer of worker w1 over test doubles."""
    return Firer(
        cast(ShardQueue, queue),
        cast(WebhookSender, sender),
        capacity,
        Settings(**settings),
        "w1",
    )


async def fire_once(
    delivery: Delivery,
    request: bytes = b"",
    sender: Answering | None = None,
    **settings: Any,
) -> tuple[KeepingQueue, Answering]:
    """One timer fired through a Firer, every permit given back; what it
    completed and sent (by ``sender``, else one answering
    ``delivery``)."""
    queue = KeepingQueue(request)
    sender = sender or Answering(delivery)
    capacity = Capacity(4)
    firer = firer_of(
        queue,
        sender,
        capacity,
        **{"max_attempts": 5, "retry_base": 1.0, "retry_max": 2.0} | settings,
    )
    await capacity.take(1)
    await firer.dispatch(Keys("tw", 1).shard(0), [Entry(b"1-0", bytes(16), 0)])
    assert await firer.wait_idle(2.0)
    assert capacity.free == 4
    return queue, sender


async def test_gone_fails_at_once() -> None:
    """A 410 fails the timer after its first attempt: no retry."""
    queue, _ = await fire_once(Delivery(False, "HTTP 410", 410))
    (attempt,) = queue.attempts
    assert (attempt.outcome, attempt.result) == (Outcome.FAIL, "410")


@pytest.mark.parametrize(
    ("status", "wait_s", "cap_s", "at_least_ms", "at_most_ms"),
    [
        (503, 30.0, 3600.0, 30_000, 30_000),
        (429, 30.0, 3600.0, 30_000, 30_000),
        (503, 30.0, 10.0, 10_000, 10_000),
        (503, 0.0, 3600.0, 500, 1000),
        (500, 30.0, 3600.0, 500, 1000),
        (503, None, 3600.0, 500, 1000),
    ],
)
async def test_retry_after_sets_the_earliest_next_attempt(
    status: int,
    wait_s: float | None,
    cap_s: float,
    at_least_ms: int,
    at_most_ms: int,
) -> None:
    """A 429 or 503 with Retry-After waits that long (capped); other
    answers keep the plain backoff (here 0.5-1 s)."""
    delivery = Delivery(False, f"HTTP {status}", status, False, wait_s)
    queue, _ = await fire_once(delivery, retry_after_max=cap_s)
    (attempt,) = queue.attempts
    assert attempt.outcome is Outcome.RETRY
    assert at_least_ms <= attempt.delay_ms <= at_most_ms


async def test_lateness_is_observed_once_when_an_attempt_starts() -> None:
    """A first attempt that is sent observes its lateness, once."""
    before = lateness_count()
    await fire_once(Delivery(True, "HTTP 200", 200))
    assert lateness_count() == before + 1


async def test_own_request_is_sent_and_the_duration_recorded() -> None:
    """The claim's packed request reaches the sender; the attempt reports
    how long it took."""
    request = WebhookRequest("PUT", (("X-A", "1"),), "body")
    queue, sender = await fire_once(
        Delivery(True, "HTTP 200", 200), pack(request)
    )
    assert sender.requests == [request]
    (attempt,) = queue.attempts
    assert attempt.outcome is Outcome.OK
    assert attempt.duration_ms >= 0


async def test_default_webhook_sends_no_request() -> None:
    """A plain timer's claim: the sender is given no request."""
    _, sender = await fire_once(Delivery(True, "HTTP 200", 200))
    assert sender.requests == [None]


class Raising(Answering):
    """A sender that raises, as a bug in it would."""

    async def send(
        self, url: str, timer_id: str, request: WebhookRequest | None = None
    ) -> Delivery:
        raise OverflowError("date value out of range")


async def test_a_sender_that_raises_counts_a_failed_attempt() -> None:
    """An exception from the sender is a failed attempt, retried on the
    backoff: not an entry left pending, to be reclaimed and sent again
    without end."""
    unused = Delivery(True, "unused")
    queue, _ = await fire_once(unused, sender=Raising(unused))
    (attempt,) = queue.attempts
    assert attempt.outcome is Outcome.RETRY
    assert attempt.result == "OverflowError: date value out of range"


async def test_a_stopping_worker_does_not_wait_to_look_again() -> None:
    """An entry waiting out another worker's claim neither holds up a
    stop nor is claimed during it: it stays pending, for a reclaim."""
    queue = RecordingQueue()
    # Another worker's claim holds the timer for a minute more.
    queue.busy_ms = 60_000
    capacity = Capacity(4)
    firer = firer_of(
        queue, Answering(Delivery(True, "HTTP 200", 200)), capacity
    )
    await capacity.take(1)
    await firer.dispatch(Keys("tw", 1).shard(0), [Entry(b"1-0", bytes(16), 0)])
    assert firer.holds(0, b"1-0")
    firer.close()
    assert await firer.wait_idle(1.0)
    assert not firer.holds(0, b"1-0")
    assert (len(queue.deferrals), capacity.free) == (1, 4)


class HeldSender:
    """A sender whose webhooks wait until released."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.release = asyncio.Event()

    async def send(
        self, url: str, timer_id: str, request: WebhookRequest | None = None
    ) -> Delivery:
        self.sent.append(timer_id)
        await self.release.wait()
        return Delivery(True, "HTTP 200", 200)


async def test_an_entry_handed_over_twice_is_claimed_and_sent_once() -> None:
    """An entry dispatched while the firer still holds it (read back
    after a lost reply, and reclaimed) is left to its first dispatch:
    a second claim would replay the first and send the webhook twice.
    Once done, it is held no more."""
    queue = KeepingQueue()
    sender = HeldSender()
    capacity = Capacity(4)
    firer = Firer(
        cast(ShardQueue, queue),
        cast(WebhookSender, sender),
        capacity,
        Settings(),
        "w1",
    )
    shard = Keys("tw", 1).shard(0)
    entry = Entry(b"1-0", bytes(16), 0)
    await capacity.take(1)
    await firer.dispatch(shard, [entry])
    assert firer.holds(0, b"1-0")
    await capacity.take(1)
    await firer.dispatch(shard, [entry])
    assert capacity.free == 3
    sender.release.set()
    assert await firer.wait_idle(2.0)
    assert len(sender.sent) == 1
    assert len(queue.attempts) == 1
    assert firer.held == set()
    assert capacity.free == 4


class FailingClaimQueue(RecordingQueue):
    """Every claim fails as Redis does when its reply is lost."""

    async def claim(
        self,
        shard: Any,
        consumer: str,
        entries: list[Entry],
        deferrals: Sequence[Deferral] = (),
    ) -> list[Claim]:
        raise RedisUnavailable("no reply within 5.0s", maybe_applied=True)


async def test_a_failed_claim_marks_its_shard_for_a_read_back() -> None:
    """The entries of a failed claim stay pending under this worker: the
    permits go back, the firer holds none of them, and the shard is
    marked lost for the reader to read them back."""
    capacity = Capacity(4)
    firer = Firer(
        cast(ShardQueue, FailingClaimQueue()),
        cast(WebhookSender, object()),
        capacity,
        Settings(),
        "w1",
    )
    await capacity.take(2)
    entries = [Entry(b"1-0", bytes(16), 0), Entry(b"2-0", bytes(16), 0)]
    await firer.dispatch(Keys("tw", 4).shard(3), entries)
    assert firer.lost == {3}
    assert firer.held == set()
    assert capacity.free == 4
