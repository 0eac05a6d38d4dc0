"""The benchmarks' receiver (``benchmarks/sink.py``) counts and records
what the harnesses check for loss and duplicates: each test runs it as
the harnesses do, a process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import SIGNAL_S, START_S, poll, wait_until
from wheel.embedded.server import free_port

SINK = Path(__file__).parent.parent / "benchmarks" / "sink.py"


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _start(*args: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SINK), "--port", str(port), *args]
    )
    try:
        wait_until(lambda: _accepts(port), timeout_s=START_S, what="the sink")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=SIGNAL_S)


@pytest.fixture
def recording() -> Iterator[str]:
    yield from _start("--record", "--uvloop")


@pytest.fixture
def hanging() -> Iterator[str]:
    yield from _start("--delay-s", "60")


async def test_counts_and_records_every_arrival_on_one_connection(
    recording: str,
) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for key in ("a", "b", "a"):
            async with session.post(
                f"{recording}/hook",
                data=b'{"id": "x"}',
                headers={"Idempotency-Key": key},
            ) as reply:
                assert reply.status == 200
                assert await reply.json() == {"received": True}
        async with session.get(f"{recording}/_count") as reply:
            assert (await reply.json())["count"] == 3
        async with session.get(f"{recording}/_dump") as reply:
            dump = await reply.json()
    assert dump["ids"] == ["a", "b", "a"]
    assert len(dump["times"]) == 3


async def test_a_malformed_request_is_refused(recording: str) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(recording.rsplit(":", 1)[1])
    )
    writer.write(b"NOT HTTP\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), SIGNAL_S)
    writer.close()
    assert status.startswith(b"HTTP/1.1 400")


async def test_a_held_request_is_dropped_when_its_sender_hangs_up(
    hanging: str,
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            async with session.post(
                f"{hanging}/hook",
                data=b"{}",
                timeout=aiohttp.ClientTimeout(total=0.3),
            ):
                pass

        async def released() -> dict[str, int] | None:
            async with session.get(f"{hanging}/_count") as reply:
                state: dict[str, int] = await reply.json()
            return state if state["in_flight"] == 0 else None

        state = await poll(released, timeout_s=SIGNAL_S, what="the hang-up")
    assert state == {"count": 1, "in_flight": 0, "max_in_flight": 1}


@pytest.mark.parametrize(
    "extra",
    [b"Connection: close\r\n", b"Connection: Upgrade\r\nUpgrade: h2c\r\n"],
)
async def test_a_request_that_ends_its_connection_is_answered_then_closed(
    recording: str, extra: bytes
) -> None:
    """A client that asks to close (or to upgrade, which the sink does
    not do) gets its answer, counted, and then the end of the stream."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(recording.rsplit(":", 1)[1])
    )
    writer.write(
        b"POST /hook HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\r\n"
        + extra
        + b"Content-Length: 2\r\n\r\n{}"
    )
    answer = await asyncio.wait_for(reader.read(), SIGNAL_S)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b'{"received": true}')
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{recording}/_count") as reply,
    ):
        assert (await reply.json())["count"] == 1
