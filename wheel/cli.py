"""The ``timer-wheel`` command: one subcommand per role, plus tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wheel import __version__
from wheel.runtime import lifecycle, logs
from wheel.settings import Settings, SettingsError, env_name, from_env

log = logging.getLogger(__name__)

ROLES_WITH_HEARTBEAT = ("ticker", "worker")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url", help="Redis URL (overrides WHEEL_REDIS_URL)"
    )
    common.add_argument(
        "--shards", type=int, help="wheel shards (overrides WHEEL_SHARDS)"
    )
    common.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics on this port (ticker, worker; overrides "
        "WHEEL_METRICS_PORT)",
    )

    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument("--host", default="127.0.0.1", help="bind address")
    serving.add_argument("--port", type=int, default=8000, help="bind port")

    parser = argparse.ArgumentParser(
        prog="timer-wheel",
        description="Durable webhook timers on a Redis time wheel.",
        epilog="Settings come from WHEEL_* environment variables; "
        "see the README for the full table.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser(
        "api", parents=[common, serving], help="serve the HTTP API"
    )
    api.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes"
    )
    api.add_argument(
        "--access-log", action="store_true", help="log every request"
    )
    sub.add_parser(
        "ticker",
        parents=[common],
        help="move due timers from the wheel to the ready streams",
    )
    sub.add_parser(
        "worker", parents=[common], help="fire the webhooks of due timers"
    )
    sub.add_parser(
        "run",
        parents=[common, serving],
        help="api, ticker and worker in one process",
    )
    dev = sub.add_parser(
        "dev",
        parents=[common, serving],
        help="'run' with an embedded Redis that keeps its data in a folder",
    )
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".timer-wheel"),
        help="folder of the embedded Redis' data (default ./.timer-wheel)",
    )
    dev.add_argument(
        "--cluster",
        action="store_true",
        help="run a 3-master embedded Redis Cluster instead of one Redis",
    )
    dev.add_argument(
        "--redis-port",
        type=int,
        default=0,
        help="port of the embedded Redis on 127.0.0.1 (default: a free one)",
    )
    receiver = sub.add_parser(
        "receiver",
        help="a demo webhook receiver that logs every webhook it gets",
    )
    receiver.add_argument("--host", default="127.0.0.1", help="bind address")
    receiver.add_argument("--port", type=int, default=9000, help="bind port")
    dead = sub.add_parser(
        "dead-letters",
        parents=[common],
        help="list failed timers (newest first), or retry one",
    )
    dead.add_argument(
        "--limit", type=int, default=20, help="most to list (default 20)"
    )
    dead.add_argument(
        "--retry", metavar="ID", help="schedule this failed timer again now"
    )
    dead.add_argument(
        "--json", action="store_true", help="one JSON object per line"
    )
    sub.add_parser(
        "migrate",
        parents=[common],
        help="carry timers of the previous key layout over, in place",
    )
    check = sub.add_parser(
        "check",
        parents=[common],
        help="exit 0 when a role on this host is alive (health checks)",
    )
    check.add_argument("role", choices=["api", *ROLES_WITH_HEARTBEAT])
    check.add_argument(
        "--url",
        default="http://127.0.0.1:8000/healthz",
        help="the API's liveness URL (role api only)",
    )
    check.add_argument(
        "--data-dir",
        type=Path,
        help="ask the Redis of the 'timer-wheel dev' using this folder",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the CLI's overrides applied.

    The overrides are written back to the environment so that processes
    this one starts (uvicorn workers) build the same settings. A
    ``--redis-url`` names the Redis to use: seeds from the environment,
    nodes of whatever WHEEL_REDIS_URL named, are dropped with it.
    """
    redis_url = getattr(args, "redis_url", None)
    overrides = {
        "redis_url": redis_url,
        "redis_seeds": "" if redis_url is not None else None,
        "shards": getattr(args, "shards", None),
        "metrics_port": getattr(args, "metrics_port", None),
    }
    for field, value in overrides.items():
        if value is not None:
            os.environ[env_name(field)] = str(value)
    return from_env()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``timer-wheel`` command."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"timer-wheel: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_format, settings.log_level)
    command = args.command
    if command == "api":
        return _api(args, settings)
    if command == "check":
        from wheel.commands import check

        return check.main(settings, args)
    if command == "migrate":
        from wheel.commands import migrate

        return asyncio.run(migrate.main(settings))
    if command == "dead-letters":
        from wheel.commands import dead_letters

        return asyncio.run(dead_letters.main(settings, args))
    if command == "receiver":
        from wheel.commands import receiver

        receiver.serve(args.host, args.port)
        return 0
    from wheel import roles

    log.info(
        "starting",
        extra={
            "role": command,
            "version": __version__,
            "redis": settings.redacted_redis_url(),
            "shards": settings.shards,
        },
    )
    try:
        if command == "ticker":
            lifecycle.run(roles.run_ticker(settings))
        elif command == "worker":
            lifecycle.run(roles.run_worker(settings))
        elif command == "run":
            lifecycle.run(roles.run_all(settings, args.host, args.port))
        elif command == "dev":
            from wheel.commands import dev

            return dev.run(
                settings,
                env_name("allow_private_targets") in os.environ,
                args.data_dir,
                args.host,
                args.port,
                args.redis_port,
                args.cluster,
            )
    except (roles.IdentityError, SettingsError) as exc:
        print(f"timer-wheel {command}: {exc}", file=sys.stderr)
        return 2
    return 0


def _api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    log.info(
        "starting",
        extra={
            "role": "api",
            "version": __version__,
            "redis": settings.redacted_redis_url(),
            "port": args.port,
            "workers": args.workers,
        },
    )
    from wheel.api.http_protocol import ProblemHttpToolsProtocol

    own_dir = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several uvicorn processes: each writes its counters to files
        # here and /metrics (in any of them) adds them all up.
        own_dir = tempfile.mkdtemp(prefix="timer-wheel-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        _serve_api(args, settings, uvicorn, ProblemHttpToolsProtocol)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def _serve_api(
    args: argparse.Namespace, settings: Settings, uvicorn: Any, http: type
) -> None:
    uvicorn.run(
        "api:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http=http,
        access_log=args.access_log,
        # No "server: uvicorn" header: it tells a scanner what runs here
        # and costs every response a header.
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
    )


if __name__ == "__main__":
    sys.exit(main())
