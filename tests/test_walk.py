"""The listing's walk of a shard, as pure arithmetic: positions, which
buckets a page reads, what it takes, which buckets stay open."""

from __future__ import annotations

import pytest

from wheel.core import walk
from wheel.core.buckets import DAY_MS, HOUR_MS, MINUTE_MS, Bucket, Level
from wheel.core.walk import (
    START,
    Candidate,
    Filter,
    Position,
    Reading,
    before_coarse,
    coarse_position,
    item_position,
    open_buckets,
    plan,
    step,
    up_to,
)

T0 = 1_000 * DAY_MS
DAY = Bucket(Level.DAY, T0 // DAY_MS + 2)
HOUR = Bucket(Level.HOUR, T0 // HOUR_MS + 3)
MINUTE = Bucket(Level.MINUTE, T0 // MINUTE_MS + 1)
NEXT = Bucket(Level.MINUTE, T0 // MINUTE_MS + 2)
ID_A, ID_B = b"\x00" * 16, b"\xff" * 16


def test_order_of_positions() -> None:
    """A coarse bucket comes before the timers of its instant; a day
    before an hour; timers by due then id; END after all of an instant."""
    t = HOUR.cascade_ms
    assert before_coarse(DAY) > START
    assert before_coarse(HOUR) < coarse_position(HOUR, 0)
    assert coarse_position(HOUR, 0) < coarse_position(HOUR, 1)
    assert coarse_position(HOUR, 999) < item_position(t, ID_A)
    assert item_position(t, ID_A) < item_position(t, ID_B)
    assert item_position(t, ID_B) < up_to(t) < item_position(t + 1, ID_A)
    assert Position(t, walk.DAY) < Position(t, walk.HOUR)


def test_a_bucket_is_keyed_no_later_than_what_it_holds() -> None:
    """Each bucket's position is before every timer it can hold, and a
    cascade moves timers only later (into children)."""
    for coarse in (DAY, HOUR):
        first = before_coarse(coarse)
        assert first < item_position(coarse.start_ms, ID_A)
        for child in coarse.children():
            if child.level is Level.MINUTE:
                assert first < item_position(child.start_ms, ID_A)
            else:
                assert first < before_coarse(child)


def test_plan_orders_by_where_each_bucket_may_begin() -> None:
    """Index members become sources in walk order; a coarse bucket
    passed, or a minute bucket well behind, is not read."""
    index = [
        (NEXT, NEXT.start_ms + 5),
        (HOUR, HOUR.cascade_ms),
        (MINUTE, MINUTE.start_ms + 3),
        (DAY, DAY.cascade_ms),
    ]
    sources = plan(index, START, Filter())
    assert [s.bucket for s in sources] == [MINUTE, NEXT, HOUR, DAY]
    later = up_to(HOUR.cascade_ms + 1)
    assert [s.bucket for s in plan(index, later, Filter())] == [DAY]


def test_a_minute_bucket_a_minute_behind_is_still_read() -> None:
    """A minute bucket may hold timers due up to a minute past its span
    (named from a clock estimate): it is read until then."""
    index = [(MINUTE, MINUTE.start_ms)]
    just_after = up_to(MINUTE.end_ms + walk.MISNAMED_MS - 1)
    assert plan(index, just_after, Filter())
    assert not plan(index, up_to(MINUTE.end_ms + walk.MISNAMED_MS), Filter())


def test_due_range_skips_buckets_outside_it() -> None:
    """Buckets that cannot hold a timer due in range are not read."""
    index = [(MINUTE, MINUTE.start_ms), (HOUR, HOUR.cascade_ms)]
    after_hour = Filter(due_after=HOUR.end_ms)
    assert [s.bucket for s in plan(index, START, after_hour)] == []
    before_hour = Filter(due_before=HOUR.start_ms)
    assert [s.bucket for s in plan(index, START, before_hour)] == [MINUTE]


def cand(due: int, timer_id: bytes = ID_A) -> Candidate:
    """A timer found in a minute bucket or the stream."""
    return Candidate(item_position(due, timer_id), timer_id, due)


def test_step_takes_up_to_the_limit_in_order() -> None:
    """Candidates from buckets and stream merge; the limit cuts."""
    index = [(MINUTE, MINUTE.start_ms)]
    found = [cand(MINUTE.start_ms + i, bytes([i]) * 16) for i in (1, 3, 5)]
    reading = Reading(
        index,
        False,
        {MINUTE: (found, False)},
        [cand(MINUTE.start_ms + 2), cand(MINUTE.start_ms + 4)],
    )
    taken = step(reading, START, 4, Filter())
    assert [c.due_ms - MINUTE.start_ms for c in taken.taken] == [1, 2, 3, 4]
    assert taken.position == taken.taken[-1].position
    assert not taken.done
    rest = step(reading, taken.position, 4, Filter())
    assert [c.due_ms - MINUTE.start_ms for c in rest.taken] == [5]
    assert rest.done


def test_an_unread_bucket_bounds_the_page() -> None:
    """A bucket not read (or read in part) ends the page where it may
    begin: timers after that wait for the next page."""
    index = [(MINUTE, MINUTE.start_ms), (NEXT, NEXT.start_ms + 10)]
    reading = Reading(
        index,
        False,
        {MINUTE: ([cand(MINUTE.start_ms + 1)], False)},
        [cand(NEXT.start_ms + 20)],
    )
    taken = step(reading, START, 10, Filter())
    assert [c.due_ms for c in taken.taken] == [MINUTE.start_ms + 1]
    assert taken.position == Position(NEXT.start_ms + 10, walk.ITEM)
    assert not taken.done


def test_a_cut_index_slice_bounds_the_page() -> None:
    """When the index slice was cut at its limit, the page ends before
    the last score seen."""
    index = [(MINUTE, MINUTE.start_ms)]
    reading = Reading(index, True, {MINUTE: ([], False)}, [])
    taken = step(reading, START, 10, Filter())
    assert taken.position == up_to(MINUTE.start_ms - 1)
    assert not taken.done


def test_due_before_ends_the_shard() -> None:
    """Past due_before the shard is done."""
    reading = Reading([], False, {}, [cand(T0 + 5), cand(T0 + 50)])
    taken = step(reading, START, 10, Filter(due_before=T0 + 10))
    assert [c.due_ms for c in taken.taken] == [T0 + 5]
    assert taken.done


@pytest.mark.parametrize(
    ("position", "open_"),
    [
        (before_coarse(HOUR), []),
        (coarse_position(HOUR, 0), [HOUR]),
        (up_to(HOUR.start_ms + 10), [HOUR]),
        (up_to(HOUR.end_ms - 1), [HOUR]),
        (up_to(HOUR.end_ms), []),
        (START, []),
    ],
)
def test_a_bucket_is_open_while_its_children_are_ahead(
    position: Position, open_: list[Bucket]
) -> None:
    """Begun or passed, with its span not yet passed: open."""
    assert open_buckets(position, [HOUR]) == open_
