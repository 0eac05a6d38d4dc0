"""The fleet's per-minute counters: each count added once, whatever
happens to the reply that would say it was."""

from __future__ import annotations

import pytest
import redis as sync_redis

from tests.proxy import TcpProxy
from wheel.settings import Settings
from wheel.storage.connection import connect
from wheel.storage.errors import RedisUnavailable
from wheel.storage.keys import Keys
from wheel.storage.minute_stats import MinuteCounters


async def test_a_count_whose_reply_is_lost_is_added_once(
    proxy: TcpProxy, settings: Settings, raw: sync_redis.Redis
) -> None:
    """An HINCRBY whose reply is lost may have counted: it is neither
    sent again nor kept for the next flush, which adds only what came
    after."""
    through = settings.replace(redis_url=proxy.url)
    connection = connect(through, "tw:test")
    keys = Keys(through.key_prefix, through.shards)
    counters = MinuteCounters(connection, keys)
    try:
        await connection.start()
        counters.add("fired", 5)
        dropped = proxy.drop_next_reply(b"\r\nHINCRBY\r\n")
        with pytest.raises(RedisUnavailable):
            await counters.flush()
        assert dropped.is_set()
        counters.add("fired", 2)
        await counters.flush()
    finally:
        await connection.aclose()
    # Summed: the two flushes may fall in two minutes.
    keys_made = raw.keys(f"{through.key_prefix}*")
    assert sum(int(raw.hget(k, "fired") or 0) for k in keys_made) == 7
