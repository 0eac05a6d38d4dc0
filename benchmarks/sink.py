"""A webhook sink on 127.0.0.1 that answers 200 and can record arrivals.

Run as its own process so it never shares an event loop with the client
under test::

    python benchmarks/sink.py --port 9100 [--record] [--uvloop]

Any ``POST`` answers ``200 {"received": true}``. With ``--record`` each
arrival's ``Idempotency-Key`` and ``time.time()`` are kept in memory;
``GET /_count`` returns how many arrived and ``GET /_dump`` returns them all
as ``{"ids": [...], "times": [...]}``. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

REPLY = b'{"received": true}'


def build_app(record: bool) -> web.Application:
    """The sink's aiohttp application."""
    ids: list[str] = []
    times: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        if record:
            times.append(time.time())
            ids.append(request.headers.get("Idempotency-Key", ""))
        return web.Response(body=REPLY, content_type="application/json")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"count": len(ids)})

    async def dump(request: web.Request) -> web.Response:
        return web.json_response({"ids": ids, "times": times})

    app = web.Application()
    app.router.add_get("/_count", count)
    app.router.add_get("/_dump", dump)
    app.router.add_post("/{tail:.*}", hook)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    loop = None
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    web.run_app(
        build_app(args.record),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        loop=loop,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
