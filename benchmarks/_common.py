"""Shared plumbing of the benchmark harnesses: processes, Redis, stats."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from wheel.redis_server import RedisServer, free_port  # noqa: F401

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BIN_DIR = Path(sys.executable).parent
STOP_TIMEOUT_S = 20.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the harness dies (no orphans)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """``cmd`` prefixed with ``taskset -c cpus`` when asked and possible."""
    if cpus is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", cpus, *cmd]


def child_env(**wheel: object) -> dict[str, str]:
    """The environment for a child: no stray WHEEL_*, then ``wheel``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in wheel.items():
        if value is not None:
            env[f"WHEEL_{name.upper()}"] = str(value)
    return env


@dataclass
class Proc:
    """A child process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    may_exit: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """Every process a harness started; stops them all, newest first."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    redis: RedisServer | None = None

    def start_redis(self, appendonly: bool = False) -> RedisServer:
        self.redis = RedisServer(self.workdir / "redis", appendonly=appendonly)
        self.redis.start()
        return self.redis

    def spawn(
        self,
        name: str,
        cmd: Sequence[str],
        env: dict[str, str] | None = None,
        cpus: str | None = None,
        may_exit: bool = False,
    ) -> Proc:
        """Start ``cmd``; ``may_exit`` when it ends by itself (a profiler)."""
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            pinned(cmd, cpus),
            env=env or child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            cwd=BENCH_DIR.parent,
        )
        log.close()
        proc = Proc(name, popen, log_path, may_exit)
        self.procs.append(proc)
        return proc

    def role(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        cpus: str | None = None,
    ) -> Proc:
        """Start ``timer-wheel <args>`` from this venv."""
        return self.spawn(
            name, [str(BIN_DIR / "timer-wheel"), *args], env, cpus
        )

    def script(
        self, name: str, args: Sequence[str], cpus: str | None = None
    ) -> Proc:
        """Start a Python script of this folder with this interpreter."""
        return self.spawn(name, [sys.executable, *args], child_env(), cpus)

    def stop(self, proc: Proc) -> int | None:
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        return proc.popen.returncode

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        self.procs.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.may_exit and not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n"
                    f"{proc.log_tail()}"
                )


@contextlib.contextmanager
def cluster(workdir: Path) -> Iterator[Cluster]:
    """A :class:`Cluster` torn down on exit, SIGTERM or SIGINT."""
    workdir.mkdir(parents=True, exist_ok=True)
    group = Cluster(workdir)

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield group
    finally:
        group.close()
        signal.signal(signal.SIGTERM, previous)


def deadline_alarm(seconds: float) -> None:
    """End the harness (with teardown) after ``seconds`` whatever happens."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"harness time limit of {seconds:.0f}s reached")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(seconds)))


def wait_http(url: str, timeout_s: float = 20.0, proc: Proc | None = None):
    """Poll ``url`` until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} died:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in {timeout_s}s")


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    """Poll until something listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    except OSError:
        return float("nan")
    parts = fields.split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / ticks


def busy_seconds() -> float:
    """CPU seconds all CPUs of the machine spent busy so far."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU share (1.0 = one core) of named processes over a window.

    ``others`` is what the rest of the machine used meanwhile (other
    agents' tests on a shared box): a noisy run shows there.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._start = {n: cpu_seconds(p) for n, p in pids.items()}
        self._busy0 = busy_seconds()
        self._t0 = time.monotonic()

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        self._start[name] = cpu_seconds(pid)

    def shares(self, **used_s: float) -> dict[str, float]:
        """Shares since creation; ``used_s`` adds CPU seconds by name."""
        elapsed = time.monotonic() - self._t0
        out = {
            name: round((cpu_seconds(pid) - self._start[name]) / elapsed, 2)
            for name, pid in self.pids.items()
        }
        for name, seconds in used_s.items():
            out[name] = round(seconds / elapsed, 2)
        busy = (busy_seconds() - self._busy0) / elapsed
        out["others"] = round(max(0.0, busy - sum(out.values())), 2)
        return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` in [0, 100] of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "commit": code_version(),
        "cpus": cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "loadavg_1m": os.getloadavg()[0],
    }


def code_version() -> str:
    """The commit of the code under test, '+dirty' when wheel/ or api.py
    differ from it (others edit them while benchmarks run)."""
    root = BENCH_DIR.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "wheel", "api.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def save(name: str, data: dict[str, object]) -> Path:
    """Write ``data`` as JSON to results/<name>-<utc time>.json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
