"""Running the roles: each one alone, or all in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from wheel.lifecycle import install_stop_signals
from wheel.redis_client import connect
from wheel.settings import Settings
from wheel.ticker import Ticker
from wheel.webhook import WebhookSender
from wheel.worker import Worker

log = logging.getLogger("wheel.roles")


async def run_ticker(settings: Settings) -> None:
    """The ticker role until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    redis = connect(settings)
    try:
        await Ticker(redis, settings).run(stop)
    finally:
        await redis.aclose()


async def run_worker(settings: Settings) -> None:
    """The worker role until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    redis = connect(settings)
    try:
        async with WebhookSender(
            settings.webhook_timeout, settings.worker_concurrency
        ) as sender:
            await Worker(redis, settings, sender).run(stop)
    finally:
        await redis.aclose()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_all(settings: Settings, host: str, port: int) -> None:
    """API, ticker and worker in one process until SIGTERM/SIGINT."""
    from api import create_app

    stop = asyncio.Event()
    install_stop_signals(stop)
    redis = connect(settings)
    server = _EmbeddedServer(
        uvicorn.Config(
            create_app(settings, redis),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    try:
        async with WebhookSender(
            settings.webhook_timeout, settings.worker_concurrency
        ) as sender:
            ticker = Ticker(redis, settings)
            worker = Worker(redis, settings, sender)
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
    finally:
        await redis.aclose()
