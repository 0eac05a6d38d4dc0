"""``timer-wheel migrate``: carry timers of the first key layout over."""

from __future__ import annotations

import sys

from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage import legacy
from wheel.storage.connection import connect
from wheel.storage.registry import Registry
from wheel.storage.shards import ShardQueue


async def main(settings: Settings) -> int:
    """Migrate in place, then record the deployment; the exit code."""
    connection = connect(settings, client_name("migrate"))
    queue = ShardQueue(connection, settings)
    try:
        await connection.start()
        if not await legacy.pending_migration(queue):
            print("nothing to migrate", file=sys.stderr)
            return 0
        counts = await legacy.migrate(queue)
        await Registry(connection, settings).check_identity()
    finally:
        await connection.aclose()
    print(
        "migrated: {pending} pending, {finished} finished, "
        "{dead_letters} dead letters ({skipped} unreadable records "
        "skipped)".format(**counts)
    )
    return 0
