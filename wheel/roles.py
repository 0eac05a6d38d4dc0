"""The composition root: builds each role from its parts and runs it,
alone or all in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import uvicorn

from wheel.api.app import create_app
from wheel.api.http_protocol import ProblemHttpToolsProtocol
from wheel.engine.ticker import Ticker
from wheel.engine.worker import Worker
from wheel.runtime import metrics_server
from wheel.runtime.lifecycle import (
    client_name,
    install_stop_signals,
    supervise,
)
from wheel.settings import Settings, SettingsError
from wheel.storage.connection import Connection, connect
from wheel.storage.registry import IdentityError, Registry
from wheel.storage.shards import ShardQueue
from wheel.webhooks.guard import TargetPolicy
from wheel.webhooks.sender import WebhookSender
from wheel.webhooks.signing import Signer

log = logging.getLogger(__name__)


def sender(settings: Settings) -> WebhookSender:
    """The webhook sender the settings describe (guard, signing).

    Raises:
        SettingsError: naming the variable of a bad allow-list or secret.
    """
    try:
        policy = TargetPolicy.build(
            settings.allow_private_targets, settings.allowed_targets
        )
    except ValueError as exc:
        raise SettingsError(f"WHEEL_ALLOWED_TARGETS: {exc}") from None
    try:
        signer = Signer.from_setting(settings.webhook_secret)
    except ValueError as exc:
        raise SettingsError(f"WHEEL_WEBHOOK_SECRET: {exc}") from None
    return WebhookSender(
        settings.webhook_timeout, settings.worker_concurrency, policy, signer
    )


@dataclass
class Shared:
    """What the roles of one process share: connection, queue, registry."""

    connection: Connection
    queue: ShardQueue
    registry: Registry


@contextlib.asynccontextmanager
async def shared(
    settings: Settings, role: str, stop: asyncio.Event
) -> AsyncIterator[Shared | None]:
    """Connect, check the deployment's identity, and close at the end.

    Waits for Redis (logging quietly) until it answers or ``stop`` is
    set; yields None when stopped first.

    Raises:
        IdentityError: the settings disagree with the deployment.
    """
    connection = connect(settings, client_name(role))
    registry = Registry(connection, settings)
    checked = asyncio.Event()
    refused: list[IdentityError] = []

    async def check() -> float:
        try:
            await registry.check_identity()
        except IdentityError as exc:
            refused.append(exc)
        checked.set()
        return 0.0

    try:
        waiting = asyncio.create_task(stop.wait())
        checking = asyncio.create_task(supervise("connect", check, checked))
        await asyncio.wait(
            {waiting, checking}, return_when=asyncio.FIRST_COMPLETED
        )
        waiting.cancel()
        checking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checking
        if refused:
            raise refused[0]
        if not checked.is_set():
            yield None
            return
        yield Shared(connection, ShardQueue(connection, settings), registry)
    finally:
        await connection.aclose()


async def run_ticker(settings: Settings) -> None:
    """The ticker role until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    with metrics_server.serving(settings.metrics_port):
        async with shared(settings, "ticker", stop) as parts:
            if parts is not None:
                await Ticker(parts.queue, parts.registry, settings).run(stop)


async def run_worker(settings: Settings) -> None:
    """The worker role until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    webhooks = sender(settings)
    with metrics_server.serving(settings.metrics_port):
        async with shared(settings, "worker", stop) as parts, webhooks:
            if parts is not None:
                worker = Worker(
                    parts.queue, parts.registry, webhooks, settings
                )
                await worker.run(stop)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_all(
    settings: Settings,
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
) -> None:
    """API, ticker and worker in one process until SIGTERM/SIGINT.

    The API serves ``/metrics`` for all three roles.
    """
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    webhooks = sender(settings)
    async with shared(settings, "run", stop) as parts, webhooks:
        if parts is None:
            return
        server = _EmbeddedServer(
            uvicorn.Config(
                create_app(settings, parts.connection),
                host=host,
                port=port,
                http=ProblemHttpToolsProtocol,
                log_config=None,
                access_log=False,
                server_header=False,
            )
        )
        ticker = Ticker(parts.queue, parts.registry, settings)
        worker = Worker(parts.queue, parts.registry, webhooks, settings)
        tasks = [
            asyncio.create_task(server.serve()),
            asyncio.create_task(ticker.run(stop)),
            asyncio.create_task(worker.run(stop)),
        ]
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        # The API going down on its own (a port in use, say) stops all.
        stop.set()
        server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if task in done and task.exception():
                raise task.exception()  # type: ignore[misc]


__all__ = ["IdentityError", "run_all", "run_ticker", "run_worker"]
