"""Requests made in one turn of the event loop share one call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from wheel.storage.gather import Gatherer


class Calls:
    """A call that records what it was given and answers ``item * 10``."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.made: list[tuple[str, list[int]]] = []
        self.fail = fail
        self.results_short = False
        self.started = asyncio.Event()

    async def __call__(self, key: str, items: Sequence[int]) -> list[int]:
        self.made.append((key, list(items)))
        self.started.set()
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        results = [item * 10 for item in items]
        return results[:-1] if self.results_short else results


async def test_requests_of_one_turn_share_one_call() -> None:
    """Five requests for one key made together: one call, each its own
    result, in the order given."""
    calls = Calls()
    gatherer: Gatherer[str, int, int] = Gatherer(calls)
    results = await asyncio.gather(
        *(gatherer.submit("a", n) for n in range(5))
    )
    assert results == [0, 10, 20, 30, 40]
    assert calls.made == [("a", [0, 1, 2, 3, 4])]


async def test_keys_are_called_apart_and_groups_are_bounded() -> None:
    """Each key gets its own call; a group over ``most`` is split."""
    calls = Calls()
    gatherer: Gatherer[str, int, int] = Gatherer(calls, most=2)
    results = await asyncio.gather(
        gatherer.submit("a", 1),
        gatherer.submit("b", 2),
        gatherer.submit("a", 3),
        gatherer.submit("a", 4),
    )
    assert results == [10, 20, 30, 40]
    assert sorted(calls.made) == [("a", [1, 3]), ("a", [4]), ("b", [2])]


async def test_a_later_turn_makes_a_new_call() -> None:
    """A request made after a call went out is not held back for it."""
    calls = Calls()
    gatherer: Gatherer[str, int, int] = Gatherer(calls)
    assert await gatherer.submit("a", 1) == 10
    assert await gatherer.submit("a", 2) == 20
    assert calls.made == [("a", [1]), ("a", [2])]


async def test_a_failed_call_fails_each_request() -> None:
    """What the call raises reaches every request in it, and the next
    request starts afresh."""
    calls = Calls(fail=ConnectionError("lost"))
    gatherer: Gatherer[str, int, int] = Gatherer(calls)
    outcomes = await asyncio.gather(
        gatherer.submit("a", 1),
        gatherer.submit("a", 2),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [ConnectionError] * 2
    calls.fail = None
    assert await gatherer.submit("a", 3) == 30


async def test_a_result_count_that_does_not_match_fails_the_call() -> None:
    """A call that answers for fewer items than it was given is a bug:
    each request gets the error, none a wrong result."""
    calls = Calls()
    calls.results_short = True
    gatherer: Gatherer[str, int, int] = Gatherer(calls)
    with pytest.raises(RuntimeError, match="1 results for 2 requests"):
        await asyncio.gather(gatherer.submit("a", 1), gatherer.submit("a", 2))


async def test_a_request_given_up_before_its_group_leaves_is_not_sent() -> (
    None
):
    """A caller that gives up before the call goes out (a create whose
    client went away) is left out of it; the others get their results."""
    calls = Calls()
    gatherer: Gatherer[str, int, int] = Gatherer(calls)
    first = asyncio.ensure_future(gatherer.submit("a", 1))
    second = asyncio.ensure_future(gatherer.submit("a", 2))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == 20
    assert first.cancelled()
    assert calls.made == [("a", [2])]


async def test_a_group_given_up_entirely_makes_no_call() -> None:
    """Nothing left to send: no call at all."""
    calls = Calls()
    gatherer: Gatherer[str, int, int] = Gatherer(calls)
    only = asyncio.ensure_future(gatherer.submit("a", 1))
    await asyncio.sleep(0)
    only.cancel()
    with pytest.raises(asyncio.CancelledError):
        await only
    await asyncio.sleep(0)
    assert calls.made == []
    assert await gatherer.submit("a", 2) == 20


async def test_a_request_cancelled_in_flight_leaves_the_others_theirs() -> (
    None
):
    """A caller that gives up once the call is out (shutdown) does not
    take the others down."""
    calls = Calls()
    gatherer: Gatherer[str, int, int] = Gatherer(calls)
    first = asyncio.ensure_future(gatherer.submit("a", 1))
    second = asyncio.ensure_future(gatherer.submit("a", 2))
    await calls.started.wait()
    first.cancel()
    assert await second == 20
    assert first.cancelled()
    assert calls.made == [("a", [1, 2])]
