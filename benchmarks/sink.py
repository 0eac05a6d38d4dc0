"""A webhook sink on 127.0.0.1 that answers 200 and can record arrivals.

Run as its own process so it never shares an event loop with the client
under test::

    python benchmarks/sink.py --port 9100 [--port 9101 ...] [--record] \\
        [--uvloop] [--delay-s 3600]

Every ``--port`` is one more listening socket of the same sink (to the
service, each port is another receiver host). Any ``POST`` answers
``200 {"received": true}``, after ``--delay-s`` seconds when given (a
receiver that hangs until the sender's timeout; a request whose sender
hangs up is dropped). With ``--record`` each
arrival's ``Idempotency-Key`` and ``time.time()`` are kept in memory.
``GET /_count`` returns ``{"count", "in_flight", "max_in_flight"}``
(count is every arrival, recorded or not) and ``GET /_dump`` returns the
recorded ones as ``{"ids": [...], "times": [...]}``. Stops on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from aiohttp import web

REPLY = b'{"received": true}'


def build_app(record: bool, delay_s: float = 0.0) -> web.Application:
    """The sink's aiohttp application."""
    ids: list[str] = []
    times: list[float] = []
    state = {"count": 0, "in_flight": 0, "max_in_flight": 0}

    async def hook(request: web.Request) -> web.Response:
        at = time.time()
        state["count"] += 1
        if record:
            times.append(at)
            ids.append(request.headers.get("Idempotency-Key", ""))
        await request.read()
        if delay_s:
            state["in_flight"] += 1
            state["max_in_flight"] = max(
                state["max_in_flight"], state["in_flight"]
            )
            try:
                await asyncio.sleep(delay_s)
            finally:
                state["in_flight"] -= 1
        return web.Response(body=REPLY, content_type="application/json")

    async def count(request: web.Request) -> web.Response:
        return web.json_response(state)

    async def dump(request: web.Request) -> web.Response:
        return web.json_response({"ids": ids, "times": times})

    app = web.Application()
    app.router.add_get("/_count", count)
    app.router.add_get("/_dump", dump)
    app.router.add_post("/{tail:.*}", hook)
    return app


async def serve(app: web.Application, ports: list[int]) -> None:
    """Listen on every port until SIGTERM or SIGINT."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    for port in ports:
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
        await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    app = build_app(args.record, args.delay_s)
    loop.run_until_complete(serve(app, args.port))


if __name__ == "__main__":
    main()
