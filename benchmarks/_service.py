"""The service's roles as real processes of the code under test, a
recording receiver, and readiness checked from outside."""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from _api import Creator
from _common import (
    BENCH_DIR,
    Code,
    Group,
    Proc,
    free_port,
    get_json,
    wait_http,
    wait_port,
)

READY_TIMEOUT_S = 60.0
CANARY_TIMEOUT_S = 60.0


def service_env(
    code: Code, redis_url: str, args: argparse.Namespace, **extra: object
) -> dict[str, str]:
    """The roles' environment: JSON logs, the harness' settings, and the
    guard opened for the 127.0.0.1 receivers (codes that have one)."""
    return code.env(
        redis_url=redis_url,
        shards=getattr(args, "shards", None),
        log_format="json",
        allow_private_targets=True,
        **extra,
    )


@dataclass
class Sink:
    """A ``sink.py`` process."""

    proc: Proc
    ports: list[int]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def url(self, path: str = "hook", index: int = 0) -> str:
        """The hook URL on the ``index``-th port."""
        return f"http://127.0.0.1:{self.ports[index]}/{path}"

    def urls(self, path: str = "hook") -> list[str]:
        """The hook URL of every port (each a receiver host of its own)."""
        return [self.url(path, i) for i in range(len(self.ports))]

    def count(self) -> int:
        return int(get_json(f"{self.base}/_count")["count"])

    def state(self) -> dict[str, int]:
        return get_json(f"{self.base}/_count")

    def dump(self) -> dict[str, list]:
        return get_json(f"{self.base}/_dump", timeout_s=300)


def start_sink(
    group: Group,
    name: str = "sink",
    record: bool = True,
    delay_s: float = 0.0,
    cpus: str | None = None,
    ports: int = 1,
    script: Path | None = None,
) -> Sink:
    """Start a receiver: ``benchmarks/sink.py``, or ``script``, another
    receiver with its command line (to measure what the receiver itself
    costs the machine)."""
    chosen = [free_port() for _ in range(ports)]
    cmd = [str(script or BENCH_DIR / "sink.py"), "--uvloop"]
    for port in chosen:
        cmd += ["--port", str(port)]
    if record:
        cmd.append("--record")
    if delay_s:
        cmd += ["--delay-s", str(delay_s)]
    proc = group.script(name, cmd, cpus=cpus)
    for port in chosen:
        wait_port(port)
    return Sink(proc, chosen)


@dataclass
class Service:
    """API, ticker and worker processes of one code, one environment."""

    group: Group
    code: Code
    env: dict[str, str]
    apis: list[Proc] = field(default_factory=list)
    api_urls: list[str] = field(default_factory=list)
    tickers: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    worker_gc: str | None = None
    """Run workers through ``gc_role.py`` with this GC threshold."""

    def start_api(self, cpus: str | None = None) -> str:
        port = free_port()
        name = f"api{len(self.apis)}"
        proc = self.group.role(
            self.code, name, ["api", "--port", str(port)], self.env, cpus
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", proc=proc, timeout_s=READY_TIMEOUT_S)
        self.apis.append(proc)
        self.api_urls.append(url)
        return url

    def start_roles(self, tickers: int, workers: int) -> list[Proc]:
        """Start the roles; returns at once (see :meth:`wait_beating`)."""
        started = []
        for _ in range(tickers):
            name = f"ticker{len(self.tickers)}"
            proc = self.group.role(self.code, name, ["ticker"], self.env)
            self.tickers.append(proc)
            started.append(proc)
        for _ in range(workers):
            name = f"worker{len(self.workers)}"
            if self.worker_gc:
                cmd = [
                    str(self.code.python),
                    str(BENCH_DIR / "gc_role.py"),
                    self.worker_gc,
                    "worker",
                ]
                proc = self.group.spawn(
                    name, cmd, self.env, cwd=self.code.root
                )
            else:
                proc = self.group.role(self.code, name, ["worker"], self.env)
            self.workers.append(proc)
            started.append(proc)
        return started

    def wait_beating(self, procs: list[Proc], redis_client) -> None:
        """Wait until each ticker and worker in ``procs`` is in its
        role's heartbeat set (``<prefix>:hb:<role>``, members
        ``host:pid:...`` in every version)."""
        prefix = self.env.get("WHEEL_KEY_PREFIX", "tw")
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = list(procs)
        while waiting:
            self.group.check_alive()
            if time.monotonic() > deadline:
                names = [p.name for p in waiting]
                raise TimeoutError(f"{names} not beating in time")
            for proc in list(waiting):
                role = proc.name.rstrip("0123456789")
                members = redis_client.zrange(f"{prefix}:hb:{role}", 0, -1)
                if any(f":{proc.pid}:".encode() in m for m in members):
                    waiting.remove(proc)
            time.sleep(0.1)

    def canaries(self, sink: Sink, count: int) -> list[str]:
        """Create ``count`` timers due in 1 s and wait until all arrived:
        every path (scripts, pools, leases of most shards) is warm."""
        before = sink.count()
        creator = Creator(self.api_urls, lanes=min(32, count))
        ids = asyncio.run(creator.delays(sink.url("canary"), [1] * count))
        deadline = time.monotonic() + CANARY_TIMEOUT_S
        while sink.count() < before + len(ids):
            self.group.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {sink.count() - before} of {len(ids)} canary "
                    "timers fired in time"
                )
            time.sleep(0.05)
        return ids

    def stop_roles(self) -> None:
        for proc in self.workers + self.tickers:
            self.group.stop(proc)

    def stop_apis(self) -> None:
        for proc in self.apis:
            self.group.stop(proc)
        self.apis.clear()
        self.api_urls.clear()


def log_summary(proc_log: Path) -> dict[str, object]:
    """The 'stopped' line and the warnings/errors of a role's log."""
    levels: collections.Counter[str] = collections.Counter()
    messages: collections.Counter[str] = collections.Counter()
    stopped = None
    gc_spent = None
    other = 0
    for line in proc_log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                other += 1
                if "Traceback" in line or "Error" in line:
                    messages[f"text: {line.strip()[:120]}"] += 1
            continue
        if not isinstance(entry, dict):
            continue
        if "gc_seconds" in entry:
            gc_spent = entry
        level = entry.get("level", "")
        if level in ("warning", "error", "critical"):
            levels[level] += 1
            messages[f"{level}: {entry.get('msg')}"] += 1
        if entry.get("msg") in ("worker stopped", "ticker stopped"):
            stopped = {
                k: v
                for k, v in entry.items()
                if k not in ("ts", "level", "logger", "msg")
            }
    summary: dict[str, object] = {
        "stopped": stopped,
        "levels": dict(levels),
        "top": dict(messages.most_common(12)),
    }
    if gc_spent:
        summary["gc"] = gc_spent
    return summary


def first_lines(proc_log: Path, level: str = "error", n: int = 3) -> list:
    """Up to ``n`` log lines at ``level`` or worse, verbatim."""
    wanted = {"warning": 0, "error": 1, "critical": 2}
    out = []
    for line in proc_log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if wanted.get(entry.get("level", ""), -1) >= wanted[level]:
            out.append(line[:600])
            if len(out) >= n:
                break
    return out
