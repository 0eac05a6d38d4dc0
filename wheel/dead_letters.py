"""``timer-wheel dead-letters``: failed timers from a shell, no redis-cli."""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec

from wheel import ids
from wheel.queue import DeadLetter, ShardQueue
from wheel.responses import rfc3339
from wheel.roles import connect
from wheel.settings import Settings
from wheel.states import Code


async def newest(queue: ShardQueue, limit: int) -> list[DeadLetter]:
    """The newest ``limit`` dead letters of every shard."""
    letters = await asyncio.gather(
        *(
            queue.dead_letters(shard, limit)
            for shard in queue.keys.all_shards()
        )
    )
    merged = [letter for shard in letters for letter in shard]
    merged.sort(key=lambda letter: (letter.at_ms, letter.entry_id))
    return merged[::-1][:limit]


async def main(settings: Settings, args: argparse.Namespace) -> int:
    """List, or retry ``args.retry``; the exit code."""
    connection = connect(settings, "cli")
    queue = ShardQueue(connection, settings)
    try:
        if args.retry:
            return await _retry(queue, args.retry)
        for letter in await newest(queue, max(1, args.limit)):
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
        None if timer_id is None else await queue.find_dead_letter(timer_id)
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
