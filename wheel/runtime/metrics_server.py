"""``/metrics`` of a ticker or worker on ``WHEEL_METRICS_PORT``.

The API serves ``/metrics`` on its own port; the other roles have no
HTTP server, so prometheus-client's small threaded one serves theirs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from prometheus_client import start_http_server

from wheel.settings import SettingsError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def serving(port: int, host: str = "0.0.0.0") -> Iterator[None]:
    """Serve the process' metrics on ``port`` (0: not at all) meanwhile."""
    if not port:
        yield
        return
    try:
        server, thread = start_http_server(port, host)
    except OSError as exc:
        raise SettingsError(
            f"WHEEL_METRICS_PORT {port}: cannot serve metrics there "
            f"({exc.strerror or exc})"
        ) from None
    log.info("serving metrics", extra={"port": port})
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
