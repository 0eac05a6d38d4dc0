"""A small TCP proxy on 127.0.0.1 that drops replies, stalls and cuts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

_CHUNK = 65536
_THREAD_TIMEOUT_S = 10.0
_TAIL = 64


class _Link:
    """One proxied connection: the client's side and the server's side."""

    def __init__(
        self, client: asyncio.StreamWriter, server: asyncio.StreamWriter
    ) -> None:
        self.client = client
        self.server = server
        self.drop: threading.Event | None = None
        self.hold = False
        self.tail = b""

    def close(self) -> None:
        for writer in (self.client, self.server):
            # abort, not close: a blip resets, it does not say goodbye.
            writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target, with faults on demand.

    The asyncio server runs in a thread of its own; every control below
    may be called from the test's thread.
    """

    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1"
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.connections_accepted = 0
        self.replies_dropped = 0
        self._port: int | None = None
        self._links: set[_Link] = set()
        self._armed: tuple[bytes, threading.Event] | None = None
        self._hold_marker: bytes | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None

    @property
    def port(self) -> int:
        """The port clients connect to."""
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def url(self) -> str:
        """A ``redis://`` URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1, serving in a thread."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._thread.start()
        self._call(self._listen())

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close every connection and the listener; end the thread."""
        if self._loop is None or self._thread is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_THREAD_TIMEOUT_S)
        self._loop.close()
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._cut()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def drop_next_reply(self, marker: bytes) -> threading.Event:
        """Arm a one-shot fault: after the next client chunk holding
        ``marker`` goes through, discard the server's answer and close
        both sides of that connection. The event is set once done."""
        done = threading.Event()
        with self._lock:
            self._armed = (marker, done)
        return done

    def hold_next_reply(self, marker: bytes) -> None:
        """Arm a one-shot fault: after the next client chunk holding
        ``marker`` goes through, that connection's answers never come
        back, and it stays open (a node stopped under the call)."""
        with self._lock:
            self._hold_marker = marker

    def pause(self) -> None:
        """Hold traffic both ways (new bytes wait) until :meth:`resume`."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        """Forward again, held bytes first."""
        self._call(self._set_flowing(True))

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def cut(self) -> None:
        """Close every open connection now, as a network blip would."""
        self._call(self._cut_soon())

    async def _cut_soon(self) -> None:
        self._cut()

    def _cut(self) -> None:
        for link in list(self._links):
            link.close()
        self._links.clear()

    def _call(self, work: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        future.result(_THREAD_TIMEOUT_S)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections_accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(link, reader, up_writer, upstream=True),
                self._pump(link, up_reader, writer, upstream=False),
            )
        finally:
            link.close()
            self._links.discard(link)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: bool,
    ) -> None:
        assert self._flowing is not None
        try:
            while chunk := await reader.read(_CHUNK):
                await self._flowing.wait()
                if upstream:
                    self._maybe_arm(link, chunk)
                elif link.hold:
                    continue
                elif link.drop is not None:
                    self.replies_dropped += 1
                    link.close()
                    link.drop.set()
                    return
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # Either side gone: the other goes too, as with one socket.
            link.close()

    def _maybe_arm(self, link: _Link, chunk: bytes) -> None:
        # The tail catches a marker split across two reads.
        window = link.tail + chunk
        link.tail = chunk[-_TAIL:]
        with self._lock:
            if self._hold_marker is not None and self._hold_marker in window:
                link.hold = True
                self._hold_marker = None
            if self._armed is None or self._armed[0] not in window:
                return
            # Armed before forwarding, so no byte of the answer slips by.
            link.drop = self._armed[1]
            self._armed = None
