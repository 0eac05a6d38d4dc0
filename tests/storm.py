"""A fault storm: steady creates while random roles are killed.

Two APIs, two tickers and two workers run as real processes against a
real Redis and receiver. Clients create timers at a steady rate, each
with an ``Idempotency-Key``, and retry a failed create on the other API
with the same key (what a careful client does). Every 2-4 s a random
role is SIGKILLed and started again; once, a worker is SIGSTOPped for
5 s. Afterwards every key must have fired exactly once, except timers
whose webhook was in flight when a worker was killed (the one duplicate
the delivery semantics allow).

Used by ``tests/test_storm.py`` (a short run) and
``benchmarks/fault_storm.py`` (the long form).
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.support import (
    BACK_S,
    LOADED_LATE_S,
    START_S,
    Procs,
    Receiver,
    takeover_s,
    wait_until,
)

STOP_S = 5.0
RETRY_FOR_S = 60.0
"""How long a client keeps retrying one create."""
REQUEST_TIMEOUT_S = 5.0
"""One attempt's timeout: a killed API's open connections hang."""
MIN_FAULTS = 4
MAX_DELAY_S = 3
"""The longest delay of the storm's timers (each 0-3 s)."""


@dataclass
class Kill:
    """One fault: what was hit and when."""

    role: str
    at: float
    kind: str = "kill"


@dataclass
class StormReport:
    """What a storm did and what arrived."""

    created: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key -> timer id, for every create that got an answer."""
    failed_creates: int = 0
    create_errors: Counter[str] = field(default_factory=Counter)
    """Why attempts of a create failed (an error or a status)."""
    faults: list[Kill] = field(default_factory=list)
    arrivals: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    unexplained_duplicates: list[str] = field(default_factory=list)
    duplicates: int = 0

    def summary(self) -> dict[str, object]:
        """The figures, for a benchmark's JSON and a test's message."""
        return {
            "timers": len(self.created),
            "failed_creates": self.failed_creates,
            "create_errors": dict(self.create_errors.most_common(5)),
            "faults": len(self.faults),
            "kills": Counter(f"{f.kind}:{f.role}" for f in self.faults),
            "lost": len(self.lost),
            "duplicates": self.duplicates,
            "unexplained_duplicates": len(self.unexplained_duplicates),
        }


class Storm:
    """Runs the storm on ``procs`` (which carry the Redis URL and env)."""

    def __init__(
        self,
        procs: Procs,
        receiver: Receiver,
        duration_s: float,
        rate: float = 150.0,
        seed: int = 7,
        webhook_timeout_s: float = 2.0,
    ) -> None:
        self.procs = procs
        self.receiver = receiver
        self.duration_s = duration_s
        self.rate = rate
        self.rng = random.Random(seed)
        self.webhook_timeout_s = webhook_timeout_s
        self.report = StormReport()
        self.roles: dict[str, list[subprocess.Popen[bytes]]] = {}
        self.apis: list[str] = []
        self._api_procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def start_roles(self) -> None:
        """Two of each role."""
        for _ in range(2):
            self.apis.append(self.procs.api())
            self._api_procs.append(self.procs.running[-1])
        for role in ("ticker", "worker"):
            self.roles[role] = [self.procs.role(role) for _ in range(2)]

    def run(self) -> StormReport:
        """Load and faults for ``duration_s``, then wait and judge."""
        self.start_roles()
        done = threading.Event()
        chaos = threading.Thread(target=self._chaos_logged, args=(done,))
        chaos.start()
        try:
            asyncio.run(self._load())
        finally:
            done.set()
            chaos.join(60)
        self._judge()
        return self.report

    async def _load(self) -> None:
        started = time.monotonic()
        deadline = started + self.duration_s
        # On a loaded machine restarts are slow: go on (up to three times
        # the duration) until the chaos did its minimum of faults.
        hard_stop = started + 3 * self.duration_s
        tasks = []
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
            n = 0
            while time.monotonic() < hard_stop and (
                time.monotonic() < deadline
                or len(self.report.faults) < MIN_FAULTS
            ):
                n += 1
                tasks.append(asyncio.create_task(self._create(client, n)))
                wait_s = started + n / self.rate - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
            await asyncio.gather(*tasks)

    async def _create(self, client: httpx.AsyncClient, n: int) -> None:
        key = str(uuid.uuid4())
        body = {
            "seconds": self.rng.randint(0, MAX_DELAY_S),
            "url": self.receiver.url,
        }
        give_up = time.monotonic() + RETRY_FOR_S
        attempt = 0
        while time.monotonic() < give_up:
            base = self.apis[(n + attempt) % len(self.apis)]
            attempt += 1
            try:
                reply = await client.post(
                    f"{base}/timer",
                    json=body,
                    headers={"Idempotency-Key": key},
                )
            except httpx.HTTPError as exc:
                self.report.create_errors[type(exc).__name__] += 1
                await asyncio.sleep(0.2)
                continue
            if reply.status_code in (200, 201):
                with self._lock:
                    self.report.created[key] = reply.json()["id"]
                return
            self.report.create_errors[str(reply.status_code)] += 1
            await asyncio.sleep(0.2)
        self.report.failed_creates += 1

    def _chaos_logged(self, done: threading.Event) -> None:
        try:
            self._chaos(done)
        except Exception as exc:  # a restart that failed: say so
            self.report.create_errors[f"chaos: {exc}"[:200]] += 1
            raise

    def _chaos(self, done: threading.Event) -> None:
        stopped_once = False
        while not done.wait(self.rng.uniform(2.0, 4.0)):
            if not stopped_once and self.rng.random() < 0.3:
                stopped_once = True
                self._pause_a_worker(done)
                continue
            role = self.rng.choice(["ticker", "worker", "api"])
            self._kill_and_restart(role)
        if not stopped_once:
            self._pause_a_worker(done)

    def _pause_a_worker(self, done: threading.Event) -> None:
        victim = self.rng.choice(self.roles["worker"])
        victim.send_signal(signal.SIGSTOP)
        self.report.faults.append(Kill("worker", time.time(), "stop"))
        done.wait(STOP_S)
        victim.send_signal(signal.SIGCONT)

    def _kill_and_restart(self, role: str) -> None:
        if role == "api":
            index = self.rng.randrange(len(self._api_procs))
            victim = self._api_procs[index]
            self.report.faults.append(Kill(role, time.time()))
            self.procs.kill(victim)
            port = int(self.apis[index].rsplit(":", 1)[1])
            self.procs.api(port)
            self._api_procs[index] = self.procs.running[-1]
            return
        group = self.roles[role]
        index = self.rng.randrange(len(group))
        self.report.faults.append(Kill(role, time.time()))
        self.procs.kill(group[index])
        group[index] = self.procs.role(role)

    def recovery_s(self) -> float:
        """How long after the storm every timer has fired, by the README's
        promises: the last creates are due MAX_DELAY_S later and fire on
        time; the last fault (over before the storm ends) costs at most
        the longest recovery: a killed worker's webhooks in flight fire
        again after WHEEL_RECLAIM_IDLE and the next sweep (one every
        WHEEL_RECLAIM_IDLE / 4) of a worker that may have been starting
        again; its shards go to the other worker once its heartbeat
        lapses; a killed ticker's lease lapses in WHEEL_LEASE_TTL, and the
        timers due meanwhile fire as soon as a ticker has its shards."""
        env = self.procs.env
        reclaim_s = float(env["WHEEL_RECLAIM_IDLE"])
        return max(
            MAX_DELAY_S + LOADED_LATE_S,
            reclaim_s + reclaim_s / 4 + START_S,
            takeover_s(float(env["WHEEL_HEARTBEAT_TTL"])),
            float(env["WHEEL_LEASE_TTL"]) + BACK_S,
        )

    def _judge(self) -> None:
        report = self.report
        wanted = set(report.created.values())
        wait_until(
            lambda: wanted <= set(self.receiver.ids()),
            timeout_s=self.recovery_s(),
            interval_s=0.2,
            what="every created timer to fire",
        )
        report.arrivals = self.receiver.ids()
        report.lost = sorted(wanted - set(report.arrivals))
        kills = [
            f.at
            for f in report.faults
            if f.role == "worker" and f.kind == "kill"
        ]
        firsts = self.receiver.first_arrival()
        for timer_id, count in report.arrivals.items():
            if count < 2:
                continue
            report.duplicates += 1
            first = firsts[timer_id]
            # In flight at a kill: sent before it, within one attempt.
            if not any(
                first - 0.5 <= at <= first + self.webhook_timeout_s + 1.0
                for at in kills
            ):
                report.unexplained_duplicates.append(timer_id)
