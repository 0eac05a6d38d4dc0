"""A demo webhook receiver: logs every webhook it gets as one JSON line."""

from __future__ import annotations

import logging
import time

from aiohttp import web

log = logging.getLogger(__name__)


async def _hook(request: web.Request) -> web.Response:
    body = await request.read()
    log.info(
        "webhook received",
        extra={
            "path": request.path,
            "idempotency_key": request.headers.get("Idempotency-Key"),
            "user_agent": request.headers.get("User-Agent"),
            "body": body.decode(errors="replace")[:1000],
            "received_at": round(time.time(), 3),
        },
    )
    return web.json_response({"received": True})


def build_app() -> web.Application:
    """An app answering 200 to a POST on any path."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", _hook)
    return app


def serve(host: str, port: int) -> None:
    """Serve the demo receiver until SIGTERM/SIGINT."""
    web.run_app(build_app(), host=host, port=port, print=None)
