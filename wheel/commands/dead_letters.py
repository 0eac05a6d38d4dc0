"""``timer-wheel dead-letters``: failed timers from a shell, no redis-cli."""

from __future__ import annotations

import argparse
import sys

import msgspec

from wheel.core import ids
from wheel.core.delays import rfc3339
from wheel.core.states import Code
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import connect
from wheel.storage.inspect import Inspector
from wheel.storage.shards import ShardQueue


async def main(settings: Settings, args: argparse.Namespace) -> int:
    """List, or retry ``args.retry``; the exit code."""
    connection = connect(settings, client_name("cli"))
    queue = ShardQueue(connection, settings)
    try:
        if args.retry:
            return await _retry(queue, args.retry)
        inspector = Inspector(queue)
        for letter in await inspector.newest_dead_letters(max(1, args.limit)):
            row = {
                "id": ids.to_text(letter.timer_id),
                "at": rfc3339(letter.at_ms),
                "attempts": letter.attempts,
                "error": letter.error,
                "url": letter.url,
            }
            if args.json:
                print(msgspec.json.encode(row).decode())
            else:
                print(
                    f"{row['at']}  {row['id']}  {letter.attempts:>2} "
                    f"attempts  {letter.error}  {letter.url}"
                )
        return 0
    finally:
        await connection.aclose()


async def _retry(queue: ShardQueue, text_id: str) -> int:
    timer_id = ids.parse(text_id)
    letter = (
        None
        if timer_id is None
        else await Inspector(queue).find_dead_letter(timer_id)
    )
    if timer_id is None or letter is None:
        print(f"no dead letter for {text_id}", file=sys.stderr)
        return 1
    code, state = await queue.retry(timer_id, letter)
    if code is not Code.DONE:
        name = state.value if state else "gone"
        print(f"{text_id} is {name}: not retried", file=sys.stderr)
        return 1
    print(f"{text_id} scheduled again now")
    return 0
