"""Serve the API of the code under test with uvicorn or granian, with or
without its Prometheus metrics.

Run with the interpreter of the code under test, in its folder
(``api_load.py`` does)::

    DIR/.venv/bin/python benchmarks/serve_api.py --port 8000 \\
        [--server uvicorn|granian] [--no-metrics]

``uvicorn`` serves exactly as ``timer-wheel api`` does (it calls the
CLI). ``granian`` serves ``api:app`` over ASGI in one worker process on
uvloop, ``granian-rsgi`` the same app through ``rsgi_app.py`` over RSGI
(granian must be importable: in the venv or on PYTHONPATH).
``--no-metrics`` replaces every counter and histogram of
``wheel.runtime.metrics`` with a no-op before ``api`` is imported (the
endpoints look them up once, when the app is built), so the hot path pays
nothing for them; a code without ``wheel.runtime.metrics`` is served unchanged.
"""

from __future__ import annotations

import argparse
import sys


class _NoOp:
    """Stands in for a prometheus_client metric (and its children)."""

    def labels(self, *args: object, **kwargs: object) -> _NoOp:
        return self

    def inc(self, *args: object, **kwargs: object) -> None:
        pass

    def dec(self, *args: object, **kwargs: object) -> None:
        pass

    def set(self, *args: object, **kwargs: object) -> None:
        pass

    def observe(self, *args: object, **kwargs: object) -> None:
        pass


def disable_metrics() -> list[str]:
    """Replace the metrics of ``wheel.runtime.metrics``; the names replaced."""
    try:
        from prometheus_client.metrics import MetricWrapperBase

        try:
            from wheel.runtime import metrics
        except ImportError:  # the flat layout, before wheel/runtime/
            from wheel import metrics  # type: ignore[no-redef]
    except ImportError:
        return []
    if "api" in sys.modules:
        raise RuntimeError("api was imported before the metrics were off")
    replaced = []
    for name in dir(metrics):
        if isinstance(getattr(metrics, name), MetricWrapperBase):
            setattr(metrics, name, _NoOp())
            replaced.append(name)
    return replaced


def serve_granian(port: int, interface: str = "asgi") -> None:
    """granian in one worker on uvloop: ``api:app`` over ASGI, or
    ``rsgi_app:rsgi`` (this folder's adapter) over RSGI."""
    from granian import Granian

    try:
        from wheel.runtime import logs
    except ImportError:  # the flat layout
        from wheel import logs  # type: ignore[no-redef]
    from wheel.settings import from_env

    settings = from_env()
    logs.setup(settings.log_format, settings.log_level)
    Granian(
        "api:app" if interface == "asgi" else "rsgi_app:rsgi",
        address="127.0.0.1",
        port=port,
        interface=interface,
        workers=1,
        loop="uvloop",
        http="1",
        websockets=False,
        log_access=False,
        backlog=2048,
    ).serve()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian", "granian-rsgi"],
        default="uvicorn",
    )
    parser.add_argument("--no-metrics", action="store_true")
    args = parser.parse_args()
    if args.no_metrics:
        replaced = disable_metrics()
        print(f"serve_api: metrics off: {replaced}", file=sys.stderr)
    if args.server.startswith("granian"):
        serve_granian(
            args.port, "rsgi" if args.server == "granian-rsgi" else "asgi"
        )
        return 0
    from wheel.cli import main as cli_main

    return cli_main(["api", "--port", str(args.port)])


if __name__ == "__main__":
    sys.exit(main())
