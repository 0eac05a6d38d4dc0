"""The firing engine's Lua scripts against a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from redis.asyncio import Redis

from tests.support import poll
from wheel.clock import redis_time_ms
from wheel.keys import GROUP, Keys, ShardKeys
from wheel.scripts import Claim, Scripts
from wheel.settings import Settings
from wheel.wheelmath import shard_of, slot_of

URL = "http://127.0.0.1:9/hook"
TOKEN = "ticker-a"
LEASE_TTL_MS = 30_000
RETENTION_MS = 3_600_000
HOLD_MS = 60_000


@pytest.fixture
def keys(settings: Settings) -> Keys:
    """The key names of the test settings."""
    return Keys(settings.key_prefix, settings.shards)


@pytest.fixture
def shard(keys: Keys) -> ShardKeys:
    """The keys of shard 1."""
    return keys.shard(1)


@pytest.fixture
def scripts(redis: Redis) -> Scripts:
    """The scripts registered on the test client."""
    return Scripts(redis)


async def now_ms(redis: Redis) -> int:
    """Redis' own clock in epoch ms."""
    return redis_time_ms(await redis.time())


def new_id(shard: ShardKeys, shards: int = 4) -> str:
    """A fresh timer id that belongs to ``shard``."""
    while True:
        timer_id = uuid.uuid4()
        if shard_of(timer_id, shards) == shard.shard:
            return str(timer_id)


async def put_timer(
    redis: Redis,
    shard: ShardKeys,
    due_ms: int,
    minute: int | None = None,
    timer_id: str | None = None,
    state: str = "pending",
    attempts: int = 0,
    on_wheel: bool = True,
) -> str:
    """Write a timer with the shape create.lua writes.

    Without ``on_wheel`` only the record is written, as advance leaves it.
    """
    timer_id = timer_id or new_id(shard)
    minute = slot_of(due_ms) if minute is None else minute
    await redis.hset(
        shard.timer(timer_id),
        mapping={
            "url": URL,
            "due": due_ms,
            "state": state,
            "attempts": attempts,
            "created": due_ms - 1000,
        },
    )
    if on_wheel:
        await redis.zadd(shard.slot(minute), {timer_id: due_ms})
        await redis.zadd(shard.slots, {str(minute): minute})
    return timer_id


async def stream_ids(redis: Redis, stream: str) -> list[str]:
    """The timer ids in a ready stream, in order."""
    return [fields["id"] for _, fields in await redis.xrange(stream)]


async def take_lease(redis: Redis, shard: ShardKeys) -> None:
    """Give the lease of ``shard`` to :data:`TOKEN`."""
    await redis.set(shard.lease, TOKEN, px=LEASE_TTL_MS)


# advance.lua


async def test_advance_moves_due_id_once(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A due id moves to the ready stream once and leaves its slot."""
    await take_lease(redis, shard)
    due = await now_ms(redis) - 5_000
    timer_id = await put_timer(redis, shard, due)

    first = await scripts.advance(shard, TOKEN, [slot_of(due)], 100)
    second = await scripts.advance(shard, TOKEN, [slot_of(due)], 100)

    assert first.moved == 1
    assert second.moved == 0
    assert await stream_ids(redis, shard.ready) == [timer_id]
    assert not await redis.exists(shard.slot(slot_of(due)))
    assert await redis.hget(shard.timer(timer_id), "state") == "pending"


async def test_advance_leaves_ids_not_yet_due(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """Ids scored after Redis' now stay in their slot and in the index."""
    await take_lease(redis, shard)
    now = await now_ms(redis)
    minute = slot_of(now)
    past = await put_timer(redis, shard, now - 1_000, minute=minute)
    future = await put_timer(redis, shard, now + 30_000, minute=minute)

    reply = await scripts.advance(shard, TOKEN, [minute], 100)

    moved, redis_now, next_due = (
        reply.moved,
        reply.now_ms,
        reply.next_due_ms,
    )
    assert moved == 1
    assert redis_now >= now
    assert next_due == now + 30_000
    assert await stream_ids(redis, shard.ready) == [past]
    assert await redis.zrange(shard.slot(minute), 0, -1) == [future]
    assert await redis.zscore(shard.slots, str(minute)) == minute


async def test_advance_skips_slots_of_future_minutes(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A slot whose minute has not come is not touched."""
    await take_lease(redis, shard)
    now = await now_ms(redis)
    later = slot_of(now) + 2
    timer_id = await put_timer(redis, shard, later * 60_000 + 5)

    moved = (await scripts.advance(shard, TOKEN, [later], 100)).moved

    assert moved == 0
    assert await redis.zrange(shard.slot(later), 0, -1) == [timer_id]
    assert await redis.zrange(shard.slots, 0, -1) == [str(later)]
    assert await redis.xlen(shard.ready) == 0


async def test_advance_drops_emptied_slots_from_index(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """Emptied slots leave the slot index; non-empty ones stay."""
    await take_lease(redis, shard)
    now = await now_ms(redis)
    old = [slot_of(now) - 3, slot_of(now) - 2]
    for minute in old:
        await put_timer(redis, shard, minute * 60_000 + 10)
    future = await put_timer(redis, shard, now + 120_000)
    minutes = [int(m) for m in await redis.zrange(shard.slots, 0, -1)]

    moved = (await scripts.advance(shard, TOKEN, minutes, 100)).moved

    assert moved == 2
    assert await redis.zrange(shard.slots, 0, -1) == [
        str(slot_of(now + 120_000))
    ]
    for minute in old:
        assert not await redis.exists(shard.slot(minute))
    assert future not in await stream_ids(redis, shard.ready)


async def test_advance_drops_stale_empty_slot_from_index(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """An index entry whose slot is already empty is removed."""
    await take_lease(redis, shard)
    minute = slot_of(await now_ms(redis)) - 1
    await redis.zadd(shard.slots, {str(minute): minute})

    reply = await scripts.advance(shard, TOKEN, [minute], 100)

    assert (reply.moved, reply.next_due_ms) == (0, -1)
    assert not await redis.exists(shard.slots)


@pytest.mark.parametrize("lease", [None, "ticker-b"])
async def test_advance_with_wrong_token_moves_nothing(
    redis: Redis, scripts: Scripts, shard: ShardKeys, lease: str | None
) -> None:
    """Without the lease (free or another's) advance returns -1, moves 0."""
    if lease is not None:
        await redis.set(shard.lease, lease, px=LEASE_TTL_MS)
    due = await now_ms(redis) - 1_000
    timer_id = await put_timer(redis, shard, due)

    reply = await scripts.advance(shard, TOKEN, [slot_of(due)], 100)

    assert reply.moved == -1
    assert await redis.xlen(shard.ready) == 0
    assert await redis.zrange(shard.slot(slot_of(due)), 0, -1) == [timer_id]
    assert await redis.zcard(shard.slots) == 1


async def test_advance_respects_batch_limit(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """With limit 10 and 25 due ids over 3 slots: 10, 10, then 5 move."""
    await take_lease(redis, shard)
    now = await now_ms(redis)
    minutes = [slot_of(now) - 3, slot_of(now) - 2, slot_of(now) - 1]
    ids = [
        await put_timer(redis, shard, minutes[i % 3] * 60_000 + i)
        for i in range(25)
    ]

    def due_key(i: int) -> tuple[int, int]:
        return (i % 3, i)

    moves = []
    for _ in range(4):
        reply = await scripts.advance(shard, TOKEN, minutes, 10)
        moves.append(reply.moved)

    assert moves == [10, 10, 5, 0]
    in_stream = await stream_ids(redis, shard.ready)
    assert sorted(in_stream) == sorted(ids)
    # Oldest first: the stream follows the slots, then the due times.
    assert in_stream == [ids[i] for i in sorted(range(25), key=due_key)]
    assert not await redis.exists(shard.slots)


async def test_concurrent_advances_move_each_id_once(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """Concurrent advance calls with one token never duplicate an id."""
    await take_lease(redis, shard)
    now = await now_ms(redis)
    minutes = [slot_of(now) - 2, slot_of(now) - 1]
    pipe = redis.pipeline(transaction=False)
    ids = [new_id(shard) for _ in range(300)]
    for i, timer_id in enumerate(ids):
        minute = minutes[i % 2]
        pipe.zadd(shard.slot(minute), {timer_id: minute * 60_000 + i})
    for minute in minutes:
        pipe.zadd(shard.slots, {str(minute): minute})
    await pipe.execute()

    total = 0
    for _ in range(20):
        replies = await asyncio.gather(
            *(scripts.advance(shard, TOKEN, minutes, 7) for _ in range(8))
        )
        total += sum(r.moved for r in replies)
        if total >= len(ids):
            break

    counts = Counter(await stream_ids(redis, shard.ready))
    assert total == len(ids)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1


# acquire.lua and release.lua


async def test_acquire_free_lease(redis: Redis, scripts: Scripts) -> None:
    """A free lease is taken with the owner token and the TTL."""
    assert await scripts.acquire("lease", "a", 10_000) == 1
    assert await redis.get("lease") == "a"
    assert 9_000 < await redis.pttl("lease") <= 10_000


async def test_acquire_again_extends_ttl(
    redis: Redis, scripts: Scripts
) -> None:
    """The owner acquiring again extends the lease's TTL."""
    await scripts.acquire("lease", "a", 1_000)
    assert await scripts.acquire("lease", "a", 60_000) == 1
    assert await redis.pttl("lease") > 50_000
    assert await redis.get("lease") == "a"


async def test_acquire_refused_to_other_token(
    redis: Redis, scripts: Scripts
) -> None:
    """Another token cannot take or extend a held lease."""
    await scripts.acquire("lease", "a", 10_000)
    assert await scripts.acquire("lease", "b", 60_000) == 0
    assert await redis.get("lease") == "a"
    assert await redis.pttl("lease") <= 10_000


async def test_release_only_by_owner(redis: Redis, scripts: Scripts) -> None:
    """Only the owner's release drops the lease."""
    await scripts.acquire("lease", "a", 10_000)
    assert await scripts.release("lease", "b") == 0
    assert await redis.get("lease") == "a"
    assert await scripts.release("lease", "a") == 1
    assert not await redis.exists("lease")
    assert await scripts.release("lease", "a") == 0


async def test_expired_lease_can_be_taken(
    redis: Redis, scripts: Scripts
) -> None:
    """Once the TTL runs out another owner can take the lease."""
    await scripts.acquire("lease", "a", 300)
    assert await scripts.acquire("lease", "b", 10_000) == 0

    async def gone() -> bool:
        return await redis.get("lease") is None

    await poll(gone, what="the lease to expire")
    assert await scripts.acquire("lease", "b", 10_000) == 1
    assert await redis.get("lease") == "b"
    assert await scripts.release("lease", "a") == 0


# beat.lua


async def test_beat_lists_fresh_members(
    redis: Redis, scripts: Scripts
) -> None:
    """A beat registers the caller and lists every fresh member."""
    assert await scripts.beat("hb", "a", 10_000) == ["a"]
    assert sorted(await scripts.beat("hb", "b", 10_000)) == ["a", "b"]


async def test_beat_drops_stale_members(
    redis: Redis, scripts: Scripts
) -> None:
    """Members whose last beat is older than the TTL are removed."""
    now = await now_ms(redis)
    await redis.zadd("hb", {"old": now - 20_000, "fresh": now - 1_000})

    live = await scripts.beat("hb", "me", 10_000)

    assert sorted(live) == ["fresh", "me"]
    assert sorted(await redis.zrange("hb", 0, -1)) == ["fresh", "me"]


# claim.lua


async def deliver(
    redis: Redis, shard: ShardKeys, timer_id: str, consumer: str = "c1"
) -> str:
    """Add ``timer_id`` to the ready stream and read it as ``consumer``."""
    await redis.xgroup_create(shard.ready, GROUP, id="0", mkstream=True)
    entry_id = await redis.xadd(shard.ready, {"id": timer_id})
    reply = await redis.xreadgroup(GROUP, consumer, {shard.ready: ">"})
    assert reply[0][1][0][0] == entry_id
    return entry_id


async def pending_count(redis: Redis, shard: ShardKeys) -> int:
    """How many entries of the ready stream are delivered and unacked."""
    return int((await redis.xpending(shard.ready, GROUP))["pending"])


async def claim_one(
    scripts: Scripts,
    shard: ShardKeys,
    entry_id: str,
    timer_id: str,
    max_attempts: int = 3,
    hold_ms: int = HOLD_MS,
) -> Claim:
    """Claim one entry with the test's bounds."""
    (verdict,) = await scripts.claim(
        shard, [(entry_id, timer_id)], max_attempts, hold_ms, RETENTION_MS
    )
    return verdict


@pytest.mark.parametrize("state", ["fired", "failed", None])
async def test_claim_skips_finished_or_missing_record(
    redis: Redis, scripts: Scripts, shard: ShardKeys, state: str | None
) -> None:
    """A fired, failed or missing record: skip, entry acked and deleted."""
    timer_id = new_id(shard)
    if state is not None:
        await redis.hset(
            shard.timer(timer_id),
            mapping={"url": URL, "state": state, "attempts": 1},
        )
    entry_id = await deliver(redis, shard, timer_id)

    claim = await claim_one(scripts, shard, entry_id, timer_id)

    assert claim == Claim("skip")
    assert await pending_count(redis, shard) == 0
    assert await redis.xlen(shard.ready) == 0
    assert await redis.hget(shard.timer(timer_id), "state") == state
    assert await redis.hget(shard.timer(timer_id), "attempts") == (
        None if state is None else "1"
    )


async def test_claim_pending_record_fires(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A pending record becomes firing with attempts + 1; verdict fire."""
    timer_id = await put_timer(
        redis, shard, await now_ms(redis) - 10, on_wheel=False
    )
    entry_id = await deliver(redis, shard, timer_id)
    before = await now_ms(redis)

    claim = await claim_one(scripts, shard, entry_id, timer_id)

    assert claim == Claim("fire", URL, 1)
    record = await redis.hgetall(shard.timer(timer_id))
    assert record["state"] == "firing"
    assert record["attempts"] == "1"
    assert before <= int(record["claimed"]) <= await now_ms(redis)
    # The entry stays pending until completion.
    assert await pending_count(redis, shard) == 1
    assert await redis.ttl(shard.timer(timer_id)) == -1


async def test_claim_recent_firing_record_is_busy(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A record claimed less than hold ms ago is busy; entry stays pending."""
    timer_id = await put_timer(
        redis, shard, await now_ms(redis) - 10, on_wheel=False
    )
    first = await deliver(redis, shard, timer_id)
    assert (await claim_one(scripts, shard, first, timer_id)).verdict == (
        "fire"
    )
    record = await redis.hgetall(shard.timer(timer_id))
    second = await redis.xadd(shard.ready, {"id": timer_id})
    await redis.xreadgroup(GROUP, "c2", {shard.ready: ">"})

    claim = await claim_one(scripts, shard, second, timer_id)

    assert claim == Claim("busy")
    assert await redis.hgetall(shard.timer(timer_id)) == record
    assert await pending_count(redis, shard) == 2
    assert await redis.xlen(shard.ready) == 2


async def test_claim_firing_record_past_hold_fires_again(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A claim older than hold ms is taken over with the next attempt."""
    timer_id = await put_timer(
        redis, shard, await now_ms(redis) - 10, on_wheel=False
    )
    entry_id = await deliver(redis, shard, timer_id)
    await claim_one(scripts, shard, entry_id, timer_id)
    await redis.hset(
        shard.timer(timer_id), "claimed", await now_ms(redis) - HOLD_MS - 1
    )

    claim = await claim_one(scripts, shard, entry_id, timer_id)

    assert claim == Claim("fire", URL, 2)
    assert await redis.hget(shard.timer(timer_id), "state") == "firing"


async def test_claim_out_of_attempts_is_dead(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """At max attempts: dead, record failed with a TTL, one dead letter."""
    timer_id = await put_timer(
        redis,
        shard,
        await now_ms(redis) - 10,
        state="firing",
        attempts=3,
        on_wheel=False,
    )
    await redis.hset(shard.timer(timer_id), "claimed", 1)
    entry_id = await deliver(redis, shard, timer_id)

    claim = await claim_one(scripts, shard, entry_id, timer_id, 3)

    assert claim == Claim("dead")
    record = await redis.hgetall(shard.timer(timer_id))
    assert record["state"] == "failed"
    assert record["attempts"] == "3"
    assert "claimed" not in record
    assert "finished" in record
    assert 0 < await redis.pttl(shard.timer(timer_id)) <= RETENTION_MS
    dead = await redis.xrange(shard.dead)
    assert len(dead) == 1
    assert dead[0][1]["id"] == timer_id
    assert dead[0][1]["attempts"] == "3"
    assert await pending_count(redis, shard) == 0
    assert await redis.xlen(shard.ready) == 0


async def test_claim_batch_keeps_verdicts_in_order(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A batch returns one verdict per entry, aligned with the entries."""
    due = await now_ms(redis) - 10
    fire = await put_timer(redis, shard, due, on_wheel=False)
    fired = await put_timer(redis, shard, due, state="fired", on_wheel=False)
    gone = new_id(shard)
    await redis.xgroup_create(shard.ready, GROUP, id="0", mkstream=True)
    for timer_id in (fire, fired, gone):
        await redis.xadd(shard.ready, {"id": timer_id})
    reply = await redis.xreadgroup(GROUP, "c1", {shard.ready: ">"})
    entries = [(e, f["id"]) for e, f in reply[0][1]]

    claims = await scripts.claim(shard, entries, 3, HOLD_MS, RETENTION_MS)

    assert claims == [Claim("fire", URL, 1), Claim("skip"), Claim("skip")]
    assert await pending_count(redis, shard) == 1


# complete.lua


async def claimed(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> tuple[str, str]:
    """A due timer delivered and claimed (attempt 1): (entry, timer id)."""
    timer_id = await put_timer(
        redis, shard, await now_ms(redis) - 10, on_wheel=False
    )
    entry_id = await deliver(redis, shard, timer_id)
    claim = await claim_one(scripts, shard, entry_id, timer_id)
    assert claim.attempt == 1
    return entry_id, timer_id


async def test_complete_ok_fires(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """ok: state fired, TTL = retention, entry acked and deleted."""
    entry_id, timer_id = await claimed(redis, scripts, shard)

    code, _ = await scripts.complete(
        shard, entry_id, timer_id, 1, "ok", "HTTP 200", RETENTION_MS
    )

    assert code == 1
    record = await redis.hgetall(shard.timer(timer_id))
    assert record["state"] == "fired"
    assert record["result"] == "HTTP 200"
    assert "claimed" not in record
    ttl_ms = await redis.pttl(shard.timer(timer_id))
    assert RETENTION_MS - 10_000 < ttl_ms <= RETENTION_MS
    assert await pending_count(redis, shard) == 0
    assert await redis.xlen(shard.ready) == 0
    assert not await redis.exists(shard.dead)


async def test_complete_retry_reschedules(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """retry: pending again, due ~ now + delay, back on the wheel, acked."""
    entry_id, timer_id = await claimed(redis, scripts, shard)
    before = await now_ms(redis)
    minute = slot_of(before + 5_000)

    code, now = await scripts.complete(
        shard,
        entry_id,
        timer_id,
        1,
        "retry",
        "HTTP 500",
        RETENTION_MS,
        retry_delay_ms=5_000,
        retry_minute=minute,
    )

    assert code == 1
    assert now >= before
    record = await redis.hgetall(shard.timer(timer_id))
    assert record["state"] == "pending"
    assert record["attempts"] == "1"
    assert record["result"] == "HTTP 500"
    assert int(record["due"]) == now + 5_000
    assert "claimed" not in record
    assert await redis.zscore(shard.slot(minute), timer_id) == now + 5_000
    assert await redis.zscore(shard.slots, str(minute)) == minute
    assert await redis.ttl(shard.timer(timer_id)) == -1
    assert await pending_count(redis, shard) == 0
    assert await redis.xlen(shard.ready) == 0


async def test_retried_timer_is_advanced_when_due(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A rescheduled timer moves to the ready stream once its delay passed."""
    entry_id, timer_id = await claimed(redis, scripts, shard)
    minute = slot_of(await now_ms(redis) + 50)
    code, now = await scripts.complete(
        shard,
        entry_id,
        timer_id,
        1,
        "retry",
        "HTTP 500",
        RETENTION_MS,
        retry_delay_ms=50,
        retry_minute=minute,
    )
    assert code == 1
    await take_lease(redis, shard)

    async def moved() -> int:
        reply = await scripts.advance(shard, TOKEN, [minute], 100)
        return reply.now_ms if reply.moved == 1 else 0

    moved_at = await poll(moved, what="the retry to move")
    assert moved_at >= now + 50
    assert await stream_ids(redis, shard.ready) == [timer_id]
    assert not await redis.exists(shard.slots)


async def test_complete_fail_dead_letters(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """fail: state failed with a TTL, one dead letter, entry acked."""
    entry_id, timer_id = await claimed(redis, scripts, shard)

    code, _ = await scripts.complete(
        shard, entry_id, timer_id, 1, "fail", "HTTP 503", RETENTION_MS
    )

    assert code == 1
    record = await redis.hgetall(shard.timer(timer_id))
    assert record["state"] == "failed"
    assert record["result"] == "HTTP 503"
    assert 0 < await redis.pttl(shard.timer(timer_id)) <= RETENTION_MS
    dead = await redis.xrange(shard.dead)
    assert [fields["id"] for _, fields in dead] == [timer_id]
    assert dead[0][1]["error"] == "HTTP 503"
    assert dead[0][1]["attempts"] == "1"
    assert await pending_count(redis, shard) == 0
    assert await redis.xlen(shard.ready) == 0


@pytest.mark.parametrize("outcome", ["ok", "retry", "fail"])
async def test_stale_completion_changes_nothing(
    redis: Redis, scripts: Scripts, shard: ShardKeys, outcome: str
) -> None:
    """A completion with a stale attempt number changes and acks nothing."""
    entry_id, timer_id = await claimed(redis, scripts, shard)
    record = await redis.hgetall(shard.timer(timer_id))
    minute = slot_of(await now_ms(redis) + 5_000)

    code, _ = await scripts.complete(
        shard,
        entry_id,
        timer_id,
        2,
        outcome,
        "HTTP 200",
        RETENTION_MS,
        retry_delay_ms=5_000,
        retry_minute=minute,
    )

    assert code == 0
    assert await redis.hgetall(shard.timer(timer_id)) == record
    assert await redis.ttl(shard.timer(timer_id)) == -1
    assert await pending_count(redis, shard) == 1
    assert await redis.xlen(shard.ready) == 1
    assert not await redis.exists(shard.dead)
    assert not await redis.exists(shard.slot(minute))


async def test_completion_of_unclaimed_record_is_stale(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A record no longer firing (already completed) is not completed twice."""
    entry_id, timer_id = await claimed(redis, scripts, shard)
    await scripts.complete(
        shard, entry_id, timer_id, 1, "ok", "HTTP 200", RETENTION_MS
    )

    code, _ = await scripts.complete(
        shard, entry_id, timer_id, 1, "fail", "late", RETENTION_MS
    )

    assert code == 0
    assert await redis.hget(shard.timer(timer_id), "state") == "fired"
    assert not await redis.exists(shard.dead)


async def test_complete_refuses_retry_slot_after_due_minute(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """A retry slot minute later than the due minute is refused with -1."""
    entry_id, timer_id = await claimed(redis, scripts, shard)
    record = await redis.hgetall(shard.timer(timer_id))
    late = slot_of(await now_ms(redis) + 5_000) + 5

    code, _ = await scripts.complete(
        shard,
        entry_id,
        timer_id,
        1,
        "retry",
        "HTTP 500",
        RETENTION_MS,
        retry_delay_ms=5_000,
        retry_minute=late,
    )

    assert code == -1
    assert await redis.hgetall(shard.timer(timer_id)) == record
    assert not await redis.exists(shard.slot(late))
    assert not await redis.exists(shard.slots)
    assert await pending_count(redis, shard) == 1


async def test_complete_accepts_retry_slot_a_minute_early(
    redis: Redis, scripts: Scripts, shard: ShardKeys
) -> None:
    """The minute before the due minute is a valid retry slot."""
    entry_id, timer_id = await claimed(redis, scripts, shard)
    early = slot_of(await now_ms(redis) + 120_000) - 1

    code, now = await scripts.complete(
        shard,
        entry_id,
        timer_id,
        1,
        "retry",
        "HTTP 500",
        RETENTION_MS,
        retry_delay_ms=120_000,
        retry_minute=early,
    )

    assert code == 1
    assert await redis.zscore(shard.slot(early), timer_id) == now + 120_000
