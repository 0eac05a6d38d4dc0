"""Rendezvous hashing of shards over live members."""

from __future__ import annotations

from collections import Counter

import pytest

from wheel.core import rendezvous
from wheel.core.rendezvous import assign


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


def _owners(live: list[str], shards: int) -> dict[int, str]:
    """The owner of each shard."""
    return {k: me for me, mine in _share(live, shards).items() for k in mine}


@pytest.mark.parametrize(("shards", "members"), [(16, 2), (48, 4), (7, 3)])
def test_no_member_holds_more_than_its_share(
    shards: int, members: int
) -> None:
    """The load bound: nobody holds more than ceil(S / T) shards (plain
    rendezvous hashing put 48 shards on 4 members as 6/10/15/17)."""
    sizes = [len(m) for m in _share(_members(members), shards).values()]
    assert sum(sizes) == shards
    assert max(sizes) <= -(-shards // members)


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
def test_a_join_moves_a_fair_share_mostly_to_the_new_member(
    before: int, shards: int, most_moved: float
) -> None:
    """Joining T members moves about 1/(T+1) of shards, nearly all of
    them to the newcomer (the load bound moves a few more)."""
    live = _members(before)
    old = _owners(live, shards)
    new = _owners([*live, "joiner"], shards)
    moved = [k for k in range(shards) if old[k] != new[k]]
    to_joiner = [k for k in moved if new[k] == "joiner"]
    assert shards / (before + 1) / 2 <= len(moved) <= most_moved * shards
    assert len(to_joiner) >= 0.85 * len(moved)


@pytest.mark.parametrize("leaver", range(5))
def test_a_leave_moves_mostly_the_leavers_shards(leaver: int) -> None:
    """When a member leaves, its shards change owner, and few others."""
    live = _members(5)
    old = _owners(live, 1024)
    rest = [me for me in live if me != live[leaver]]
    new = _owners(rest, 1024)
    held = [k for k in range(1024) if old[k] == live[leaver]]
    others_moved = [
        k for k in range(1024) if old[k] != live[leaver] and old[k] != new[k]
    ]
    assert all(new[k] != live[leaver] for k in held)
    assert len(others_moved) <= 0.15 * len(held)
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
    """1024 shards over 4 members: each holds 256 (the load bound)."""
    sizes = [len(mine) for mine in _share(live, 1024).values()]
    assert sizes == [256] * 4, sizes


def test_no_shards_means_nothing_to_hold() -> None:
    """With zero shards, a live member holds an empty set."""
    assert assign("a", ["a", "b"], 0) == frozenset()


def test_a_tie_goes_to_the_larger_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Equal weights (never seen with 64 bits) pick the larger name first,
    up to its share."""
    monkeypatch.setattr(rendezvous, "_weight", lambda member, shard: 7)
    rendezvous._assignment.cache_clear()
    try:
        assert assign("b", ["a", "b"], 4) == frozenset({0, 1})
        assert assign("a", ["a", "b"], 4) == frozenset({2, 3})
    finally:
        rendezvous._assignment.cache_clear()
