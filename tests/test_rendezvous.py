"""Rendezvous hashing of shards over live members."""

from __future__ import annotations

from collections import Counter

import pytest

from wheel import rendezvous
from wheel.rendezvous import assign


def _members(count: int) -> list[str]:
    return [f"ticker-{n:02d}" for n in range(count)]


def _share(live: list[str], shards: int) -> dict[str, frozenset[int]]:
    return {me: assign(me, live, shards) for me in live}


@pytest.mark.parametrize(
    ("members", "shards"),
    [
        (1, 1),
        (1, 16),
        (2, 16),
        (3, 16),
        (5, 16),
        (16, 16),
        (20, 16),
        (7, 4),
        (4, 1024),
        (9, 16384),
    ],
)
def test_every_shard_has_exactly_one_owner(members: int, shards: int) -> None:
    """Live members hold every shard, none twice."""
    held = _share(_members(members), shards)
    every = Counter(shard for mine in held.values() for shard in mine)
    assert set(every) == set(range(shards))
    assert set(every.values()) == {1}


@pytest.mark.parametrize(
    ("me", "live"),
    [
        ("new", ["a", "b"]),
        ("new", []),
        ("A", ["a"]),
        ("a ", ["a"]),
    ],
)
def test_a_member_not_live_owns_nothing(me: str, live: list[str]) -> None:
    """A member missing from the live list (not registered) holds nothing."""
    assert assign(me, live, 16) == frozenset()


@pytest.mark.parametrize(
    "other",
    [
        ["c", "a", "b"],
        ["a", "b", "c", "a"],
        ["b", "b", "c", "a", "c"],
        {"a", "b", "c"},
    ],
)
def test_order_and_duplicates_do_not_matter(
    other: list[str] | set[str],
) -> None:
    """The assignment depends only on the set of live members."""
    for me in ("a", "b", "c"):
        assert assign(me, ["a", "b", "c"], 64) == assign(me, other, 64)


def test_assignment_is_stable_across_calls() -> None:
    """The same membership always gives the same shards."""
    live = _members(4)
    first = _share(live, 256)
    assert _share(list(reversed(live)), 256) == first
    assert _share(live, 256) == first


@pytest.mark.parametrize(
    ("before", "shards", "most_moved"),
    [(1, 64, 0.70), (2, 256, 0.45), (4, 1024, 0.30), (9, 1024, 0.16)],
)
def test_a_join_moves_a_fair_share_only_to_the_new_member(
    before: int, shards: int, most_moved: float
) -> None:
    """Joining T members moves about 1/(T+1) of shards, all to the newcomer."""
    live = _members(before)
    old = _share(live, shards)
    new = _share([*live, "joiner"], shards)
    for me in live:
        assert new[me] <= old[me]
    moved = shards - sum(len(new[me]) for me in live)
    assert moved == len(new["joiner"])
    assert shards / (before + 1) / 2 <= moved <= most_moved * shards


@pytest.mark.parametrize("leaver", range(5))
def test_a_leave_moves_only_the_leavers_shards(leaver: int) -> None:
    """When a member leaves, only the shards it held change owner."""
    live = _members(5)
    old = _share(live, 1024)
    rest = [me for me in live if me != live[leaver]]
    new = _share(rest, 1024)
    for me in rest:
        assert new[me] >= old[me]
        assert new[me] - old[me] <= old[live[leaver]]
    assert assign(live[leaver], rest, 1024) == frozenset()


@pytest.mark.parametrize(
    "live",
    [
        _members(4),
        ["ticker-a", "ticker-b", "ticker-c", "ticker-d"],
        ["host-1:8000", "host-2:8000", "host-3:8000", "host-4:8000"],
        ["w0", "w1", "w2", "w3"],
    ],
)
def test_shards_are_balanced(live: list[str]) -> None:
    """1024 shards over 4 members: each within 35% of the mean."""
    sizes = [len(mine) for mine in _share(live, 1024).values()]
    mean = 1024 / len(live)
    assert all(abs(size - mean) <= 0.35 * mean for size in sizes), sizes


def test_no_shards_means_nothing_to_hold() -> None:
    """With zero shards, a live member holds an empty set."""
    assert assign("a", ["a", "b"], 0) == frozenset()


def test_a_tie_goes_to_the_larger_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Equal weights (never seen with 64 bits) pick the larger name."""
    monkeypatch.setattr(rendezvous, "_weight", lambda member, shard: 7)
    rendezvous._assignment.cache_clear()
    try:
        assert assign("b", ["a", "b"], 4) == frozenset(range(4))
        assert assign("a", ["a", "b"], 4) == frozenset()
    finally:
        rendezvous._assignment.cache_clear()
