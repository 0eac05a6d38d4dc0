"""Firer: what it keeps while a host is at its limit (no Redis: the
queue and the sender are stand-ins that record what they are asked)."""

from __future__ import annotations

from typing import Any, cast

from wheel.core.states import Code, Outcome, Verdict
from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.settings import Settings
from wheel.storage.keys import Keys
from wheel.storage.replies import Completed
from wheel.storage.shards import Claim, Entry, ShardQueue
from wheel.webhooks.host_limits import LOCAL_WAIT_S, HostLimiter
from wheel.webhooks.sender import WebhookSender, host_key

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

    async def claim(
        self, shard: Any, consumer: str, entries: list[Entry]
    ) -> list[Claim]:
        return [Claim(Verdict.FIRE, URL, 1, 0) for _ in entries]

    async def complete(
        self, shard: Any, consumer: str, attempt: Any, deadline_s: float
    ) -> Completed:
        self.completed.append(attempt.outcome)
        return Completed(Code.DONE)


async def test_a_deferral_leaves_nothing_behind_for_shutdown() -> None:
    """A timer for a host at its limit that is not worth waiting for
    goes back on the wheel, and the firer is idle at once: no empty
    waiting line is left to hold a shutdown until its grace runs out."""
    now = [100.0]
    queue = RecordingQueue()
    capacity = Capacity(4)
    firer = Firer(
        cast(ShardQueue, queue),
        cast(WebhookSender, object()),
        capacity,
        Settings(host_concurrency=1, worker_concurrency=4),
        "w1",
    )
    firer.hosts = HostLimiter(1, clock=lambda: now[0])
    # The host took its one slot and has not answered since.
    assert firer.hosts.try_take(host_key(URL))
    now[0] += 2 * LOCAL_WAIT_S
    assert not firer.hosts.worth_waiting(host_key(URL))
    await capacity.take(1)
    await firer.dispatch(Keys("tw", 1).shard(0), [Entry(b"1-0", bytes(16), 0)])
    assert await firer.wait_idle(0.5)
    assert queue.completed == [Outcome.DEFER]
    assert capacity.free == 4
