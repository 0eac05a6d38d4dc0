"""Per-destination fairness: a bound on webhooks in flight to one host.

One receiver that answers slowly (or not at all, until the timeout) must
not take every webhook permit of a worker and hold up everyone else's
timers. Each host has a share of a worker's permits (``share``, half of
them by default). Within its share a host is never held back. Past it, a
host may borrow more, up to every permit, only while it is *quick*: its
mean attempt time is within :data:`QUICK_S` and it answered within
:data:`LOCAL_WAIT_S`. So the limit costs nothing when one destination
has all the work (a catch-up, a burst to one receiver): a permit held by
a quick host comes free within a fraction of a second, and the next
timer read, for any host, takes it. A host that is slow, silent or new
(its mean starts at :data:`INITIAL_ATTEMPT_S`) gets its share and no
more, so other destinations always keep the rest of the permits. A quick
host that turns silent stops borrowing within LOCAL_WAIT_S; the permits
it borrowed before are held until its webhooks time out.

A timer due for a host over its limit waits in the worker (a fraction of
a second, keeping its own permit) when the host is answering quickly and
a burst only outran it; otherwise it is not sent but put back on the
wheel (without counting an attempt) for when the host is expected to
have room: the deferrals of one host are spaced at the rate it has been
completing webhooks (``share`` per mean attempt time), so a backlog for
a slow host drains at that host's pace while other hosts' timers keep
their permits. Once one of a host's timers was deferred, the worker
knows how its urls begin, and :meth:`HostLimiter.saturated` names it to
the claim script, which defers the host's next timers itself instead of
claiming them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

LOCAL_WAIT_S = 0.2
"""How long a timer for a busy host may wait in the worker for a permit
(holding its own permit) before it is put back on the wheel."""
EWMA_WEIGHT = 0.2
"""Weight of the newest attempt time in a host's mean."""
INITIAL_ATTEMPT_S = 1.0
"""A new host's mean attempt time: slow until it has answered."""
QUICK_S = LOCAL_WAIT_S
"""Longest mean attempt time of a host that may borrow permits past its
share: what another destination's timer waits, at most, for one."""
MIN_DEFER_S = 0.05
MAX_HOSTS = 10_000
"""Hosts remembered; idle ones are forgotten past this."""


@dataclass(slots=True)
class _Host:
    in_flight: int = 0
    mean_s: float = INITIAL_ATTEMPT_S
    next_free: float = 0.0
    used_at: float = 0.0
    progress_at: float = 0.0
    """When the host last started answering or answered."""
    prefix: str = ""
    """How its timers' urls spell it (``destination_prefix``), once one
    was deferred: what the claim script matches to defer the next."""


@dataclass(frozen=True, slots=True)
class Saturated:
    """A host the worker would defer now, as the claim script takes it:
    its timers go back on the wheel ``first_s`` from now, each next one
    ``step_s`` after the one before."""

    host: str
    prefix: str
    first_s: float
    step_s: float


class HostLimiter:
    """Counts webhooks in flight per host and spaces deferrals.

    ``share`` is what a host may always have in flight; ``ceiling``
    (default: ``share``, no borrowing) what a quick host may borrow up to.
    """

    def __init__(
        self,
        share: int,
        clock: Callable[[], float] = time.monotonic,
        ceiling: int | None = None,
    ) -> None:
        self.share = share
        self.ceiling = max(share, ceiling or share)
        self._clock = clock
        self._hosts: dict[str, _Host] = {}
        self._full: set[str] = set()
        """Hosts with ``share`` or more webhooks in flight."""

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) >= MAX_HOSTS:
                self._forget_idle()
            state = self._hosts[host] = _Host()
        state.used_at = self._clock()
        return state

    def _forget_idle(self) -> None:
        idle = sorted(
            (s.used_at, h) for h, s in self._hosts.items() if not s.in_flight
        )
        for _, host in idle[: len(idle) // 2 + 1]:
            del self._hosts[host]

    def in_flight(self, host: str) -> int:
        """Webhooks in flight to ``host`` now."""
        state = self._hosts.get(host)
        return state.in_flight if state else 0

    def try_take(self, host: str) -> bool:
        """Take a permit of ``host``; False when it is at its limit (its
        share, or the ceiling for a quick host)."""
        state = self._host(host)
        if state.in_flight >= self.share and not self._may_borrow(state):
            return False
        if not state.in_flight:
            state.progress_at = state.used_at
        state.in_flight += 1
        if state.in_flight >= self.share:
            self._full.add(host)
        return True

    def _may_borrow(self, state: _Host) -> bool:
        return (
            state.in_flight < self.ceiling
            and state.mean_s <= QUICK_S
            and state.used_at - state.progress_at < LOCAL_WAIT_S
        )

    def give(self, host: str, took_s: float) -> None:
        """Give back a permit of ``host`` after an attempt of ``took_s``."""
        state = self._host(host)
        state.in_flight -= 1
        if state.in_flight < self.share:
            self._full.discard(host)
        state.mean_s += EWMA_WEIGHT * (took_s - state.mean_s)
        state.progress_at = state.used_at

    def worth_waiting(self, host: str) -> bool:
        """Whether a timer for ``host``, at its limit, should wait here for
        a permit rather than go back on the wheel: the host answered (or
        got busy) within :data:`LOCAL_WAIT_S` (it answers quickly; a
        burst only outran it). A waiter holds a permit of the worker, and
        waits at most that long, so a host turning slow holds the others
        up by no more."""
        state = self._host(host)
        return state.used_at - state.progress_at < LOCAL_WAIT_S

    def note_prefix(self, host: str, prefix: str) -> None:
        """Remember how ``host``'s urls spell it (see :meth:`saturated`)."""
        self._host(host).prefix = prefix

    def saturated(self) -> list[Saturated]:
        """The hosts a timer would be deferred for now (at their limit,
        not answering within :data:`LOCAL_WAIT_S`: neither borrowing nor
        worth waiting for), with the deferrals their virtual queues
        would give; only those whose prefix is known. Nothing changes
        here: :meth:`defer_s` takes each place when it is used."""
        now = self._clock()
        out = []
        for host in self._full:
            state = self._hosts.get(host)
            if (
                state is None
                or not state.prefix
                or now - state.progress_at < LOCAL_WAIT_S
            ):
                continue
            first, step = self._place(state, now)
            out.append(Saturated(host, state.prefix, first, step))
        return out

    def _place(self, state: _Host, now: float) -> tuple[float, float]:
        """The wait of the next free place in a host's virtual queue, and
        the step between two places (one every mean attempt time /
        share seconds)."""
        step = state.mean_s / self.share
        wait = max(now, state.next_free) - now + step
        return max(MIN_DEFER_S, wait), step

    def defer_s(self, host: str) -> float:
        """How long to put off a timer for ``host``, which is at its limit.

        Each deferral takes the next free place in the host's virtual
        queue, one every ``mean attempt time / share`` seconds.
        """
        state = self._host(host)
        now = self._clock()
        wait, step = self._place(state, now)
        state.next_free = max(now, state.next_free) + step
        return wait
