"""Per-host limits on webhooks in flight, and the spacing of deferrals."""

from __future__ import annotations

import pytest

from wheel.webhooks.host_limits import (
    EWMA_WEIGHT,
    INITIAL_ATTEMPT_S,
    LOCAL_WAIT_S,
    MAX_HOSTS,
    MIN_DEFER_S,
    QUICK_S,
    HostLimiter,
)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("limit", [1, 2, 5, 64])
def test_limit_per_host(limit: int) -> None:
    """A host takes ``limit`` slots, then refuses until one is given."""
    hosts = HostLimiter(limit, Clock())
    assert [hosts.try_take("a.example") for _ in range(limit)] == [
        True
    ] * limit
    assert not hosts.try_take("a.example")
    assert hosts.in_flight("a.example") == limit
    hosts.give("a.example", 0.1)
    assert hosts.in_flight("a.example") == limit - 1
    assert hosts.try_take("a.example")
    assert not hosts.try_take("a.example")


def test_hosts_are_independent() -> None:
    """One host at its limit does not hold up another."""
    hosts = HostLimiter(1, Clock())
    assert hosts.try_take("slow.example")
    assert not hosts.try_take("slow.example")
    assert hosts.try_take("fast.example")
    assert hosts.in_flight("slow.example") == 1
    assert hosts.in_flight("fast.example") == 1
    assert hosts.in_flight("idle.example") == 0


@pytest.mark.parametrize(
    ("took", "mean_s"),
    [
        ([], INITIAL_ATTEMPT_S),
        ([2.0], 1.2),
        ([0.0], 0.8),
        ([2.0, 0.0], 0.96),
        ([5.0] * 3, 5.0 - 4.0 * 0.8**3),
    ],
)
def test_give_updates_the_mean_attempt_time(
    took: list[float], mean_s: float
) -> None:
    """Each attempt time moves the host's mean by EWMA_WEIGHT of the gap."""
    assert EWMA_WEIGHT == 0.2
    hosts = HostLimiter(1, Clock())
    for took_s in took:
        assert hosts.try_take("h")
        hosts.give("h", took_s)
    assert hosts.in_flight("h") == 0
    # At the limit, the first deferral is one mean time over the limit.
    assert hosts.try_take("h")
    assert hosts.defer_s("h") == pytest.approx(mean_s)


@pytest.mark.parametrize(
    ("limit", "took_s"), [(1, None), (2, None), (8, None), (4, 3.0)]
)
def test_deferrals_of_a_host_are_spaced_at_mean_over_limit(
    limit: int, took_s: float | None
) -> None:
    """Deferrals at one instant queue one every mean/limit seconds."""
    hosts = HostLimiter(limit, Clock())
    mean_s = INITIAL_ATTEMPT_S
    if took_s is not None:
        assert hosts.try_take("h")
        hosts.give("h", took_s)
        mean_s += EWMA_WEIGHT * (took_s - mean_s)
    step = mean_s / limit
    delays = [hosts.defer_s("h") for _ in range(5)]
    assert delays == pytest.approx([step * n for n in range(1, 6)])


def test_deferral_queue_drains_with_time() -> None:
    """Time passing eats into the queue; once past it, delays restart."""
    clock = Clock(1000.0)
    hosts = HostLimiter(2, clock)
    assert hosts.defer_s("h") == pytest.approx(0.5)
    assert hosts.defer_s("h") == pytest.approx(1.0)
    assert hosts.defer_s("h") == pytest.approx(1.5)
    clock.now += 1.0
    # Next place is 1000 + 1.5, 0.5 from now, plus one step.
    assert hosts.defer_s("h") == pytest.approx(1.0)
    clock.now += 100.0
    assert hosts.defer_s("h") == pytest.approx(0.5)


def test_deferral_queues_are_per_host() -> None:
    """One host's backlog does not push back another host's deferrals."""
    hosts = HostLimiter(1, Clock())
    for _ in range(10):
        hosts.defer_s("busy.example")
    assert hosts.defer_s("other.example") == pytest.approx(INITIAL_ATTEMPT_S)


def test_deferral_is_never_below_the_minimum() -> None:
    """A host that answers instantly still gets MIN_DEFER_S per deferral."""
    hosts = HostLimiter(4, Clock())
    for _ in range(200):
        hosts.try_take("quick")
        hosts.give("quick", 0.0)
    delays = [hosts.defer_s("quick") for _ in range(3)]
    assert delays == [MIN_DEFER_S] * 3


def test_forgetting_idle_hosts_keeps_hosts_in_flight() -> None:
    """Past MAX_HOSTS, idle hosts are forgotten, never ones in flight."""
    clock = Clock()
    hosts = HostLimiter(2, clock)
    busy = [f"busy-{n}" for n in range(100)]
    for host in busy:
        assert hosts.try_take(host)
        assert hosts.try_take(host)
        clock.now += 1.0
    for n in range(MAX_HOSTS - len(busy)):
        hosts.try_take(f"idle-{n}")
        hosts.give(f"idle-{n}", 0.5)
        clock.now += 1.0
    for n in range(MAX_HOSTS):
        hosts.try_take(f"new-{n}")
        hosts.give(f"new-{n}", 0.5)
        clock.now += 1.0
    for host in busy:
        assert hosts.in_flight(host) == 2
        assert not hosts.try_take(host)
    hosts.give(busy[0], 0.5)
    assert hosts.in_flight(busy[0]) == 1
    assert len(hosts._hosts) <= MAX_HOSTS + 1


def test_forgetting_drops_the_least_recently_used_first() -> None:
    """An idle host used recently outlives older idle ones."""
    clock = Clock()
    hosts = HostLimiter(1, clock)
    for n in range(MAX_HOSTS):
        hosts.defer_s(f"idle-{n}")
        clock.now += 1.0
    # idle-0 is the oldest, but using it again makes it the newest.
    before = hosts.defer_s("idle-0")
    hosts.defer_s("newcomer")
    assert hosts.defer_s("idle-0") > before
    assert hosts.defer_s("idle-1") == pytest.approx(INITIAL_ATTEMPT_S)


def test_every_host_in_flight_is_kept_past_the_bound() -> None:
    """When no host is idle, a new host is still served and none dropped."""
    hosts = HostLimiter(1, Clock())
    for n in range(MAX_HOSTS):
        assert hosts.try_take(f"h{n}")
    assert hosts.try_take("one-more")
    assert hosts.in_flight("h0") == 1
    assert hosts.in_flight("one-more") == 1


def test_a_quick_host_is_worth_waiting_for_a_silent_one_is_not() -> None:
    """At its limit, a host that answered (or got busy) within
    LOCAL_WAIT_S is worth waiting for; one silent for longer is not."""
    clock = Clock(50.0)
    hosts = HostLimiter(2, clock)
    assert hosts.try_take("a") and hosts.try_take("a")
    clock.now += LOCAL_WAIT_S / 2
    assert hosts.worth_waiting("a")
    clock.now += LOCAL_WAIT_S
    assert not hosts.worth_waiting("a")
    hosts.give("a", 0.01)
    assert hosts.try_take("a")
    clock.now += LOCAL_WAIT_S / 2
    assert hosts.worth_waiting("a")


def _make_quick(hosts: HostLimiter, host: str, answers: int = 20) -> None:
    for _ in range(answers):
        assert hosts.try_take(host)
        hosts.give(host, 0.005)


def test_a_new_host_gets_its_share_and_no_more() -> None:
    """Before it has answered, a host is not known to be quick: it gets
    its share, however many permits the worker has."""
    hosts = HostLimiter(2, Clock(), ceiling=10)
    assert [hosts.try_take("new") for _ in range(3)] == [True, True, False]


def test_a_quick_host_borrows_up_to_the_ceiling() -> None:
    """A host that answers within QUICK_S may use every permit of the
    worker: nobody else waits longer than one of its answers for one."""
    clock = Clock()
    hosts = HostLimiter(2, clock, ceiling=10)
    _make_quick(hosts, "quick")
    assert [hosts.try_take("quick") for _ in range(11)] == [True] * 10 + [
        False
    ]


def test_a_slow_host_never_borrows() -> None:
    """A host whose mean attempt time is over QUICK_S keeps to its share,
    however idle the worker is: the rest stays for other destinations."""
    hosts = HostLimiter(3, Clock(), ceiling=10)
    for _ in range(20):
        assert hosts.try_take("slow")
        hosts.give("slow", 2 * QUICK_S)
    assert [hosts.try_take("slow") for _ in range(4)] == [True] * 3 + [False]


def test_a_quick_host_gone_silent_stops_borrowing() -> None:
    """Borrowing needs an answer within LOCAL_WAIT_S: a quick host that
    stops answering is held to its share from then on."""
    clock = Clock()
    hosts = HostLimiter(2, clock, ceiling=10)
    _make_quick(hosts, "h")
    assert [hosts.try_take("h") for _ in range(4)] == [True] * 4
    clock.now += 2 * LOCAL_WAIT_S
    assert not hosts.try_take("h")
    hosts.give("h", 0.005)
    # It answered again: borrowing resumes.
    assert hosts.try_take("h")


def test_without_a_ceiling_the_share_is_the_limit() -> None:
    """HostLimiter(share) alone never lends past the share."""
    hosts = HostLimiter(2, Clock())
    _make_quick(hosts, "h")
    assert [hosts.try_take("h") for _ in range(3)] == [True, True, False]


def test_saturated_lists_hosts_a_timer_would_be_deferred_for() -> None:
    """A host is saturated while at its share, not answering within
    LOCAL_WAIT_S, and its prefix is known; its deferrals are those
    defer_s would give, and listing them takes no place."""
    clock = Clock()
    hosts = HostLimiter(2, clock)
    for _ in range(2):
        assert hosts.try_take("slow.example")
    assert hosts.try_take("fast.example")
    hosts.note_prefix("fast.example", "http://fast.example")
    clock.now += LOCAL_WAIT_S / 2
    hosts.note_prefix("slow.example", "http://slow.example")
    assert hosts.saturated() == []  # answered (started) too recently
    clock.now += LOCAL_WAIT_S
    (slow,) = hosts.saturated()
    assert (slow.host, slow.prefix) == ("slow.example", "http://slow.example")
    assert slow.step_s == pytest.approx(INITIAL_ATTEMPT_S / 2)
    assert slow.first_s == pytest.approx(hosts.defer_s("slow.example"))
    assert hosts.saturated()[0].first_s == pytest.approx(
        slow.first_s + slow.step_s
    )
    hosts.give("slow.example", 5.0)
    assert hosts.saturated() == []


def test_saturated_needs_the_prefix() -> None:
    """Until one of its timers was deferred, a host's url spelling is
    unknown and the claim cannot match it: not listed."""
    clock = Clock()
    hosts = HostLimiter(1, clock)
    assert hosts.try_take("h")
    clock.now += 2 * LOCAL_WAIT_S
    assert hosts.saturated() == []
    hosts.note_prefix("h", "http://h")
    assert [s.host for s in hosts.saturated()] == ["h"]
