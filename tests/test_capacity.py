"""Webhook slots of a worker: taking, waiting in order, giving back."""

from __future__ import annotations

import asyncio

import pytest

from wheel.engine.capacity import Capacity


async def _settle() -> None:
    """Lets every ready task run until each waits again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def _waiters(
    capacity: Capacity, wants: list[int]
) -> list[asyncio.Task[int]]:
    """Starts one waiting ``take`` per entry of ``wants``, in order."""
    tasks = []
    for most in wants:
        tasks.append(asyncio.create_task(capacity.take(most)))
        await _settle()
    return tasks


@pytest.mark.parametrize(
    ("size", "takes", "got", "free"),
    [
        (4, [1], [1], 3),
        (4, [3, 3], [3, 1], 0),
        (4, [4, 1], [4, 0], 0),
        (4, [0], [0], 4),
        (2, [5], [2], 0),
        (0, [1], [0], 0),
    ],
)
def test_take_now(
    size: int, takes: list[int], got: list[int], free: int
) -> None:
    """take_now takes up to ``most`` of what is free, maybe nothing."""
    capacity = Capacity(size)
    assert [capacity.take_now(most) for most in takes] == got
    assert capacity.free == free
    assert capacity.busy == size - free


async def test_take_returns_at_once_when_slots_are_free() -> None:
    """With free slots and nobody waiting, take does not wait."""
    capacity = Capacity(5)
    assert await capacity.take(3) == 3
    assert await capacity.take(3) == 2
    assert capacity.busy == 5
    assert capacity.free == 0


async def test_a_waiter_gets_slots_only_when_they_are_free() -> None:
    """take waits while no slot is free, and returns once one is given."""
    capacity = Capacity(1)
    capacity.take_now(1)
    (task,) = await _waiters(capacity, [1])
    assert not task.done()
    capacity.give(1)
    assert await task == 1
    assert capacity.free == 0
    assert capacity.busy == 1


async def test_waiters_are_served_oldest_first() -> None:
    """Freed slots go to waiters in the order they started waiting."""
    capacity = Capacity(2)
    capacity.take_now(2)
    tasks = await _waiters(capacity, [1, 1, 1])
    for served in range(1, 4):
        capacity.give(1)
        await _settle()
        assert [t.done() for t in tasks] == [i < served for i in range(3)]
    assert [t.result() for t in tasks] == [1, 1, 1]


async def test_one_freed_slot_wakes_exactly_one_waiter() -> None:
    """A single freed slot completes one waiter; the rest keep waiting."""
    capacity = Capacity(3)
    capacity.take_now(3)
    tasks = await _waiters(capacity, [4, 4, 4, 4, 4])
    capacity.give(1)
    await _settle()
    assert [t.done() for t in tasks] == [True, False, False, False, False]
    assert tasks[0].result() == 1
    assert capacity.free == 0
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks[1:], return_exceptions=True)


@pytest.mark.parametrize(
    ("wants", "given", "got", "free"),
    [
        ([2, 2], 3, [2, 1], 0),
        ([2, 2], 5, [2, 2], 1),
        ([1, 3, 1], 4, [1, 3, None], 0),
        ([5], 2, [2], 0),
    ],
)
async def test_give_fills_waiters_in_order_up_to_their_most(
    wants: list[int], given: int, got: list[int | None], free: int
) -> None:
    """give(n) hands each waiter up to its ``most``, oldest first."""
    capacity = Capacity(8)
    capacity.take_now(8)
    tasks = await _waiters(capacity, wants)
    capacity.give(given)
    await _settle()
    assert [t.result() if t.done() else None for t in tasks] == got
    assert capacity.free == free
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_newcomer_does_not_jump_the_queue() -> None:
    """A take that arrives after a waiter waits behind it."""
    capacity = Capacity(1)
    capacity.take_now(1)
    (first,) = await _waiters(capacity, [1])
    capacity.give(1)
    (late,) = await _waiters(capacity, [1])
    assert await first == 1
    assert not late.done()
    capacity.give(1)
    assert await late == 1


async def test_a_cancelled_waiter_is_passed_over() -> None:
    """A waiter cancelled while waiting takes nothing; the next one does."""
    capacity = Capacity(1)
    capacity.take_now(1)
    gone, kept = await _waiters(capacity, [1, 1])
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    capacity.give(1)
    assert await kept == 1
    assert capacity.free == 0


async def test_a_waiter_cancelled_after_its_grant_gives_slots_back() -> None:
    """Slots granted to a waiter cancelled before it ran are not leaked."""
    capacity = Capacity(3)
    capacity.take_now(3)
    (task,) = await _waiters(capacity, [2])
    capacity.give(2)
    # Granted (its future has a result) but not yet resumed.
    assert capacity.free == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert capacity.free == 2
    assert capacity.busy == 1


async def test_a_cancelled_grant_passes_to_the_next_waiter() -> None:
    """Slots given back by a cancelled grantee go to the next waiter."""
    capacity = Capacity(1)
    capacity.take_now(1)
    first, second = await _waiters(capacity, [1, 1])
    capacity.give(1)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert await second == 1
    assert capacity.free == 0


async def test_busy_counts_taken_slots() -> None:
    """busy is the size less the free slots, through takes and gives."""
    capacity = Capacity(10)
    assert capacity.busy == 0
    await capacity.take(4)
    capacity.take_now(3)
    assert capacity.busy == 7
    capacity.give(5)
    assert capacity.busy == 2
    capacity.give(2)
    assert capacity.busy == 0
    assert capacity.free == capacity.size == 10
