"""Faults inside Redis, made for real, and what each one cost.

Each scenario runs the service's real processes (``Procs``) against a
real Redis (one server, a primary and its replica, or a 3 + 3 cluster)
and a real receiver on 127.0.0.1, makes one fault happen (a master
SIGKILLed or SIGSTOPped, a replica SIGSTOPped, ``CLIENT PAUSE``, writes
refused with ``NOREPLICAS`` or ``MISCONF``, a node added and slots moved,
workers restarted) and returns its :class:`Figures`: what the clients
were told, what the receiver got, and how late. ``tests/
test_redis_faults.py`` asserts the README's promises on them;
``benchmarks/redis_faults.py`` prints them for any checkout, old and new
side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import redis as sync_redis

from tests.support import (
    BACK_S,
    LOADED_LATE_S,
    PROMOTION_S,
    SETTLE_S,
    SNAPSHOT_S,
    STOP_S,
    Procs,
    Receiver,
    takeover_s,
    wait_until,
)
from wheel.core import ids
from wheel.embedded.cluster import EmbeddedCluster
from wheel.embedded.server import RedisServer
from wheel.settings import Settings
from wheel.storage.connection import DEADLINE_S
from wheel.storage.keys import GROUP, Keys
from wheel.storage.slots import key_slot

PROMOTION_GRACE_S = 5.0
"""README: a failed master's timers fire within its replica's promotion
plus this (every one: a read whose reply the failover lost is read back
at the next read), and /readyz is 200 again by then."""
CREATE_CONCURRENCY = 32


@dataclass
class Figures:
    """What one scenario cost: answers, deliveries, lateness, times."""

    acked: set[str] = field(default_factory=set)
    """Creates answered 201."""
    unknown: set[str] = field(default_factory=set)
    """Creates answered 503 naming their id (outcome unknown)."""
    unknown_found: set[str] | None = None
    """Those of :attr:`unknown` that GET showed existing, once looked up
    (None: not looked up)."""
    refused: Counter[int] = field(default_factory=Counter)
    """Other answers to creates, by status (0: no answer at all)."""
    due: dict[str, float] = field(default_factory=dict)
    """Due time (epoch s) of every acknowledged timer."""
    arrivals: Counter[str] = field(default_factory=Counter)
    first: dict[str, float] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    """Moments of the scenario (epoch s): fault, promotion, ready, ..."""
    groups: dict[str, set[str]] = field(default_factory=dict)
    """Timers by where they lived (e.g. "victim", "others")."""
    extra: dict[str, float] = field(default_factory=dict)

    def take(self, receiver: Receiver) -> None:
        """Record what the receiver got."""
        self.arrivals = receiver.ids()
        self.first = receiver.first_arrival()

    @property
    def lost(self) -> set[str]:
        """Acknowledged timers that never arrived."""
        return {t for t in self.acked if not self.arrivals[t]}

    @property
    def duplicated(self) -> set[str]:
        """Timers that arrived more than once."""
        return {t for t, n in self.arrivals.items() if n > 1}

    @property
    def unknown_misread(self) -> set[str]:
        """503s naming their id whose GET did not tell the truth: found
        (200) and never arrived, or not found (404) and arrived."""
        if self.unknown_found is None:
            return set()
        return {
            t
            for t in self.unknown
            if (t in self.unknown_found) != bool(self.arrivals[t])
        }

    @property
    def unexplained(self) -> set[str]:
        """Arrivals of ids no client was told about (a 503 without id
        that created a timer anyway)."""
        return set(self.arrivals) - self.acked - self.unknown - {""}

    def lateness(self, timer_ids: Sequence[str] | set[str]) -> list[float]:
        """Seconds from due to first arrival, of those that arrived."""
        return sorted(
            self.first[t] - self.due[t]
            for t in timer_ids
            if t in self.first and t in self.due
        )

    def summary(self) -> dict[str, float]:
        """The figures as numbers, for reports."""
        out: dict[str, float] = {
            "acked": len(self.acked),
            "unknown_503": len(self.unknown),
            "refused": sum(self.refused.values()),
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexplained": len(self.unexplained),
        }
        for status, n in sorted(self.refused.items()):
            out[f"refused_{status}"] = n
        for name, group in sorted(self.groups.items()):
            late = self.lateness(group)
            out[f"{name}_timers"] = len(group & self.acked)
            out[f"{name}_fired"] = len(late)
            if late:
                out[f"{name}_late_p50_s"] = round(percentile(late, 0.5), 3)
                out[f"{name}_late_p99_s"] = round(percentile(late, 0.99), 3)
                out[f"{name}_late_max_s"] = round(late[-1], 3)
        fault = self.times.get("fault")
        for name, at in sorted(self.times.items()):
            if fault is not None and name != "fault":
                out[f"{name}_after_fault_s"] = round(at - fault, 3)
        out.update(self.extra)
        return out


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of sorted ``values`` (nearest rank)."""
    if not values:
        return float("nan")
    rank = max(0, min(len(values) - 1, round(fraction * len(values)) - 1))
    return sorted(values)[rank]


def epoch_s(rfc3339: str) -> float:
    """An RFC 3339 instant as epoch seconds."""
    return datetime.fromisoformat(rfc3339).timestamp()


async def create_timers(
    base: str,
    url: str,
    delays_s: Sequence[int],
    figures: Figures,
    rate: float | None = None,
) -> list[str]:
    """POST one timer per delay (at ``rate`` a second, or as fast as
    :data:`CREATE_CONCURRENCY` clients go); the ids acknowledged."""
    acked: list[str] = []
    todo = list(enumerate(delays_s))
    started = time.monotonic()

    async def client(http: httpx.AsyncClient) -> None:
        while todo:
            index, delay = todo.pop(0)
            if rate:
                wait = started + index / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                reply = await http.post(
                    "/timer", json={"seconds": delay, "url": url}
                )
            except httpx.HTTPError:
                figures.refused[0] += 1
                continue
            if reply.status_code == 201:
                timer_id = reply.json()["id"]
                figures.acked.add(timer_id)
                acked.append(timer_id)
            elif reply.status_code == 503 and "id" in reply.json():
                figures.unknown.add(reply.json()["id"])
            else:
                figures.refused[reply.status_code] += 1

    clients = CREATE_CONCURRENCY if rate is None else max(4, int(rate))
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return acked


async def read_due(
    base: str, timer_ids: Sequence[str], figures: Figures
) -> None:
    """Record the due time of each id (GET, Redis' own clock)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for chunk in range(0, len(timer_ids), 64):
            replies = await asyncio.gather(
                *(
                    http.get(f"/timer/{t}")
                    for t in timer_ids[chunk : chunk + 64]
                ),
                return_exceptions=True,
            )
            for timer_id, reply in zip(
                timer_ids[chunk : chunk + 64], replies, strict=True
            ):
                if isinstance(reply, httpx.Response) and reply.is_success:
                    figures.due[timer_id] = epoch_s(reply.json()["due_at"])


def ready_at(base: str, after: float, deadline: float) -> float | None:
    """The first moment after ``after`` at which /readyz answers 200
    (polled every 0.1 s until ``deadline``), or None."""
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            ok = httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            if ok and time.time() >= after:
                return time.time()
        time.sleep(0.1)
    return None


def settle(
    figures: Figures, receiver: Receiver, until: float, wanted: set[str]
) -> None:
    """Wait until every wanted id arrived or ``until`` (epoch s) passed,
    then a moment more for duplicates, and record the arrivals."""
    with contextlib.suppress(AssertionError):
        wait_until(
            lambda: wanted <= set(receiver.ids()),
            timeout_s=max(0.1, until - time.time()),
            what="the timers",
        )
    # A duplicate would come within a reclaim of the first: the callers
    # give the settings' reclaim time as extra wait when they want it.
    figures.take(receiver)


def back_by(figures: Figures) -> float:
    """When every timer of a scenario has fired once its fault is over
    (epoch s): those due while it lasted "as soon as Redis is back"
    (BACK_S from now), the later ones by their due time plus a loaded
    machine's lateness."""
    last_due = max(figures.due.values(), default=0.0)
    return max(time.time() + BACK_S, last_due + LOADED_LATE_S)


# -- where a timer lives ----------------------------------------------------


def slot_owners(node_url: str) -> dict[int, int]:
    """The port of the master of each slot, as ``node_url`` sees it."""
    client = sync_redis.Redis.from_url(node_url, socket_timeout=5)
    try:
        owners = {}
        for first, last, master, *_ in client.execute_command(
            "CLUSTER", "SLOTS"
        ):
            for slot in range(int(first), int(last) + 1):
                owners[slot] = int(master[1])
        return owners
    finally:
        client.close()


def port_of_timer(timer_id: str, keys: Keys, owners: dict[int, int]) -> int:
    """The master port that holds ``timer_id``'s shard."""
    raw = ids.parse(timer_id)
    assert raw is not None
    shard = keys.shard(ids.shard_of(raw, keys.shards))
    return owners[key_slot(shard.index)]


def promoted(
    cluster: EmbeddedCluster, victim_port: int, ask: RedisServer
) -> bool:
    """Whether every slot is served again, none by ``victim_port``."""
    try:
        owners = slot_owners(ask.url)
    except sync_redis.RedisError:
        return False
    return len(owners) == 16384 and victim_port not in owners.values()


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block, SIGCONT after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# -- the scenarios --------------------------------------------------------


def run_roles(procs: Procs, tickers: int = 2, workers: int = 2) -> str:
    """An API, tickers and workers; the API's base URL."""
    base = procs.api()
    for _ in range(tickers):
        procs.role("ticker")
    for _ in range(workers):
        procs.role("worker")
    return base


def master_failover(
    cluster: EmbeddedCluster,
    procs: Procs,
    receiver: Receiver,
    keys: Keys,
    timers: int = 1000,
) -> Figures:
    """SIGKILL the master holding most timers, under load, with replica
    acks: timers due in 6-10 s are created first, then more at 40/s
    around the kill (due 4-8 s after their create, so none is in flight
    at the kill)."""
    figures = Figures()
    base = run_roles(procs)
    acked = asyncio.run(
        create_timers(
            base, receiver.url, [6 + i % 5 for i in range(timers)], figures
        )
    )
    owners = slot_owners(cluster.masters()[0].url)
    ports = Counter(port_of_timer(t, keys, owners) for t in acked)
    victim_port = ports.most_common(1)[0][0]
    victim = next(n for n in cluster if n.port == victim_port)
    survivor = next(n for n in cluster.masters() if n.port != victim_port)

    def watch() -> None:
        # From the kill on, beside the load: the promotion and the
        # readiness after it are timed when they happen, not when the
        # load has ended.
        wait_until(
            lambda: promoted(cluster, victim_port, survivor),
            timeout_s=PROMOTION_S,
            interval_s=0.05,
            what="a replica promoted",
        )
        figures.times["promoted"] = time.time()
        # README: /readyz is 200 again within PROMOTION_GRACE_S of the
        # promotion, and the failed master's timers fire by then.
        ready = ready_at(
            base,
            figures.times["promoted"],
            figures.times["promoted"] + PROMOTION_GRACE_S,
        )
        if ready is not None:
            figures.times["ready"] = ready

    async def around_the_kill() -> None:
        load = asyncio.create_task(
            create_timers(
                base,
                receiver.url,
                [4 + i % 5 for i in range(400)],
                figures,
                rate=40,
            )
        )
        await asyncio.sleep(1.0)
        figures.times["fault"] = time.time()
        cluster.kill(cluster.nodes.index(victim))
        await asyncio.gather(asyncio.to_thread(watch), load)

    asyncio.run(around_the_kill())
    asyncio.run(read_due(base, sorted(figures.acked), figures))
    owners_before = owners
    victims = {
        t
        for t in figures.acked
        if port_of_timer(t, keys, owners_before) == victim_port
    }
    figures.groups = {"victim": victims, "others": figures.acked - victims}
    last_due = max(figures.due.values(), default=time.time())
    settle(
        figures,
        receiver,
        max(last_due, figures.times["promoted"]) + PROMOTION_GRACE_S,
        figures.acked,
    )
    after_promotion = [
        figures.first[t] - max(figures.due[t], figures.times["promoted"])
        for t in victims
        if t in figures.first and t in figures.due
    ]
    figures.extra["victim_late_after_promotion_max_s"] = round(
        max(after_promotion, default=float("nan")), 3
    )
    figures.extra["victim_late_after_promotion_p99_s"] = round(
        percentile(after_promotion, 0.99) if after_promotion else float("nan"),
        3,
    )
    return figures


def replica_stop(
    primary: RedisServer,
    replica: RedisServer,
    procs: Procs,
    receiver: Receiver,
    timers: int = 600,
    stop_s: float = 12.0,
) -> Figures:
    """SIGSTOP the only replica for ``stop_s`` while ``timers`` timers
    due in 3-4 s fire and more are created, with replica acks on."""
    figures = Figures()
    base = run_roles(procs, tickers=1, workers=2)
    before = asyncio.run(
        create_timers(
            base, receiver.url, [3 + i % 2 for i in range(timers)], figures
        )
    )
    assert replica.pid is not None
    figures.times["fault"] = time.time()
    with stopped(replica.pid):
        asyncio.run(
            create_timers(base, receiver.url, [2] * 30, figures, rate=10)
        )
        figures.extra["unknown_during_stop"] = len(figures.unknown)
        asyncio.run(read_due(base, before, figures))
        settle(
            figures,
            receiver,
            figures.times["fault"] + stop_s,
            set(before),
        )
        figures.extra["fired_while_stopped"] = len(
            [t for t in before if t in receiver.first_arrival()]
        )
    figures.times["resumed"] = time.time()
    asyncio.run(read_due(base, sorted(figures.acked), figures))
    figures.groups = {"before": set(before)}
    figures.unknown_found = existing(base, figures.unknown)
    everything = figures.acked | figures.unknown_found
    settle(figures, receiver, back_by(figures), everything)
    return figures


def existing(base: str, timer_ids: set[str]) -> set[str]:
    """Those of ``timer_ids`` that exist: GET answers 200, not 404 (an
    answer that is neither, a 503 while Redis recovers, is asked again
    until the API's deadline has passed once more)."""
    with httpx.Client(base_url=base, timeout=10) as http:
        return {t for t in timer_ids if _found(http, t)}


def _found(http: httpx.Client, timer_id: str) -> bool:
    """Whether GET finds ``timer_id`` (200) or not (404), asked until it
    answers one of the two."""
    answers: list[int] = []

    def answered() -> bool:
        answers.append(http.get(f"/timer/{timer_id}").status_code)
        return answers[-1] in (200, 404)

    wait_until(
        answered,
        timeout_s=2 * DEADLINE_S,
        interval_s=0.1,
        what=f"GET /timer/{timer_id} to answer 200 or 404",
    )
    return answers[-1] == 200


def client_pause(
    redis_url: str,
    procs: Procs,
    receiver: Receiver,
    pause_s: float = 6.0,
    rate: float = 100.0,
) -> Figures:
    """``CLIENT PAUSE ALL`` for ``pause_s`` (past the API's 3 s deadline)
    under ``rate`` creates a second, timers due in 2 s."""
    figures = Figures()
    base = run_roles(procs, tickers=1, workers=1)
    seconds = pause_s + 6

    async def load_and_pause() -> None:
        load = asyncio.create_task(
            create_timers(
                base,
                receiver.url,
                [2] * int(rate * seconds),
                figures,
                rate=rate,
            )
        )
        await asyncio.sleep(2.0)
        client = sync_redis.Redis.from_url(redis_url)
        figures.times["fault"] = time.time()
        client.execute_command("CLIENT", "PAUSE", int(pause_s * 1000), "ALL")
        client.close()
        await load

    asyncio.run(load_and_pause())
    figures.times["resumed"] = figures.times["fault"] + pause_s
    asyncio.run(read_due(base, sorted(figures.acked), figures))
    figures.groups = {"acked": set(figures.acked)}
    figures.unknown_found = existing(base, figures.unknown)
    everything = figures.acked | figures.unknown_found
    figures.extra["unknown_that_exist"] = len(figures.unknown_found)
    settle(figures, receiver, back_by(figures), everything)
    return figures


def refused_writes(
    redis_url: str,
    procs: Procs,
    receiver: Receiver,
    refuse: Callable[[sync_redis.Redis], Callable[[], None]],
    reclaim_s: float,
    timers: int = 200,
    refuse_s: float = 3.0,
) -> Figures:
    """Writes refused for ``refuse_s`` while ``timers`` webhooks are in
    flight (the receiver holds each for a second): ``refuse`` starts the
    refusal and returns what ends it. Arrivals are counted once no ready
    entry is pending any more, on any shard: a completion lost to the
    refusal leaves its entry pending until a reclaim (``reclaim_s``, the
    roles' WHEEL_RECLAIM_IDLE, and a sweep) fires it again, and only that
    second attempt's completion removes it. That wait is bounded by the
    reclaim and a sweep after the refusal."""
    figures = Figures()
    base = run_roles(procs, tickers=1, workers=1)
    acked = asyncio.run(
        create_timers(base, receiver.url, [2] * timers, figures)
    )
    asyncio.run(read_due(base, acked, figures))
    # Refuse once the first webhooks are being answered.
    wait_until(
        lambda: len(receiver.arrivals) > 0,
        timeout_s=min(figures.due.values()) + LOADED_LATE_S - time.time(),
        interval_s=0.005,
        what="the first webhook",
    )
    client = sync_redis.Redis.from_url(redis_url)
    figures.times["fault"] = time.time()
    end = refuse(client)
    time.sleep(refuse_s)
    end()
    figures.times["resumed"] = time.time()
    figures.groups = {"acked": set(acked)}
    settle(figures, receiver, back_by(figures), set(acked))
    keys = Keys("tw", int(procs.env["WHEEL_SHARDS"]))
    try:
        with contextlib.suppress(AssertionError):
            wait_until(
                lambda: pending_entries(client, keys) == 0,
                timeout_s=max(
                    0.1,
                    figures.times["resumed"]
                    + reclaim_s * 1.25
                    + 1
                    - time.time(),
                ),
                what="every ready entry acknowledged",
            )
        figures.extra["pending_after"] = pending_entries(client, keys)
    finally:
        client.close()
    figures.take(receiver)
    return figures


def pending_entries(client: sync_redis.Redis, keys: Keys) -> int:
    """Ready entries read by a worker and not yet acknowledged, on every
    shard of one Redis (one pipeline)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.all_shards():
        pipe.xpending(shard.ready, GROUP)
    return sum(int(summary["pending"]) for summary in pipe.execute())


def refuse_noreplicas(client: sync_redis.Redis) -> Callable[[], None]:
    """Every write refused with NOREPLICAS (no replica, one required)."""
    client.config_set("min-replicas-to-write", 1)
    return lambda: client.config_set("min-replicas-to-write", 0)


def refuse_misconf(
    folder: Path,
) -> Callable[[sync_redis.Redis], Callable[[], None]]:
    """Every write refused with MISCONF: a snapshot that failed (its
    folder removed), with ``stop-writes-on-bgsave-error``."""

    def refuse(client: sync_redis.Redis) -> Callable[[], None]:
        gone = folder / "gone"
        gone.mkdir(parents=True, exist_ok=True)
        old_dir = client.config_get("dir")["dir"]
        client.config_set("save", "3600 1")
        client.config_set("stop-writes-on-bgsave-error", "yes")
        client.config_set("dir", str(gone))
        gone.rmdir()
        client.bgsave()
        wait_until(
            lambda: (
                client.info("persistence")["rdb_last_bgsave_status"] == "err"
            ),
            timeout_s=SNAPSHOT_S,
            what="the snapshot to fail",
        )

        def end() -> None:
            client.config_set("dir", old_dir)
            client.bgsave()
            wait_until(
                lambda: (
                    client.info("persistence")["rdb_last_bgsave_status"]
                    == "ok"
                ),
                timeout_s=SNAPSHOT_S,
                what="a snapshot to succeed",
            )
            client.config_set("save", "")

        return end

    return refuse


def master_stop(
    cluster: EmbeddedCluster,
    procs: Procs,
    receiver: Receiver,
    keys: Keys,
    timers: int = 900,
    stop_s: float = 8.0,
) -> Figures:
    """SIGSTOP one master for ``stop_s`` while timers due in 3-8 s on
    every master fire."""
    figures = Figures()
    base = run_roles(procs)
    acked = asyncio.run(
        create_timers(
            base, receiver.url, [3 + i % 6 for i in range(timers)], figures
        )
    )
    asyncio.run(read_due(base, acked, figures))
    owners = slot_owners(cluster.masters()[0].url)
    victim = cluster.masters()[1]
    assert victim.pid is not None
    stopped_ids = {
        t for t in acked if port_of_timer(t, keys, owners) == victim.port
    }
    figures.groups = {
        "stopped": stopped_ids,
        "others": set(acked) - stopped_ids,
    }
    figures.times["fault"] = time.time()
    with stopped(victim.pid):
        settle(
            figures,
            receiver,
            figures.times["fault"] + stop_s,
            figures.groups["others"],
        )
    figures.times["resumed"] = time.time()
    cluster.wait_ok()
    settle(figures, receiver, back_by(figures), set(acked))
    return figures


def rebalance(
    cluster: EmbeddedCluster,
    new_node: RedisServer,
    procs: Procs,
    receiver: Receiver,
    rate: float = 150.0,
) -> Figures:
    """Add a master with ``redis-cli --cluster add-node`` and rebalance
    while clients create ``rate`` timers a second, due in 2-5 s."""
    figures = Figures()
    base = run_roles(procs)
    first = cluster.masters()[0]
    seed = f"127.0.0.1:{first.port}"

    async def load_and_move() -> None:
        done = asyncio.Event()

        async def load() -> None:
            i = 0
            while not done.is_set():
                await create_timers(
                    base,
                    receiver.url,
                    [2 + (i + k) % 4 for k in range(int(rate))],
                    figures,
                    rate=rate,
                )
                i += 1

        loading = asyncio.create_task(load())
        await asyncio.sleep(2.0)
        figures.times["fault"] = time.time()
        await asyncio.to_thread(
            redis_cli,
            "--cluster",
            "add-node",
            f"127.0.0.1:{new_node.port}",
            seed,
        )
        await asyncio.to_thread(cluster_ok_with, cluster, new_node, 30.0)
        await asyncio.to_thread(
            redis_cli,
            "--cluster",
            "rebalance",
            seed,
            "--cluster-use-empty-masters",
            "--cluster-yes",
        )
        figures.times["moved"] = time.time()
        await asyncio.sleep(2.0)
        done.set()
        await loading

    asyncio.run(load_and_move())
    asyncio.run(read_due(base, sorted(figures.acked), figures))
    figures.groups = {"acked": set(figures.acked)}
    owners = slot_owners(first.url)
    figures.extra["slots_on_new_node"] = sum(
        1 for port in owners.values() if port == new_node.port
    )
    everything = figures.acked | existing(base, figures.unknown)
    settle(figures, receiver, back_by(figures), everything)
    return figures


def redis_cli(*args: str) -> str:
    """Run Debian's redis-cli; its output (raises on failure)."""
    done = subprocess.run(
        ["redis-cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout


def cluster_ok_with(
    cluster: EmbeddedCluster, node: RedisServer, timeout_s: float
) -> None:
    """Wait until ``node`` has joined and every node says ok."""
    nodes = [*cluster.live_nodes(), node]

    def joined() -> bool:
        for each in nodes:
            client = sync_redis.Redis.from_url(each.url, socket_timeout=2)
            try:
                info = client.execute_command("CLUSTER", "INFO").decode()
                known = client.execute_command("CLUSTER", "NODES").decode()
            except sync_redis.RedisError:
                return False
            finally:
                client.close()
            if "cluster_state:ok" not in info:
                return False
            if f":{node.port}@" not in known:
                return False
        return True

    wait_until(joined, timeout_s=timeout_s, what="the new node to join")


def worker_restarts(
    redis_url: str,
    procs: Procs,
    receiver: Receiver,
    restarts: int = 8,
) -> Figures:
    """Restart the one worker ``restarts`` times, by SIGTERM and SIGKILL
    in turn, with timers firing; count the consumers left per group."""
    figures = Figures()
    base = procs.api()
    procs.role("ticker")
    worker = procs.role("worker")
    # Due at once, on time, or on a killed worker's shards once its
    # heartbeat lapsed (a SIGTERMed worker leaves the registry at once);
    # then the completion is recorded.
    fired_s = (
        max(
            LOADED_LATE_S,
            takeover_s(
                float(
                    procs.env.get(
                        "WHEEL_HEARTBEAT_TTL", Settings().heartbeat_ttl
                    )
                )
            ),
        )
        + SETTLE_S
    )
    for n in range(restarts):
        asyncio.run(create_timers(base, receiver.url, [0] * 20, figures))
        # Fired and recorded: a kill now leaves nothing in flight.
        wait_until(
            lambda: all_fired(base, figures.acked),
            timeout_s=fired_s,
            interval_s=0.1,
            what="the timers to fire",
        )
        if n % 2:
            procs.kill(worker)
        else:
            procs.terminate(worker, timeout_s=STOP_S)
        worker = procs.role("worker")
    figures.times["fault"] = time.time()
    figures.take(receiver)
    figures.extra["consumers_max"] = max(consumer_counts(redis_url).values())
    return figures


def all_fired(base: str, timer_ids: set[str]) -> bool:
    """Whether every one of ``timer_ids`` reads as fired."""
    with httpx.Client(base_url=base, timeout=10) as http:
        return all(
            http.get(f"/timer/{t}").json().get("status") == "fired"
            for t in timer_ids
        )


def consumer_counts(redis_url: str) -> dict[bytes, int]:
    """Consumers of the workers' group on every ready stream."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        counts = {}
        for key in client.scan_iter(match=b"*:r", count=1000):
            try:
                counts[key] = len(client.xinfo_consumers(key, "workers"))
            except sync_redis.ResponseError:
                counts[key] = 0
        return counts
    finally:
        client.close()


def describe(figures: Figures) -> str:
    """One line per figure, for a failing assertion's message."""
    return ", ".join(f"{k}={v}" for k, v in figures.summary().items())


__all__ = [
    "Figures",
    "client_pause",
    "consumer_counts",
    "describe",
    "master_failover",
    "master_stop",
    "rebalance",
    "refuse_misconf",
    "refuse_noreplicas",
    "refused_writes",
    "replica_stop",
    "worker_restarts",
]
