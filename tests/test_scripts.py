"""Every Lua script's semantics through ShardQueue, on Redis 6.2 and 7."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis as sync_redis
from redis.exceptions import ResponseError

from wheel.core import ids
from wheel.core.buckets import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    Bucket,
    Level,
    encode_member,
    minute_of,
    parse_member,
    place,
)
from wheel.core.states import Code, Outcome, TimerState, Verdict
from wheel.core.webhook_request import WebhookRequest, pack, unpack
from wheel.settings import Settings
from wheel.storage.inspect import Inspector
from wheel.storage.keys import GROUP, ShardKeys
from wheel.storage.registry import Registry
from wheel.storage.scripts import SCRIPTS, Script
from wheel.storage.shards import (
    CREATES_PER_CALL,
    IDEMPOTENCY_TTL_MS,
    Advanced,
    Attempt,
    Claim,
    Created,
    Deferral,
    Entry,
    Idempotency,
    NewTimer,
    ShardQueue,
)
from wheel.webhooks.sender import destination_prefix

URL = "http://127.0.0.1:9/hook"
TOKEN = "ticker-a"
OTHER = "ticker-b"
CONSUMER = "worker-a"
LEASE_MS = 30_000
SHARDS = 4
SHARD = 1


@pytest.fixture
def settings(any_redis_url: str) -> Settings:
    """Four shards on each Redis version in turn."""
    return Settings(redis_url=any_redis_url, shards=SHARDS)


@pytest.fixture
def shard(queue: ShardQueue) -> ShardKeys:
    """The keys of the shard most tests use."""
    return queue.keys.shard(SHARD)


def with_settings(
    queue: ShardQueue, hold_ms: int | None = None, **changes: object
) -> ShardQueue:
    """A queue on the same connection with some settings changed, and
    optionally a claim hold shorter than settings allow (a webhook
    timeout plus margins): the scripts' semantics, in less time."""
    changed = ShardQueue(queue.connection, queue.settings.replace(**changes))
    if hold_ms is not None:
        changed.hold_ms = hold_ms
    return changed


# -- helpers: looking at Redis ------------------------------------------------


def redis_ms(raw: sync_redis.Redis) -> int:
    """Redis' own clock in epoch ms."""
    seconds, micros = raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


def keys_left(raw: sync_redis.Redis) -> set[bytes]:
    """Every key in the database."""
    return set(raw.keys("*"))


def dump_all(raw: sync_redis.Redis) -> dict[bytes, bytes]:
    """Every key with its serialized value, to tell that nothing changed."""
    return {key: raw.dump(key) for key in raw.keys("*")}


def record(raw: sync_redis.Redis, shard: ShardKeys, timer_id: bytes) -> dict:
    """A timer's record hash with text values."""
    return {
        k.decode(): v.decode()
        for k, v in raw.hgetall(shard.timer(timer_id)).items()
    }


def finished_key(shard: ShardKeys, timer_id: bytes) -> bytes:
    """The hourly finished hash that holds ``timer_id`` once finished."""
    return shard.finished(ids.finished_hour(timer_id))


def stream(raw: sync_redis.Redis, key: bytes) -> list[tuple[int, dict]]:
    """A stream's entries: (entry ms, fields with text keys)."""
    return [
        (int(entry_id.split(b"-")[0]), {k.decode(): v for k, v in f.items()})
        for entry_id, f in raw.xrange(key)
    ]


def pending(raw: sync_redis.Redis, shard: ShardKeys) -> int:
    """Entries of the ready stream delivered and not acked."""
    return int(raw.xpending(shard.ready, GROUP)["pending"])


def index(raw: sync_redis.Redis, shard: ShardKeys) -> dict[bytes, int]:
    """The shard's bucket index: member -> score."""
    return {
        m: int(score)
        for m, score in raw.zrange(shard.index, 0, -1, withscores=True)
    }


async def until(
    check: Callable[[], Awaitable[object]],
    timeout_s: float = 5.0,
    what: str = "the condition",
) -> object:
    """Await ``check()`` until truthy; bounded in tries and in time."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.005) + 1):
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


# -- helpers: the life of a timer, as the roles drive it -------------------


async def create(
    queue: ShardQueue, delay_ms: int, id_ms: int | None = None
) -> Created:
    """Create a timer on :data:`SHARD`, its id chosen before the call.

    ``id_ms`` names the id's hour (that of its finished record).
    """
    guess = queue.clocks.now_ms(SHARD) + delay_ms
    timer_id = queue.ids.new(id_ms or guess, SHARDS, SHARD)
    created = await queue.create(URL, delay_ms, timer_id=timer_id)
    assert created.code is Code.DONE
    return created


async def take_lease(queue: ShardQueue, shard: ShardKeys) -> None:
    """Hold the shard's lease as :data:`TOKEN`."""
    assert await queue.acquire(shard, TOKEN, LEASE_MS)


async def advance(queue: ShardQueue, shard: ShardKeys) -> Advanced:
    """One advance over the minute buckets of the index, as a tick."""
    peek = await queue.peek(shard, 64)
    minutes = [b.number for b, _ in peek if b.level is Level.MINUTE]
    return await queue.advance(shard, TOKEN, minutes)


async def deliver(
    queue: ShardQueue, shard: ShardKeys, consumer: str = CONSUMER
) -> list[Entry]:
    """Move what is due into the ready stream and read it."""
    await take_lease(queue, shard)
    await queue.ensure_group(shard)
    await advance(queue, shard)
    return await queue.read(shard, consumer, 100)


async def claim(
    queue: ShardQueue, shard: ShardKeys, entry: Entry, by: str = CONSUMER
) -> Claim:
    """The claim verdict on one entry."""
    (verdict,) = await queue.claim(shard, by, [entry])
    return verdict


async def firing(
    queue: ShardQueue, shard: ShardKeys, id_ms: int | None = None
) -> tuple[Created, Entry, Claim]:
    """A timer due now, delivered and claimed for its first attempt."""
    created = await create(queue, 0, id_ms)
    (entry,) = await deliver(queue, shard)
    verdict = await claim(queue, shard, entry)
    assert verdict.verdict is Verdict.FIRE
    return created, entry, verdict


async def complete(
    queue: ShardQueue,
    shard: ShardKeys,
    entry: Entry,
    attempt: int,
    outcome: Outcome,
    result: str = "200",
    delay_ms: int = 0,
    by: str = CONSUMER,
) -> Code:
    """Report an attempt's outcome."""
    done = Attempt(entry, attempt, outcome, result, delay_ms)
    completed = await queue.complete(shard, by, done, deadline_s=2.0)
    return completed.code


def put_on_wheel(
    raw: sync_redis.Redis,
    queue: ShardQueue,
    shard: ShardKeys,
    bucket: Bucket,
    dues: list[int],
) -> list[bytes]:
    """Timers in ``bucket`` as create (or a cascade) leaves them there.

    Used for states creation cannot make now: timers whose due time is
    already past, as after a ticker outage.
    """
    timer_ids = [queue.ids.new(due, SHARDS, shard.shard) for due in dues]
    key = shard.bucket(bucket)
    for timer_id, due in zip(timer_ids, dues, strict=True):
        raw.hset(shard.timer(timer_id), mapping={"u": URL, "d": due, "s": "p"})
        if bucket.level is Level.MINUTE:
            raw.zadd(key, {timer_id: due})
            raw.zadd(shard.index, {bucket.member: due}, lt=True)
        else:
            raw.rpush(key, encode_member(timer_id, due))
            raw.zadd(shard.index, {bucket.member: bucket.cascade_ms})
    return timer_ids


def hand_over(
    raw: sync_redis.Redis, shard: ShardKeys, timer_id: bytes, sched_ms: int
) -> None:
    """Append a ready entry as an advance on another node would have."""
    if not raw.exists(shard.ready):
        raw.xgroup_create(shard.ready, GROUP, id="0", mkstream=True)
    raw.xadd(shard.ready, {"i": timer_id, "s": sched_ms})


async def advanced_early(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis, delay_ms: int
) -> tuple[Created, bytes, Entry]:
    """A timer taken off the wheel and handed over, read, before it is
    due (an advance on a node whose clock ran ahead): the timer, the
    minute bucket it left, and its ready entry."""
    created = await create(queue, delay_ms)
    ((member, _),) = index(raw, shard).items()
    minute = shard.bucket(Bucket(Level.MINUTE, int(member[1:])))
    raw.zrem(minute, created.timer_id)
    raw.zrem(shard.index, member)
    hand_over(raw, shard, created.timer_id, created.due_ms)
    (entry,) = await queue.read(shard, CONSUMER, 10)
    return created, minute, entry


def coarse_delay(now_ms: int) -> int:
    """A delay that puts a timer into a coarse bucket: an hour bucket's,
    the same one for a minute of clock difference, when there is one.

    Between about 22:54 and 23:00 UTC every due time that is not a
    minute bucket's is a day's (the hour buckets left today cascade
    within 5 minutes, and tomorrow's day bucket cascades at 23:00): then
    half past midnight, in tomorrow's day bucket (or, past 23:00, its
    first hour's). Tests check the level :func:`place` gives at the
    script's own clock, never skip.
    """
    for hours in range(1, 25):
        due = (now_ms // HOUR_MS + hours) * HOUR_MS + 30 * MINUTE_MS
        bucket = place(due, now_ms)
        if bucket.level is Level.HOUR and bucket == place(
            due, now_ms + MINUTE_MS
        ):
            return due - now_ms
    return (now_ms // DAY_MS + 1) * DAY_MS + 30 * MINUTE_MS - now_ms


# -- create -------------------------------------------------------------------


async def test_create_writes_record_due_by_redis_clock(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A create stores url, state and due = Redis TIME + delay."""
    before = redis_ms(raw)
    created = await create(queue, 45_000)
    after = redis_ms(raw)

    assert before <= created.now_ms <= after
    assert created.due_ms == created.now_ms + 45_000
    assert record(raw, shard, created.timer_id) == {
        "u": URL,
        "d": str(created.due_ms),
        "s": "p",
    }
    got = await queue.get(created.timer_id)
    assert got is not None
    assert (got.state, got.due_ms, got.attempts) == (
        TimerState.PENDING,
        created.due_ms,
        0,
    )


@pytest.mark.parametrize("level", [Level.MINUTE, Level.HOUR, Level.DAY])
async def test_create_chooses_bucket_by_level(
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    level: Level,
) -> None:
    """Near, hours and days ahead: minute, hour, day bucket; nothing else.
    (Hours ahead between 22:54 and 23:00 UTC: a day bucket, see
    :func:`coarse_delay`.)"""
    delays = {
        Level.MINUTE: 90_000,
        Level.HOUR: coarse_delay(redis_ms(raw)),
        Level.DAY: 3 * DAY_MS,
    }
    created = await create(queue, delays[level])
    bucket = place(created.due_ms, created.now_ms)
    timer_id = created.timer_id

    if level is Level.HOUR:
        assert bucket.level is not Level.MINUTE
    else:
        assert bucket.level is level
    key = shard.bucket(bucket)
    if level is Level.MINUTE:
        assert bucket == minute_of(created.due_ms)
        assert raw.zrange(key, 0, -1, withscores=True) == [
            (timer_id, created.due_ms)
        ]
        assert index(raw, shard) == {bucket.member.encode(): created.due_ms}
    else:
        assert raw.lrange(key, 0, -1) == [
            encode_member(timer_id, created.due_ms)
        ]
        lead = {Level.HOUR: 5 * MINUTE_MS, Level.DAY: HOUR_MS}[bucket.level]
        assert index(raw, shard) == {
            bucket.member.encode(): bucket.start_ms - lead
        }
        assert bucket.member[0] == bucket.level.value
    assert keys_left(raw) == {
        shard.timer(timer_id),
        shard.index,
        key,
        shard.count,
    }
    assert raw.get(shard.count) == b"1"


@pytest.mark.parametrize(
    ("state", "delay_ms"),
    [
        (TimerState.PENDING, 90_000),
        (TimerState.PENDING, 3 * DAY_MS),
        (TimerState.CANCELLED, 90_000),
        (TimerState.CANCELLED, 3 * DAY_MS),
        (TimerState.FIRED, 0),
    ],
)
async def test_replayed_create_answers_exists_once(
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    state: TimerState,
    delay_ms: int,
) -> None:
    """A create replayed with its id answers EXISTS and writes nothing."""
    timer_id = await in_state(queue, shard, state, delay_ms)
    first = await queue.get(timer_id)
    assert first is not None
    before = dump_all(raw)
    buckets = [
        key
        for key in before
        if raw.type(key) in (b"zset", b"list") and key != shard.index
    ]

    again = await queue.create(URL, delay_ms, timer_id=timer_id)

    assert (again.code, again.timer_id, again.due_ms) == (
        Code.EXISTS,
        timer_id,
        first.due_ms,
    )
    assert dump_all(raw) == before
    for key in buckets:
        size = raw.zcard(key) if raw.type(key) == b"zset" else raw.llen(key)
        assert size == 1
    got = await queue.get(timer_id)
    assert got is not None
    assert got.state is state


async def test_create_same_id_other_url_conflicts(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """An id reused with another url is refused and changes nothing."""
    created = await create(queue, 60_000)
    before = record(raw, shard, created.timer_id)

    other = await queue.create(
        "http://127.0.0.1:9/other", 60_000, timer_id=created.timer_id
    )

    assert other.code is Code.CONFLICT
    assert record(raw, shard, created.timer_id) == before


def idempotency(key: str, fingerprint: str) -> Idempotency:
    """An Idempotency-Key as the API digests it."""
    return Idempotency(
        hashlib.sha256(key.encode()).digest(),
        hashlib.sha256(fingerprint.encode()).digest(),
    )


def idempotency_on(shard: int, fingerprint: str = "a") -> Idempotency:
    """An Idempotency-Key whose record (and timer) is on ``shard``."""
    for n in range(1000):
        key = idempotency(f"key-{n}", fingerprint)
        if key.shard(SHARDS) == shard:
            return key
    raise AssertionError("no key maps to the shard")


def count_script_calls(queue: ShardQueue) -> list[str]:
    """The names of the scripts ``queue`` calls from now on, in order."""
    calls: list[str] = []
    original = queue.connection.script

    async def counting(script: Script, *args: Any, **kw: Any) -> Any:
        calls.append(script.name)
        return await original(script, *args, **kw)

    queue.connection.script = counting  # type: ignore[method-assign]
    return calls


async def create_together(queue: ShardQueue) -> list[Created]:
    """Six creates of :data:`SHARD` made in one turn of the event loop:
    two plain, one at an instant with its own request, a keyed one, the
    same key and fingerprint again, and the key with another one."""
    now = queue.clocks.now_ms(SHARD)
    keyed = idempotency_on(SHARD)
    other = Idempotency(keyed.key_digest, hashlib.sha256(b"b").digest())

    def on_shard(delay_ms: int) -> bytes:
        return queue.ids.new(now + delay_ms, SHARDS, SHARD)

    return await asyncio.gather(
        queue.create(URL, 60_000, timer_id=on_shard(60_000)),
        queue.create(URL, 2 * HOUR_MS, timer_id=on_shard(2 * HOUR_MS)),
        queue.create(
            URL,
            0,
            timer_id=on_shard(90_000),
            at_ms=now + 90_000,
            request=pack(WebhookRequest(method="PUT", body="x")),
        ),
        queue.create(URL, 60_000, keyed),
        queue.create(URL, 60_000, keyed),
        queue.create(URL, 60_000, other),
    )


async def test_creates_arriving_together_share_one_call(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Creates of one shard made in the same turn of the event loop go to
    Redis in one script call, each on its own terms: a keyed create
    repeated in that call answers the first's timer, another fingerprint
    a mismatch, and the shard counts the four new timers once each."""
    calls = count_script_calls(queue)
    created = await create_together(queue)

    assert calls == ["create"]
    assert [c.code for c in created] == [
        Code.DONE,
        Code.DONE,
        Code.DONE,
        Code.DONE,
        Code.EXISTS,
        Code.MISMATCH,
    ]
    assert created[4].timer_id == created[5].timer_id == created[3].timer_id
    assert created[4].due_ms == created[3].due_ms
    assert raw.get(shard.count) == b"4"
    for new in created[:4]:
        got = await queue.get(new.timer_id)
        assert got is not None
        assert (got.state, got.due_ms) == (TimerState.PENDING, new.due_ms)
    # The minute timers in a minute bucket, the two-hour one in an hour's
    # (a day's, when it falls after midnight); each minute bucket's index
    # score is its earliest timer's due.
    index = dict(raw.zrange(shard.index, 0, -1, withscores=True))
    coarse = place(created[1].due_ms, created[1].now_ms).level
    assert coarse is not Level.MINUTE
    assert {member[:1] for member in index} == {b"m", coarse.encode()}
    earliest: dict[bytes, int] = {}
    for new in created[:4]:
        if new.due_ms - new.now_ms < HOUR_MS:
            member = b"m%d" % (new.due_ms // MINUTE_MS)
            earliest[member] = min(
                earliest.get(member, new.due_ms), new.due_ms
            )
    assert {m: s for m, s in index.items() if m[:1] == b"m"} == earliest


async def test_a_create_call_with_a_bad_item_writes_nothing(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """The index and the count are written after a call's last timer, so
    a bad argument in any item refuses the whole call before its first
    write: no timer on a bucket the index does not name."""
    now = queue.clocks.now_ms(SHARD)

    def new_timer(delay: object) -> NewTimer:
        timer_id = queue.ids.new(now + 60_000, SHARDS, SHARD)
        minute = (now + 60_000) // MINUTE_MS
        return NewTimer(
            [
                shard.timer(timer_id),
                shard.minute(minute),
                shard.minute(minute),
                shard.timer(timer_id),
            ],
            [timer_id, URL, delay, minute, "m", 0, "", "", ""],
            finished_key(shard, timer_id),
        )

    with pytest.raises(ResponseError, match="is not a number"):
        await queue._create_many(shard, [new_timer(60_000), new_timer("soon")])
    assert raw.keys("*") == []


async def test_plain_creates_of_a_turn_go_to_one_shard_in_turn(
    queue: ShardQueue,
) -> None:
    """Creates without a key or id made together land on one shard, and
    the next turn's on the next shard: every shard gets its share."""
    turns = []
    for _ in range(SHARDS):
        created = await asyncio.gather(
            *(queue.create(URL, 60_000) for _ in range(5))
        )
        turns.append({ids.shard_of(c.timer_id, SHARDS) for c in created})
    assert all(len(shards) == 1 for shards in turns)
    order = [shards.pop() for shards in turns]
    assert sorted(order) == list(range(SHARDS))
    assert all((b - a) % SHARDS == 1 for a, b in itertools.pairwise(order))


async def test_a_turn_with_more_creates_than_a_call_spreads_them(
    queue: ShardQueue,
) -> None:
    """More plain creates in one turn than a call takes (an import that
    gathers thousands): a full call's worth on each shard in turn, not
    all of them on one."""
    created = await asyncio.gather(
        *(queue.create(URL, 60_000) for _ in range(3 * CREATES_PER_CALL))
    )
    per_shard = Counter(ids.shard_of(c.timer_id, SHARDS) for c in created)
    assert sorted(per_shard.values()) == [CREATES_PER_CALL] * 3


async def test_idempotent_create_same_fingerprint_answers_first(
    queue: ShardQueue, raw: sync_redis.Redis
) -> None:
    """Same key: same fingerprint EXISTS, other MISMATCH; both the first id."""
    first = await queue.create(URL, 60_000, idempotency("k", "a"))
    same = await queue.create(URL, 90_000, idempotency("k", "a"))
    other = await queue.create(URL, 60_000, idempotency("k", "b"))

    assert first.code is Code.DONE
    assert (same.code, same.timer_id, same.due_ms) == (
        Code.EXISTS,
        first.timer_id,
        first.due_ms,
    )
    assert (other.code, other.timer_id, other.due_ms) == (
        Code.MISMATCH,
        first.timer_id,
        first.due_ms,
    )
    timers = [k for k in keys_left(raw) if b":t:" in k]
    assert len(timers) == 1


async def test_idempotent_create_lives_on_the_key_shard(
    queue: ShardQueue, raw: sync_redis.Redis
) -> None:
    """An idempotent create's timer and key record are on the key's shard."""
    for name in ("a", "b", "c", "d", "e", "f"):
        key = idempotency(name, "x")
        k = key.shard(SHARDS)
        created = await queue.create(URL, 60_000, key)
        home = queue.keys.shard(k)

        assert ids.shard_of(created.timer_id, SHARDS) == k
        assert raw.exists(home.timer(created.timer_id))
        ttl = raw.pttl(home.idempotency(key.key_digest))
        assert IDEMPOTENCY_TTL_MS - 60_000 < ttl <= IDEMPOTENCY_TTL_MS


async def test_concurrent_idempotent_creates_make_one_timer(
    queue: ShardQueue, raw: sync_redis.Redis
) -> None:
    """20 creates at once with one key: one timer, one id for all."""
    key = idempotency("burst", "same")

    replies = await asyncio.gather(
        *(queue.create(URL, 60_000, key) for _ in range(20))
    )

    codes = Counter(reply.code for reply in replies)
    assert codes == {Code.DONE: 1, Code.EXISTS: 19}
    assert len({reply.timer_id for reply in replies}) == 1
    assert len({reply.due_ms for reply in replies}) == 1
    home = queue.keys.shard(key.shard(SHARDS))
    (timer_id,) = {reply.timer_id for reply in replies}
    bucket = home.bucket(minute_of(replies[0].due_ms))
    assert keys_left(raw) == {
        home.timer(timer_id),
        home.index,
        bucket,
        home.idempotency(key.key_digest),
        home.count,
    }
    assert raw.get(home.count) == b"1"


@pytest.mark.parametrize("offset_ms", [2 * HOUR_MS, -2 * HOUR_MS])
@pytest.mark.parametrize("delay_ms", [0, 300, 3 * HOUR_MS])
async def test_wrong_clock_estimate_never_makes_a_timer_late(
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    offset_ms: int,
    delay_ms: int,
) -> None:
    """A clock estimate 2 h off falls back to a minute bucket: never late."""
    monkeypatch.setattr(queue.clocks, "_offset_ms", [offset_ms] * SHARDS)
    monkeypatch.setattr(queue.clocks, "observe", lambda *_: None)

    created = await create(queue, delay_ms)

    ((member, score),) = index(raw, shard).items()
    assert member.startswith(b"m")
    assert score == created.due_ms
    bucket = shard.bucket(Bucket(Level.MINUTE, int(member[1:])))
    assert raw.zscore(bucket, created.timer_id) == created.due_ms
    if delay_ms >= HOUR_MS:
        return
    await take_lease(queue, shard)

    async def moved() -> bool:
        return (await advance(queue, shard)).moved == 1

    await until(moved, what="the timer to move")
    ((moved_ms, fields),) = stream(raw, shard.ready)
    assert fields["i"] == created.timer_id
    assert created.due_ms <= moved_ms < created.due_ms + 1000


# -- get and cancel ---------------------------------------------------------


async def in_state(
    queue: ShardQueue,
    shard: ShardKeys,
    state: TimerState | None,
    delay_ms: int = 60_000,
    id_ms: int | None = None,
) -> bytes:
    """The id of a timer driven into ``state`` (None: never created).

    Pending and cancelled ones are due ``delay_ms`` ahead, the others
    were due at once.
    """
    if state is None:
        return queue.ids.new(queue.clocks.now_ms(SHARD), SHARDS, SHARD)
    if state in (TimerState.PENDING, TimerState.CANCELLED):
        timer_id = (await create(queue, delay_ms, id_ms)).timer_id
        if state is TimerState.CANCELLED:
            assert (await queue.cancel(timer_id))[0] is Code.DONE
        return timer_id
    created, entry, _ = await firing(queue, shard, id_ms)
    outcomes = {TimerState.FIRED: Outcome.OK, TimerState.FAILED: Outcome.FAIL}
    if state in outcomes:
        code = await complete(queue, shard, entry, 1, outcomes[state], "500")
        assert code is Code.DONE
    return created.timer_id


@pytest.mark.parametrize(
    ("state", "attempts"),
    [
        (TimerState.PENDING, 0),
        (TimerState.FIRING, 1),
        (TimerState.FIRED, 1),
        (TimerState.FAILED, 1),
        (TimerState.CANCELLED, 0),
    ],
)
async def test_get_reads_every_state(
    queue: ShardQueue, shard: ShardKeys, state: TimerState, attempts: int
) -> None:
    """get reads state and attempts from the record or finished record."""
    timer_id = await in_state(queue, shard, state)

    got = await queue.get(timer_id)

    assert got is not None
    assert (got.state, got.attempts) == (state, attempts)
    finished = state not in (TimerState.PENDING, TimerState.FIRING)
    assert (got.finished_ms is not None) is finished


async def test_get_unknown_timer_is_none(
    queue: ShardQueue, shard: ShardKeys
) -> None:
    """An id never created reads as None."""
    assert await queue.get(await in_state(queue, shard, None)) is None


@pytest.mark.parametrize(
    ("state", "code", "found"),
    [
        (TimerState.PENDING, Code.DONE, TimerState.CANCELLED),
        (TimerState.FIRING, Code.CONFLICT, TimerState.FIRING),
        (TimerState.FIRED, Code.CONFLICT, TimerState.FIRED),
        (TimerState.FAILED, Code.CONFLICT, TimerState.FAILED),
        (TimerState.CANCELLED, Code.DONE, TimerState.CANCELLED),
        (None, Code.NOT_FOUND, None),
    ],
)
async def test_cancel_answers_by_state(
    queue: ShardQueue,
    shard: ShardKeys,
    state: TimerState | None,
    code: Code,
    found: TimerState | None,
) -> None:
    """Only a pending timer is cancelled; firing or finished conflict."""
    timer_id = await in_state(queue, shard, state)
    before = await queue.get(timer_id)

    assert await queue.cancel(timer_id) == (code, found)

    after = await queue.get(timer_id)
    if state is TimerState.PENDING:
        assert after is not None
        assert after.state is TimerState.CANCELLED
    else:
        assert (after is None) is (before is None)
        if after is not None and before is not None:
            assert (after.state, after.attempts) == (
                before.state,
                before.attempts,
            )


async def test_cancel_twice_is_done_both_times(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A retried cancel answers as the first did; the record is gone."""
    created = await create(queue, 60_000)

    first = await queue.cancel(created.timer_id)
    second = await queue.cancel(created.timer_id)

    assert first == second == (Code.DONE, TimerState.CANCELLED)
    assert not raw.exists(shard.timer(created.timer_id))


@pytest.mark.parametrize(
    "state", [TimerState.FIRED, TimerState.FAILED, TimerState.CANCELLED]
)
async def test_finished_record_kept_for_retention(
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    state: TimerState,
) -> None:
    """A finished record stays readable for the retention from its finish."""
    retention_ms = int(queue.settings.retention * 1000)
    hour_ms = redis_ms(raw)

    async def expires_after_retention(timer_id: bytes) -> bool:
        key = finished_key(shard, timer_id)
        got = await queue.get(timer_id)
        assert got is not None
        assert got.finished_ms is not None
        assert not raw.exists(shard.timer(timer_id))
        assert raw.hexists(key, timer_id)
        expires_ms = redis_ms(raw) + raw.pttl(key)
        return expires_ms >= got.finished_ms + retention_ms

    first = await in_state(queue, shard, state, id_ms=hour_ms)
    assert await expires_after_retention(first)

    # 30 s later another timer of the same hour finishes.
    raw.pexpire(finished_key(shard, first), retention_ms - 30_000)
    later = await in_state(queue, shard, state, id_ms=hour_ms)
    assert finished_key(shard, later) == finished_key(shard, first)
    assert await expires_after_retention(later)


# -- advance ----------------------------------------------------------------


async def test_advance_moves_only_due_ids_oldest_first(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Only due ids move, oldest first; the index keeps the earliest left."""
    now = redis_ms(raw)
    bucket = minute_of(now - MINUTE_MS)
    dues = [now - 3_000, now - 9_000, now + 40_000, now - 6_000]
    timer_ids = put_on_wheel(raw, queue, shard, bucket, dues)
    await take_lease(queue, shard)

    reply = await queue.advance(shard, TOKEN, [bucket.number])

    assert (reply.code, reply.moved, reply.more) == (Code.DONE, 3, False)
    moved = stream(raw, shard.ready)
    assert [f["i"] for _, f in moved] == [
        timer_ids[1],
        timer_ids[3],
        timer_ids[0],
    ]
    assert [int(f["s"]) for _, f in moved] == [
        now - 9_000,
        now - 6_000,
        now - 3_000,
    ]
    assert raw.zrange(shard.bucket(bucket), 0, -1) == [timer_ids[2]]
    assert index(raw, shard) == {bucket.member.encode(): now + 40_000}


async def test_advance_bounded_by_batch_and_ready_room(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Advance moves at most batch_size, never past ready_max (then FULL)."""
    small = with_settings(queue, batch_size=10, ready_max=25)
    created = [await create(small, 0) for _ in range(30)]
    await take_lease(small, shard)

    replies = [await advance(small, shard) for _ in range(4)]

    assert [(r.code, r.moved, r.more) for r in replies] == [
        (Code.DONE, 10, True),
        (Code.DONE, 10, True),
        (Code.DONE, 5, True),
        (Code.FULL, 0, True),
    ]
    order = sorted(created, key=lambda c: (c.due_ms, c.timer_id))
    moved = stream(raw, shard.ready)
    assert [f["i"] for _, f in moved] == [c.timer_id for c in order[:25]]
    assert min(index(raw, shard).values()) == order[25].due_ms


async def test_advance_drops_emptied_bucket_from_index(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A bucket moved empty leaves the index; its key is gone."""
    now = redis_ms(raw)
    old = [minute_of(now - 3 * MINUTE_MS), minute_of(now - 2 * MINUTE_MS)]
    for bucket in old:
        put_on_wheel(raw, queue, shard, bucket, [bucket.start_ms + 5])
    await take_lease(queue, shard)

    reply = await advance(queue, shard)

    assert (reply.moved, reply.more) == (2, False)
    assert not raw.exists(shard.index)
    assert not any(raw.exists(shard.bucket(b)) for b in old)


@pytest.mark.parametrize("holder", [None, OTHER])
async def test_advance_without_the_lease_moves_nothing(
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    holder: str | None,
) -> None:
    """A free lease or another's: NOT_OURS, nothing moved."""
    if holder is not None:
        assert await queue.acquire(shard, holder, LEASE_MS)
    created = await create(queue, 0)
    before = index(raw, shard)

    reply = await advance(queue, shard)

    assert (reply.code, reply.moved) == (Code.NOT_OURS, 0)
    assert not raw.exists(shard.ready)
    assert index(raw, shard) == before
    minute = shard.bucket(minute_of(created.due_ms))
    assert raw.zrange(minute, 0, -1) == [created.timer_id]


async def test_concurrent_advances_move_each_id_once(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Eight advances at a time never move an id twice or lose one."""
    now = redis_ms(raw)
    timer_ids = []
    for back in (3, 2):
        bucket = minute_of(now - back * MINUTE_MS)
        dues = [bucket.start_ms + i for i in range(150)]
        timer_ids += put_on_wheel(raw, queue, shard, bucket, dues)
    small = with_settings(queue, batch_size=7)
    await take_lease(small, shard)

    total = 0
    for _ in range(60):
        replies = await asyncio.gather(
            *(advance(small, shard) for _ in range(8))
        )
        total += sum(r.moved for r in replies)
        if total >= len(timer_ids):
            break

    counts = Counter(f["i"] for _, f in stream(raw, shard.ready))
    assert total == len(timer_ids)
    assert set(counts) == set(timer_ids)
    assert max(counts.values()) == 1


async def test_timers_due_while_ticker_down_fire_oldest_first(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """After an outage the due buckets drain in due order across buckets."""
    now = redis_ms(raw)
    dues = []
    for back in (5, 3, 4):
        bucket = minute_of(now - back * MINUTE_MS)
        minute_dues = [bucket.start_ms + 50_000, bucket.start_ms + 10]
        put_on_wheel(raw, queue, shard, bucket, minute_dues)
        dues += minute_dues
    small = with_settings(queue, batch_size=4)
    await take_lease(small, shard)

    for _ in range(10):
        if not (await advance(small, shard)).more:
            break

    moved = [int(f["s"]) for _, f in stream(raw, shard.ready)]
    assert moved == sorted(dues)
    assert not raw.exists(shard.index)


# -- cascade ----------------------------------------------------------------


async def cascade_all(
    queue: ShardQueue, shard: ShardKeys, bucket: Bucket, limit: int = 1000
) -> list[tuple[int, int]]:
    """Cascade ``bucket`` until empty; (moved, left) of each call."""
    calls = []
    for _ in range(100):
        reply = await queue.cascade(shard, TOKEN, bucket, limit)
        assert reply.code is Code.DONE
        calls.append((reply.moved, reply.left))
        if reply.left == 0:
            return calls
    raise AssertionError("the cascade never emptied the bucket")


async def test_cascade_day_into_hours_then_minutes(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A day cascades into hour buckets, an hour into minutes by due ms."""
    now = redis_ms(raw)
    day = Bucket(Level.DAY, now // DAY_MS + 3)
    targets = [day.start_ms + h * HOUR_MS + 7 * MINUTE_MS for h in (2, 2, 9)]
    created = [await create(queue, t - now) for t in targets]
    assert index(raw, shard) == {day.member.encode(): day.start_ms - HOUR_MS}
    await take_lease(queue, shard)

    assert await cascade_all(queue, shard, day) == [(3, 0)]

    hours = {Bucket(Level.HOUR, c.due_ms // HOUR_MS) for c in created}
    assert index(raw, shard) == {
        h.member.encode(): h.start_ms - 5 * MINUTE_MS for h in hours
    }
    for hour in hours:
        members = [
            encode_member(c.timer_id, c.due_ms)
            for c in created
            if c.due_ms // HOUR_MS == hour.number
        ]
        assert sorted(raw.lrange(shard.bucket(hour), 0, -1)) == sorted(members)
        assert await cascade_all(queue, shard, hour) == [(len(members), 0)]

    minutes = {minute_of(c.due_ms) for c in created}
    for minute in minutes:
        expected = sorted(
            (c.due_ms, c.timer_id)
            for c in created
            if minute_of(c.due_ms) == minute
        )
        assert raw.zrange(shard.bucket(minute), 0, -1, withscores=True) == [
            (timer_id, due) for due, timer_id in expected
        ]
    assert index(raw, shard) == {
        m.member.encode(): min(
            c.due_ms for c in created if minute_of(c.due_ms) == m
        )
        for m in minutes
    }
    assert keys_left(raw) == {
        shard.lease,
        shard.index,
        shard.count,
        *(shard.timer(c.timer_id) for c in created),
        *(shard.bucket(m) for m in minutes),
    }
    for c in created:
        got = await queue.get(c.timer_id)
        assert got is not None
        assert (got.state, got.due_ms) == (TimerState.PENDING, c.due_ms)


async def test_cascade_is_bounded_by_its_limit(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A cascade moves at most its limit; the bucket leaves the index last."""
    now = redis_ms(raw)
    hour = Bucket(Level.HOUR, now // HOUR_MS + 3)
    dues = [hour.start_ms + i * 1000 for i in range(25)]
    put_on_wheel(raw, queue, shard, hour, dues)
    await take_lease(queue, shard)

    first = await queue.cascade(shard, TOKEN, hour, 10)
    assert (first.moved, first.left) == (10, 15)
    assert hour.member.encode() in index(raw, shard)
    rest = await cascade_all(queue, shard, hour, 10)

    assert rest == [(10, 5), (5, 0)]
    assert hour.member.encode() not in index(raw, shard)
    total = sum(raw.zcard(shard.bucket(m)) for m in hour.children())
    assert total == 25


async def test_cascade_without_the_lease_moves_nothing(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Another ticker's lease: NOT_OURS and the bucket is untouched."""
    now = redis_ms(raw)
    hour = Bucket(Level.HOUR, now // HOUR_MS + 3)
    put_on_wheel(raw, queue, shard, hour, [hour.start_ms + 5])
    assert await queue.acquire(shard, OTHER, LEASE_MS)

    reply = await queue.cascade(shard, TOKEN, hour, 100)

    assert (reply.code, reply.moved) == (Code.NOT_OURS, 0)
    assert raw.llen(shard.bucket(hour)) == 1


async def test_late_cascade_fires_everything_oldest_first_never_early(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A late cascade fires every timer in due order, none early."""
    now = redis_ms(raw)
    hour = Bucket(Level.HOUR, now // HOUR_MS)
    overdue = [now - 2_000, now - 50, now - 1_500]
    soon = [now + 400, now + 200]
    dues = overdue + soon
    timer_ids = put_on_wheel(raw, queue, shard, hour, dues)
    assert index(raw, shard)[hour.member.encode()] < now
    await take_lease(queue, shard)

    assert await cascade_all(queue, shard, hour) == [(5, 0)]
    assert not raw.exists(shard.bucket(hour))

    async def all_moved() -> bool:
        await advance(queue, shard)
        return raw.xlen(shard.ready) == len(dues)

    await until(all_moved, what="every timer to move")
    moved = stream(raw, shard.ready)
    assert Counter(f["i"] for _, f in moved) == Counter(timer_ids)
    assert [int(f["s"]) for _, f in moved] == sorted(overdue + soon)
    assert all(moved_ms >= int(f["s"]) for moved_ms, f in moved)
    assert not raw.exists(shard.index)


# -- claim --------------------------------------------------------------------


async def test_claim_fires_a_pending_entry(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Fire with url, attempt 1 and due; the record is firing."""
    created, entry, verdict = await firing(queue, shard)

    assert verdict == Claim(Verdict.FIRE, URL, 1, due_ms=created.due_ms)
    rec = record(raw, shard, created.timer_id)
    assert (rec["s"], rec["a"]) == ("r", "1")
    assert rec["c"].endswith(f"|{entry.entry_id.decode()}|{CONSUMER}")
    assert pending(raw, shard) == 1


async def test_claim_replayed_fires_the_same_attempt(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A claim replayed by its consumer fires again with the same attempt."""
    created, entry, verdict = await firing(queue, shard)

    again = await claim(queue, shard, entry)

    assert again == verdict
    assert record(raw, shard, created.timer_id)["a"] == "1"


async def test_claim_by_another_consumer_is_busy(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Another worker's live claim is busy with the ms until it lapses."""
    created, entry, _ = await firing(queue, shard)
    hold_ms = queue.hold_ms
    before = record(raw, shard, created.timer_id)

    verdict = await claim(queue, shard, entry, by="worker-b")

    assert verdict.verdict is Verdict.BUSY
    assert hold_ms - 2_000 < verdict.wait_ms <= hold_ms
    assert record(raw, shard, created.timer_id) == before


async def skip_case(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis, case: str
) -> tuple[bytes, Entry]:
    """A delivered entry the claim must skip, and its timer."""
    if case == "missing":
        timer_id = await in_state(queue, shard, None)
        hand_over(raw, shard, timer_id, redis_ms(raw))
    elif case == "stale copy":
        created, entry, _ = await firing(queue, shard)
        code = await complete(
            queue, shard, entry, 1, Outcome.RETRY, "503", delay_ms=60_000
        )
        assert code is Code.DONE
        timer_id = created.timer_id
        hand_over(raw, shard, timer_id, created.due_ms)
    else:
        state = {"fired": TimerState.FIRED, "cancelled": TimerState.CANCELLED}
        timer_id = await in_state(queue, shard, state[case])
        hand_over(raw, shard, timer_id, redis_ms(raw))
    (entry,) = await queue.read(shard, CONSUMER, 10)
    return timer_id, entry


@pytest.mark.parametrize(
    "case", ["fired", "cancelled", "missing", "stale copy"]
)
async def test_claim_skips_and_acks(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis, case: str
) -> None:
    """Finished, cancelled, missing or stale copies are skipped and acked."""
    timer_id, entry = await skip_case(queue, shard, raw, case)

    async def view() -> tuple[object, dict]:
        got = await queue.get(timer_id)
        seen = got and (got.state, got.attempts, got.next_ms)
        return seen, record(raw, shard, timer_id)

    before = await view()

    verdict = await claim(queue, shard, entry)

    assert verdict == Claim(Verdict.SKIP)
    assert pending(raw, shard) == 0
    assert raw.xlen(shard.ready) == 0
    assert await view() == before


async def test_claim_of_a_future_schedule_is_early(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """An entry not due by this clock is early and left pending."""
    created = await create(queue, 60_000)
    hand_over(raw, shard, created.timer_id, created.due_ms)
    (entry,) = await queue.read(shard, CONSUMER, 10)
    before = record(raw, shard, created.timer_id)

    verdict = await claim(queue, shard, entry)

    assert verdict == Claim(Verdict.EARLY, due_ms=created.due_ms)
    assert pending(raw, shard) == 1
    assert record(raw, shard, created.timer_id) == before


async def test_claim_out_of_attempts_dead_letters(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """With every attempt used, the claim fails and dead-letters the timer."""
    once = with_settings(queue, max_attempts=1)
    created, entry, _ = await firing(once, shard)
    code = await complete(once, shard, entry, 1, Outcome.RETRY, "503")
    assert code is Code.DONE
    (again,) = await deliver(once, shard)

    verdict = await claim(once, shard, again)

    assert verdict == Claim(Verdict.DEAD)
    assert pending(raw, shard) == 0
    assert not raw.exists(shard.timer(created.timer_id))
    got = await once.get(created.timer_id)
    assert got is not None
    assert (got.state, got.attempts) == (TimerState.FAILED, 1)
    ((_, letter),) = stream(raw, shard.dead)
    assert letter["i"] == created.timer_id
    assert (letter["u"], letter["a"]) == (URL.encode(), b"1")
    assert letter["e"] == b"delivered too many times"


@pytest.mark.parametrize(
    ("max_attempts", "expected"), [(1, Verdict.DEAD), (3, Verdict.FIRE)]
)
async def test_lapsed_claim_is_taken_over(
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    max_attempts: int,
    expected: Verdict,
) -> None:
    """A lapsed claim is taken over, or dead-lettered with no attempt left."""
    short = with_settings(queue, max_attempts=max_attempts, hold_ms=200)
    created, entry, _ = await firing(short, shard)

    async def not_busy() -> Claim | None:
        verdict = await claim(short, shard, entry, by="worker-b")
        return None if verdict.verdict is Verdict.BUSY else verdict

    verdict = await until(not_busy, what="the claim to lapse")

    assert isinstance(verdict, Claim)
    if expected is Verdict.FIRE:
        assert verdict == Claim(Verdict.FIRE, URL, 2, due_ms=created.due_ms)
        assert record(raw, shard, created.timer_id)["c"].endswith("|worker-b")
    else:
        assert verdict == Claim(Verdict.DEAD)
        assert not raw.exists(shard.timer(created.timer_id))


async def test_claim_batch_keeps_the_order_of_verdicts(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """One verdict per entry, in the order of the entries."""
    now_due = await create(queue, 0)
    missing = await in_state(queue, shard, None)
    later = await create(queue, 60_000)
    also_due = await create(queue, 0)
    await take_lease(queue, shard)
    await queue.ensure_group(shard)
    await advance(queue, shard)
    hand_over(raw, shard, missing, redis_ms(raw))
    hand_over(raw, shard, later.timer_id, later.due_ms)
    entries = await queue.read(shard, CONSUMER, 10)
    by_id = {e.timer_id: e for e in entries}
    order = [now_due.timer_id, missing, later.timer_id, also_due.timer_id]

    verdicts = await queue.claim(shard, CONSUMER, [by_id[t] for t in order])

    assert [v.verdict for v in verdicts] == [
        Verdict.FIRE,
        Verdict.SKIP,
        Verdict.EARLY,
        Verdict.FIRE,
    ]
    assert verdicts[0].due_ms == now_due.due_ms
    assert verdicts[3].due_ms == also_due.due_ms


# -- claim: deferring a saturated destination's timers ------------------------


async def due_now(queue: ShardQueue, urls: list[str]) -> list[Created]:
    """Timers due now on :data:`SHARD`, one per url."""
    made = []
    for url in urls:
        guess = queue.clocks.now_ms(SHARD)
        timer_id = queue.ids.new(guess, SHARDS, SHARD)
        created = await queue.create(url, 0, timer_id=timer_id)
        assert created.code is Code.DONE
        made.append(created)
    return made


async def clear_of_minute_end(raw: sync_redis.Redis, span_ms: int) -> None:
    """Wait (at most ``span_ms`` and a moment) until Redis' clock is more
    than ``span_ms`` before the end of its minute: a claim's deferrals
    within ``span_ms`` then share the minute its caller named."""

    async def clear() -> bool:
        return redis_ms(raw) % MINUTE_MS < MINUTE_MS - span_ms - 200

    await until(clear, timeout_s=span_ms / 1000 + 1, what="a minute clear")


async def test_claim_defers_a_saturated_destinations_timers(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Timers whose url starts with a saturated prefix go back on the
    wheel unclaimed: due at now + first + one step per earlier one,
    attempts unchanged, entries acked and deleted; they fire later as
    their first attempt."""
    made = await due_now(queue, [URL] * 3)
    entries = await deliver(queue, shard)
    await clear_of_minute_end(raw, 100)
    before_ms = redis_ms(raw)

    claims = await queue.claim(
        shard, CONSUMER, entries, [Deferral(destination_prefix(URL), 40, 10)]
    )

    assert [(c.verdict, c.wait_ms, c.deferral) for c in claims] == [
        (Verdict.DEFERRED, 40, 1),
        (Verdict.DEFERRED, 50, 1),
        (Verdict.DEFERRED, 60, 1),
    ]
    assert pending(raw, shard) == 0
    assert raw.xlen(shard.ready) == 0
    dues = []
    for entry in entries:
        rec = record(raw, shard, entry.timer_id)
        assert (rec["s"], rec.get("a", "0")) == ("p", "0")
        assert "c" not in rec
        dues.append(int(rec["n"]))
        minute = shard.minute(int(rec["n"]) // MINUTE_MS)
        assert raw.zscore(minute, entry.timer_id) == int(rec["n"])
    assert [due - dues[0] for due in dues] == [0, 10, 20]
    assert before_ms + 40 <= dues[0] <= redis_ms(raw) + 40
    again: list[Entry] = []

    async def all_back() -> bool:
        again.extend(await deliver(queue, shard))
        return len(again) >= len(made)

    await until(all_back, what="the deferred timers due again")
    assert sorted(e.timer_id for e in again) == sorted(
        c.timer_id for c in made
    )
    for entry in again:
        assert (await claim(queue, shard, entry)).attempt == 1


async def test_claim_defers_only_the_exact_destination(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A prefix matches the url's whole "scheme://authority": a longer
    host, another port or scheme, and a url spelling it differently are
    claimed as usual; every spelling of a url is deferred by its own
    prefix (the worker learns the spelling from a claim)."""
    urls = [
        "http://a.example/hook",
        "http://a.example",
        "http://a.example?x=1",
        "http://a.example#f",
        # The authority ends at a backslash, as for host_key.
        "http://a.example\\@127.0.0.1/hook",
        "http://a.example.evil/hook",
        "http://a.example:8080/hook",
        "https://a.example/hook",
        "http://A.example/hook",
        "http://user@a.example/hook",
    ]
    made = await due_now(queue, urls)
    entries = await deliver(queue, shard)
    by_id = {e.timer_id: e for e in entries}
    ordered = [by_id[c.timer_id] for c in made]
    await clear_of_minute_end(raw, 600)

    claims = await queue.claim(
        shard, CONSUMER, ordered, [Deferral("http://a.example", 500, 1)]
    )

    assert [c.verdict for c in claims] == [Verdict.DEFERRED] * 5 + [
        Verdict.FIRE
    ] * 5
    for url in urls:
        assert url.startswith(destination_prefix(url))
    assert {destination_prefix(u) for u in urls[:5]} == {"http://a.example"}
    # Each of the others is deferred by the prefix Python makes of it.
    others = urls[5:]
    for claimed in made[5:]:
        done = await complete(
            queue, shard, by_id[claimed.timer_id], 1, Outcome.DEFER, "", 0
        )
        assert done is Code.DONE
    again: dict[bytes, Entry] = {}

    async def all_back() -> bool:
        again.update((e.timer_id, e) for e in await deliver(queue, shard))
        return all(c.timer_id in again for c in made[5:])

    await until(all_back, what="the other timers due again")
    await clear_of_minute_end(raw, 600)
    claims = await queue.claim(
        shard,
        CONSUMER,
        [again[c.timer_id] for c in made[5:]],
        [Deferral(destination_prefix(url), 500, 1) for url in others],
    )
    assert [(c.verdict, c.deferral) for c in claims] == [
        (Verdict.DEFERRED, n) for n in range(1, len(others) + 1)
    ]


async def test_claim_leaves_a_deferral_of_another_minute_to_the_worker(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """The call names one minute bucket (that of the first deferral): a
    deferral that would fall in the next minute is not made; that entry
    is claimed as usual (the worker defers it itself)."""
    await due_now(queue, [URL] * 2)
    entries = await deliver(queue, shard)

    claims = await queue.claim(
        shard,
        CONSUMER,
        entries,
        [Deferral(destination_prefix(URL), 1, 61_000)],
    )

    assert [c.verdict for c in claims] == [Verdict.DEFERRED, Verdict.FIRE]
    assert pending(raw, shard) == 1


async def test_claim_deferral_replayed_changes_nothing(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A deferring claim sent again (its reply lost) finds the timers
    moved on: SKIP, and nothing changes."""
    await due_now(queue, [URL] * 2)
    entries = await deliver(queue, shard)
    deferral = [Deferral(destination_prefix(URL), 500, 100)]
    await clear_of_minute_end(raw, 600)
    first = await queue.claim(shard, CONSUMER, entries, deferral)
    assert {c.verdict for c in first} == {Verdict.DEFERRED}
    before = dump_all(raw)

    again = await queue.claim(shard, CONSUMER, entries, deferral)

    assert [c.verdict for c in again] == [Verdict.SKIP] * 2
    assert dump_all(raw) == before


# -- complete -----------------------------------------------------------------


async def test_complete_ok_finishes_and_acks(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """ok: the record becomes a finished record and the entry is acked."""
    created, entry, verdict = await firing(queue, shard)

    code = await complete(queue, shard, entry, verdict.attempt, Outcome.OK)

    assert code is Code.DONE
    assert pending(raw, shard) == 0
    assert raw.xlen(shard.ready) == 0
    got = await queue.get(created.timer_id)
    assert got is not None
    assert (got.state, got.attempts, got.result) == (
        TimerState.FIRED,
        1,
        "200",
    )
    assert got.finished_ms is not None
    assert got.finished_ms >= created.due_ms
    assert keys_left(raw) == {
        shard.lease,
        shard.ready,
        shard.count,
        finished_key(shard, created.timer_id),
        shard.finished_hours,
        shard.finished_expiry,
    }
    assert raw.get(shard.count) == b"0"


async def test_completions_ending_together_share_one_call(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Attempts of one shard completed in the same turn of the event loop
    go to Redis in one script call, and each gets its own code: a stale
    one (an attempt its claim did not start) is C_STALE beside the others'
    C_DONE and changes nothing of its timer."""
    for _ in range(3):
        await create(queue, 0)
    entries = await deliver(queue, shard)
    claims = await queue.claim(shard, CONSUMER, entries)
    calls = count_script_calls(queue)
    codes = await asyncio.gather(
        complete(queue, shard, entries[0], claims[0].attempt, Outcome.OK),
        complete(queue, shard, entries[1], claims[1].attempt + 1, Outcome.OK),
        complete(
            queue,
            shard,
            entries[2],
            claims[2].attempt,
            Outcome.RETRY,
            delay_ms=60_000,
        ),
    )

    assert calls == ["complete"]
    assert codes == [Code.DONE, Code.STALE, Code.DONE]
    states = []
    for entry in entries:
        got = await queue.get(entry.timer_id)
        assert got is not None
        states.append(got.state)
    assert states == [TimerState.FIRED, TimerState.FIRING, TimerState.PENDING]
    # Only the stale one's entry is still pending in the group, and in
    # the stream; the two done ones left the count of unfinished timers.
    assert pending(raw, shard) == 1
    assert [e for e, _ in raw.xrange(shard.ready)] == [entries[1].entry_id]
    assert raw.get(shard.count) == b"2"


async def test_a_completion_call_with_a_bad_item_writes_nothing(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A completion call deletes its entries and lowers the count after
    its last attempt, so a bad argument in any attempt refuses the whole
    call before its first write: no attempt half recorded."""
    for _ in range(2):
        await create(queue, 0)
    entries = await deliver(queue, shard)
    claims = await queue.claim(shard, CONSUMER, entries)
    original = queue.connection.script

    async def spoiling(script: Script, keys: Any, args: Any, **kw: Any) -> Any:
        # The second attempt's duration (ARGV[5 + 12 + 9]) is no number.
        args = list(args)
        args[4 + 12 + 9] = "soon"
        return await original(script, keys, args, **kw)

    queue.connection.script = spoiling  # type: ignore[method-assign]
    before = {e.timer_id: record(raw, shard, e.timer_id) for e in entries}
    outcomes = await asyncio.gather(
        *(
            complete(queue, shard, entry, claim.attempt, Outcome.OK)
            for entry, claim in zip(entries, claims, strict=True)
        ),
        return_exceptions=True,
    )

    assert all(
        isinstance(o, ResponseError) and "is not a number" in str(o)
        for o in outcomes
    )
    assert {e.timer_id: record(raw, shard, e.timer_id) for e in entries} == (
        before
    )
    assert pending(raw, shard) == 2
    assert raw.xlen(shard.ready) == 2


async def test_a_claim_drops_every_next_schedule_it_fires(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A fired record keeps no next schedule (``n``), whether its entry
    comes first in the call (whose deletion also guards a full Redis) or
    later, when the field is deleted only because it is there."""
    for _ in range(3):
        await create(queue, 0)
    entries = await deliver(queue, shard)
    assert len(entries) == 3
    # The later two stand for retried timers: their schedule is in n.
    for entry in entries[1:]:
        raw.hset(shard.timer(entry.timer_id), "n", entry.sched_ms)

    claims = await queue.claim(shard, CONSUMER, entries)

    assert [c.verdict for c in claims] == [Verdict.FIRE] * 3
    for entry in entries:
        rec = record(raw, shard, entry.timer_id)
        assert "n" not in rec
        assert (rec["s"], rec["a"]) == ("r", "1")


async def test_complete_retry_fires_again_only_after_the_delay(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """retry: back on the wheel, attempt counted, moved only after delay."""
    created, entry, _ = await firing(queue, shard)
    before_ms = redis_ms(raw)

    code = await complete(
        queue, shard, entry, 1, Outcome.RETRY, "503", delay_ms=700
    )

    assert code is Code.DONE
    assert pending(raw, shard) == 0
    rec = record(raw, shard, created.timer_id)
    sched = int(rec["n"])
    assert before_ms + 700 <= sched <= redis_ms(raw) + 700
    assert (rec["s"], rec["a"], rec["r"], rec["d"]) == (
        "p",
        "1",
        "503",
        str(created.due_ms),
    )
    got = await queue.get(created.timer_id)
    assert got is not None
    assert (got.state, got.attempts, got.next_ms) == (
        TimerState.PENDING,
        1,
        sched,
    )
    ((member, score),) = index(raw, shard).items()
    bucket = shard.bucket(Bucket(Level.MINUTE, int(member[1:])))
    assert (raw.zscore(bucket, created.timer_id), score) == (sched, sched)

    async def moved() -> Advanced | None:
        reply = await advance(queue, shard)
        return reply if reply.moved else None

    reply = await until(moved, what="the retry to move")
    assert isinstance(reply, Advanced)
    assert reply.now_ms >= sched
    ((moved_ms, fields),) = stream(raw, shard.ready)
    assert moved_ms >= sched
    assert int(fields["s"]) == sched
    (again,) = await queue.read(shard, CONSUMER, 10)
    assert await claim(queue, shard, again) == Claim(
        Verdict.FIRE, URL, 2, due_ms=created.due_ms
    )


async def test_complete_fail_dead_letters(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """fail: a failed finished record and a dead letter; entry acked."""
    created, entry, _ = await firing(queue, shard)

    code = await complete(queue, shard, entry, 1, Outcome.FAIL, "HTTP 410")

    assert code is Code.DONE
    assert pending(raw, shard) == 0
    got = await queue.get(created.timer_id)
    assert got is not None
    assert (got.state, got.attempts, got.result) == (
        TimerState.FAILED,
        1,
        "HTTP 410",
    )
    ((_, letter),) = stream(raw, shard.dead)
    assert letter["i"] == created.timer_id
    assert (letter["u"], letter["a"], letter["e"]) == (
        URL.encode(),
        b"1",
        b"HTTP 410",
    )


async def test_complete_defer_does_not_count_the_attempt(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """defer: back on the wheel without counting the attempt."""
    created, entry, _ = await firing(queue, shard)

    code = await complete(queue, shard, entry, 1, Outcome.DEFER, "", 0)

    assert code is Code.DONE
    rec = record(raw, shard, created.timer_id)
    assert (rec["s"], rec["a"]) == ("p", "0")
    assert "r" not in rec
    (again,) = await deliver(queue, shard)
    assert (await claim(queue, shard, again)).attempt == 1


@pytest.mark.parametrize("case", ["other consumer", "old attempt"])
async def test_stale_completion_changes_nothing(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis, case: str
) -> None:
    """A completion not of the current claim is STALE and changes nothing."""
    created, entry, _ = await firing(queue, shard)
    if case == "old attempt":
        retry = await complete(queue, shard, entry, 1, Outcome.RETRY, "503")
        assert retry is Code.DONE
        (entry,) = await deliver(queue, shard)
        assert (await claim(queue, shard, entry)).attempt == 2
    by = "worker-b" if case == "other consumer" else CONSUMER
    before = record(raw, shard, created.timer_id)

    code = await complete(queue, shard, entry, 1, Outcome.OK, by=by)

    assert code is Code.STALE
    assert pending(raw, shard) == 1
    assert record(raw, shard, created.timer_id) == before
    assert not raw.exists(finished_key(shard, created.timer_id))


@pytest.mark.parametrize("outcome", [Outcome.OK, Outcome.RETRY, Outcome.FAIL])
async def test_replayed_completion_answers_done_once(
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    outcome: Outcome,
) -> None:
    """A completion replayed after a lost reply is DONE, applied once."""
    _, entry, _ = await firing(queue, shard)
    first = await complete(queue, shard, entry, 1, outcome, "500", 60_000)
    snapshot = dump_all(raw)

    again = await complete(queue, shard, entry, 1, outcome, "500", 60_000)

    assert first is again is Code.DONE
    assert dump_all(raw) == snapshot


# -- requeue ------------------------------------------------------------------


async def test_requeue_puts_an_early_entry_back_on_the_wheel(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """An early entry is acked and its timer fires later when due."""
    created = await create(queue, 400)
    hand_over(raw, shard, created.timer_id, created.due_ms)
    (entry,) = await queue.read(shard, CONSUMER, 10)
    assert (await claim(queue, shard, entry)).verdict is Verdict.EARLY

    assert await queue.requeue(shard, entry) is Code.DONE

    assert pending(raw, shard) == 0
    assert raw.xlen(shard.ready) == 0
    ((member, score),) = index(raw, shard).items()
    bucket = shard.bucket(Bucket(Level.MINUTE, int(member[1:])))
    assert raw.zscore(bucket, created.timer_id) == score == created.due_ms
    (again,) = await until(
        lambda: deliver(queue, shard), what="the requeued timer to move"
    )
    verdict = await claim(queue, shard, again)
    assert (verdict.verdict, verdict.attempt) == (Verdict.FIRE, 1)


async def test_requeue_of_an_entry_not_pending_still_puts_it_back(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """On a replica promoted before a read reached it, the entry is in
    the stream but not pending: the requeue still puts the timer back
    (the entry's presence, not its ack, says this call is the first)."""
    created, bucket, entry = await advanced_early(queue, shard, raw, 400)
    raw.xack(shard.ready, GROUP, entry.entry_id)

    assert await queue.requeue(shard, entry) is Code.DONE

    assert raw.xlen(shard.ready) == 0
    assert raw.zscore(bucket, created.timer_id) == created.due_ms
    assert list(index(raw, shard).values()) == [created.due_ms]


async def test_requeue_of_a_stale_entry_only_acks(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """An entry whose timer moved on is acked and nothing is scheduled."""
    created = await create(queue, 60_000)
    hand_over(raw, shard, created.timer_id, created.due_ms + 5)
    (entry,) = await queue.read(shard, CONSUMER, 10)
    before = index(raw, shard)

    assert await queue.requeue(shard, entry) is Code.STALE

    assert pending(raw, shard) == 0
    assert index(raw, shard) == before


# -- reclaim ------------------------------------------------------------------


async def idle_entries(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis, count: int
) -> list[bytes]:
    """Ids of ``count`` timers read by a dead worker, idle past the hold."""
    now = redis_ms(raw)
    bucket = minute_of(now - MINUTE_MS)
    timer_ids = put_on_wheel(
        raw, queue, shard, bucket, [now - 1000 + i for i in range(count)]
    )
    assert len(await deliver(queue, shard, consumer="dead-worker")) == count
    hold_ms = queue.hold_ms

    async def idle() -> bool:
        # Every entry, not only the oldest: a loaded machine may deliver
        # them in more than one read, some milliseconds apart.
        held = raw.xpending_range(shard.ready, GROUP, "-", "+", count)
        return len(held) == count and all(
            entry["time_since_delivered"] >= hold_ms for entry in held
        )

    await until(idle, what="the entries to idle past the hold")
    return timer_ids


@pytest.fixture
def short_hold(queue: ShardQueue) -> ShardQueue:
    """The queue with a claim hold of 200 ms."""
    return with_settings(queue, hold_ms=200)


async def test_reclaim_follows_its_cursor(
    short_hold: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Reclaim follows its cursor over more idle entries than COUNT."""
    timer_ids = await idle_entries(short_hold, shard, raw, 25)

    cursor, taken, calls = b"0-0", [], 0
    for _ in range(20):
        cursor, entries = await short_hold.reclaim(
            shard, "worker-b", cursor, 10
        )
        taken += entries
        calls += 1
        if cursor == b"0-0":
            break

    assert calls >= 3
    assert sorted(e.timer_id for e in taken) == sorted(timer_ids)
    owners = raw.xpending_range(shard.ready, GROUP, "-", "+", 100)
    assert {o["consumer"] for o in owners} == {b"worker-b"}


async def test_reclaim_acks_entries_deleted_while_pending(
    short_hold: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Entries deleted while pending are acked by reclaim on 6.2 and 7."""
    timer_ids = await idle_entries(short_hold, shard, raw, 5)
    entry_ids = [e for e, _ in raw.xrange(shard.ready)]
    raw.xdel(shard.ready, entry_ids[1], entry_ids[3])

    cursor, entries = await short_hold.reclaim(shard, "worker-b", b"0-0", 10)

    assert cursor == b"0-0"
    assert [e.timer_id for e in entries] == [timer_ids[i] for i in (0, 2, 4)]
    assert pending(raw, shard) == 3


# -- leases and heartbeats --------------------------------------------------


async def test_lease_is_taken_renewed_and_released_by_its_owner_only(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Another token can neither take, renew nor release a held lease."""
    assert await queue.acquire(shard, TOKEN, 1_000)
    assert not await queue.acquire(shard, OTHER, 60_000)
    assert raw.pttl(shard.lease) <= 1_000

    assert await queue.acquire(shard, TOKEN, 60_000)
    assert raw.pttl(shard.lease) > 50_000
    assert not await queue.release(shard, OTHER)
    assert await queue.lease_owner(shard) == TOKEN

    assert await queue.release(shard, TOKEN)
    assert not raw.exists(shard.lease)
    assert not await queue.release(shard, TOKEN)
    assert await queue.acquire(shard, OTHER, 60_000)
    assert await queue.lease_owner(shard) == OTHER


async def test_expired_lease_can_be_taken(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """When the owner stops renewing, another ticker takes the lease."""
    assert await queue.acquire(shard, TOKEN, 100)

    async def taken() -> bool:
        return await queue.acquire(shard, OTHER, 60_000)

    await until(taken, what="the lease to expire")
    assert await queue.lease_owner(shard) == OTHER
    assert not await queue.release(shard, TOKEN)


async def test_beat_lists_fresh_members_and_drops_stale_ones(
    registry: Registry, raw: sync_redis.Redis
) -> None:
    """A beat lists the fresh members and drops the stale ones."""
    key = registry.keys.heartbeats("ticker")
    now = redis_ms(raw)
    raw.zadd(key, {"old": now - 20_000, "fresh": now - 1_000})

    live = await registry.beat("ticker", "me", 10_000)

    assert sorted(live) == ["fresh", "me"]
    assert sorted(raw.zrange(key, 0, -1)) == [b"fresh", b"me"]
    assert sorted(await registry.beat("ticker", "you", 10_000)) == [
        "fresh",
        "me",
        "you",
    ]
    assert keys_left(raw) == {key}


# -- at, own requests, attempt history --------------------------------------

REQUEST = pack(
    WebhookRequest("PUT", (("Authorization", "Bearer x"),), "hello\n")
)


async def create_at(
    queue: ShardQueue, at_ms: int, request: bytes = b""
) -> Created:
    """Create a timer on :data:`SHARD` due at ``at_ms``."""
    timer_id = queue.ids.new(at_ms, SHARDS, SHARD)
    created = await queue.create(
        URL, 0, timer_id=timer_id, at_ms=at_ms, request=request
    )
    assert created.code is Code.DONE
    return created


async def test_create_at_is_due_then_and_never_before_now(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """An instant ahead is the due time; one past is due at Redis' now."""
    now = redis_ms(raw)
    ahead = await create_at(queue, now + 90_123)
    past = await create_at(queue, now - HOUR_MS)

    assert ahead.due_ms == now + 90_123
    assert past.due_ms == past.now_ms
    assert int(raw.hget(shard.timer(past.timer_id), "d")) == past.now_ms
    assert raw.zscore(shard.bucket(minute_of(past.now_ms)), past.timer_id)


async def test_own_request_is_kept_and_a_plain_timer_stores_no_more(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A request is one more field, packed; a plain record is u, d, s."""
    now = redis_ms(raw)
    own = await create_at(queue, now + 60_000, REQUEST)
    plain = await create_at(queue, now + 60_000)

    fields = raw.hgetall(shard.timer(own.timer_id))
    chunks = int(fields[b"q"])
    assert b"".join(fields[b"q%d" % n] for n in range(1, chunks + 1)) == (
        REQUEST
    )
    # Short fields keep the record a listpack (a long one would make it a
    # hash table, about three times the size).
    assert max(len(value) for value in fields.values()) <= 64
    assert raw.object("encoding", shard.timer(own.timer_id)) in (
        b"listpack",
        b"ziplist",
    )
    assert set(record(raw, shard, plain.timer_id)) == {"u", "d", "s"}
    got = await queue.get(own.timer_id)
    assert got is not None
    assert got.request == REQUEST
    assert unpack(got.request).method == "PUT"


async def test_replayed_create_with_request_and_at_exists_once(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A create with ``at`` and a request sent twice answers EXISTS."""
    now = redis_ms(raw)
    first = await create_at(queue, now + 60_000, REQUEST)
    before = dump_all(raw)

    again = await queue.create(
        URL, 0, timer_id=first.timer_id, at_ms=now + 60_000, request=REQUEST
    )

    assert (again.code, again.due_ms) == (Code.EXISTS, first.due_ms)
    assert dump_all(raw) == before


async def test_claim_hands_over_the_request(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """The claim gives the worker the timer's request, again on replay."""
    created = await create_at(queue, redis_ms(raw) - 1, REQUEST)
    (entry,) = await deliver(queue, shard)

    first = await claim(queue, shard, entry)
    again = await claim(queue, shard, entry)

    assert first.verdict is again.verdict is Verdict.FIRE
    assert first.request == again.request == REQUEST
    plain = await create(queue, 0)
    assert plain.timer_id != created.timer_id
    (plain_entry,) = await deliver(queue, shard)
    assert (await claim(queue, shard, plain_entry)).request == b""


async def attempt(
    queue: ShardQueue,
    shard: ShardKeys,
    outcome: Outcome,
    result: str,
    took_ms: int,
) -> Code:
    """Deliver and claim the shard's due timer, then complete it."""
    (entry,) = await until(
        lambda: deliver(queue, shard), what="the timer to come due"
    )
    verdict = await claim(queue, shard, entry)
    assert verdict.verdict is Verdict.FIRE
    done = Attempt(entry, verdict.attempt, outcome, result, 0, took_ms)
    completed = await queue.complete(shard, CONSUMER, done, deadline_s=2.0)
    return completed.code


async def test_history_keeps_the_last_five_attempts_oldest_first(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Seven attempts: the finished record shows the last five, in order,
    each sent at its completion less its duration."""
    many = with_settings(queue, max_attempts=10)
    created = await create_at(many, redis_ms(raw) - 1, REQUEST)
    assert not raw.hexists(shard.timer(created.timer_id), "h1")
    for n in range(6):
        code = await attempt(many, shard, Outcome.RETRY, f"{500 + n}", n)
        assert code is Code.DONE
    pending_view = await many.get(created.timer_id)
    assert pending_view is not None
    assert raw.object("encoding", shard.timer(created.timer_id)) in (
        b"listpack",
        b"ziplist",
    )
    assert [a.result for a in pending_view.history] == [
        "501", "502", "503", "504", "505",
    ]  # fmt: skip
    assert await attempt(many, shard, Outcome.OK, "200", 42) is Code.DONE

    got = await many.get(created.timer_id)
    assert got is not None
    assert got.state is TimerState.FIRED
    assert [(a.result, a.duration_ms) for a in got.history] == [
        ("502", 2), ("503", 3), ("504", 4), ("505", 5), ("200", 42),
    ]  # fmt: skip
    assert got.finished_ms is not None
    assert got.history[-1].sent_ms == got.finished_ms - 42
    assert unpack(got.request).body == "hello\n"
    hash_key = finished_key(shard, created.timer_id)
    assert raw.hget(hash_key, created.timer_id).startswith(b"f7:42,")


async def test_a_plain_fired_record_is_one_field(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Fired at the first attempt without a request: one packed field,
    the duration in its head; nothing beside it."""
    created = await create(queue, 0)
    assert await attempt(queue, shard, Outcome.OK, "204", 7) is Code.DONE

    fields = raw.hgetall(finished_key(shard, created.timer_id))
    assert list(fields) == [created.timer_id]
    assert fields[created.timer_id].startswith(b"f1:7,")
    got = await queue.get(created.timer_id)
    assert got is not None
    assert [(a.result, a.duration_ms) for a in got.history] == [("204", 7)]


async def test_replayed_completion_does_not_repeat_history(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A retry completion sent twice adds one history line."""
    await create(queue, 0)
    (entry,) = await deliver(queue, shard)
    verdict = await claim(queue, shard, entry)
    done = Attempt(entry, verdict.attempt, Outcome.RETRY, "503", 60_000, 9)
    assert (await queue.complete(shard, CONSUMER, done, 2.0)).code is Code.DONE
    before = dump_all(raw)

    assert (await queue.complete(shard, CONSUMER, done, 2.0)).code is Code.DONE

    assert dump_all(raw) == before


async def test_cancel_keeps_request_and_history(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A cancelled timer keeps its request and attempts for GET."""
    created = await create_at(queue, redis_ms(raw) - 1, REQUEST)
    (entry,) = await deliver(queue, shard)
    verdict = await claim(queue, shard, entry)
    done = Attempt(entry, verdict.attempt, Outcome.RETRY, "boom", 60_000, 3)
    assert (await queue.complete(shard, CONSUMER, done, 2.0)).code is Code.DONE

    assert (await queue.cancel(created.timer_id))[0] is Code.DONE

    got = await queue.get(created.timer_id)
    assert got is not None
    assert got.state is TimerState.CANCELLED
    assert got.request == REQUEST
    assert [(a.result, a.duration_ms) for a in got.history] == [("boom", 3)]


async def test_retry_brings_back_request_and_history_and_replays(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A failed timer retried is pending with its request and every
    attempt; the retry sent twice answers DONE and changes nothing."""
    created = await create_at(queue, redis_ms(raw) - 1, REQUEST)
    assert await attempt(queue, shard, Outcome.FAIL, "410", 5) is Code.DONE
    (letter,) = await Inspector(queue).dead_letters(shard, 10)

    first = await queue.retry(created.timer_id, letter)
    before = dump_all(raw)
    again = await queue.retry(created.timer_id, letter)

    assert first == again == (Code.DONE, TimerState.PENDING)
    assert dump_all(raw) == before
    got = await queue.get(created.timer_id)
    assert got is not None
    assert got.state is TimerState.PENDING
    assert got.request == REQUEST
    assert [(a.result, a.duration_ms) for a in got.history] == [("410", 5)]


async def test_a_retry_replayed_after_the_timer_failed_again_is_refused(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A retry whose reply was lost, sent again after the retried timer
    already failed again (under a new dead letter), changes nothing: its
    dead letter is gone."""
    created = await create_at(queue, redis_ms(raw) - 1)
    assert await attempt(queue, shard, Outcome.FAIL, "410", 5) is Code.DONE
    (first_letter,) = await Inspector(queue).dead_letters(shard, 10)
    assert (await queue.retry(created.timer_id, first_letter))[0] is Code.DONE
    assert await attempt(queue, shard, Outcome.FAIL, "410", 5) is Code.DONE
    before = dump_all(raw)

    again = await queue.retry(created.timer_id, first_letter)

    assert again == (Code.CONFLICT, TimerState.FAILED)
    assert dump_all(raw) == before


async def test_get_many_reads_every_kind_in_order(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """One call reads pending, finished and unknown timers, in order."""
    pending_id = await in_state(queue, shard, TimerState.PENDING)
    fired_id = await in_state(queue, shard, TimerState.FIRED)
    unknown = await in_state(queue, shard, None)

    got = await queue.get_many(shard, [fired_id, unknown, pending_id])

    assert [r.state if r else None for r in got] == [
        TimerState.FIRED,
        None,
        TimerState.PENDING,
    ]
    assert got[2] is not None
    assert got[2].url == URL


async def test_finished_hours_list_each_hour_until_it_expires(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Finishing lists the hash's hour (by hour and by expiry); an hour
    whose hash expired is forgotten by a later finish."""
    old = await in_state(queue, shard, TimerState.CANCELLED)
    old_hour = ids.finished_hour(old)
    assert raw.zscore(shard.finished_hours, old_hour) == old_hour
    deadline = raw.zscore(shard.finished_expiry, old_hour)
    ttl = raw.pttl(finished_key(shard, old))
    assert deadline is not None
    assert abs(deadline - (redis_ms(raw) + ttl)) < 1000
    # As if the retention had passed: the hash is gone, its deadline too.
    raw.delete(finished_key(shard, old))
    raw.zadd(shard.finished_expiry, {str(old_hour): redis_ms(raw) - 1})

    later = await in_state(
        queue, shard, TimerState.CANCELLED, id_ms=redis_ms(raw) + DAY_MS
    )

    assert raw.zrange(shard.finished_hours, 0, -1) == [
        str(ids.finished_hour(later)).encode()
    ]
    assert raw.zcard(shard.finished_expiry) == 1


# -- reschedule -------------------------------------------------------------


async def test_reschedule_moves_a_minute_timer(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A timer in a minute bucket moves: one copy, at the new due."""
    created = await create(queue, 120_000)

    # Within HOUR_LEAD_MS of now a due is always in a minute bucket,
    # whatever the time of day (further, it may fall in an hour bucket).
    moved = await queue.reschedule(created.timer_id, delay_ms=240_000)

    assert moved.code is Code.DONE
    assert moved.due_ms == moved.now_ms + 240_000
    assert not raw.zscore(
        shard.bucket(minute_of(created.due_ms)), created.timer_id
    )
    assert (
        raw.zscore(shard.bucket(minute_of(moved.due_ms)), created.timer_id)
        == moved.due_ms
    )
    assert not raw.exists(shard.tombstones)
    got = await queue.get(created.timer_id)
    assert got is not None
    assert (got.state, got.due_ms) == (TimerState.PENDING, moved.due_ms)


async def test_reschedule_to_a_past_instant_goes_in_the_bucket_of_now(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """An ``at`` ten minutes ago is due now, and its copy sits in the
    minute bucket of now, as a create's would: not in a bucket named
    after a minute long gone (the listing reads a bucket's minute as its
    timers' due minute)."""
    created = await create(queue, 120_000)
    past_ms = redis_ms(raw) - 600_000

    moved = await queue.reschedule(created.timer_id, at_ms=past_ms)

    assert moved.code is Code.DONE
    assert moved.due_ms == moved.now_ms
    assert not raw.exists(shard.minute(past_ms // MINUTE_MS))
    placed = [
        raw.zscore(
            shard.minute(moved.due_ms // MINUTE_MS + step), created.timer_id
        )
        for step in (-1, 0, 1)
    ]
    assert moved.due_ms in placed


async def test_reschedule_buries_a_coarse_copy_which_the_cascade_drops(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A day bucket's copy is named a tombstone; cascading the day drops
    it, so the old due never fires and the new one does."""
    now = redis_ms(raw)
    day = Bucket(Level.DAY, now // DAY_MS + 3)
    old = await create_at(queue, day.start_ms + 7 * HOUR_MS)

    moved = await queue.reschedule(old.timer_id, at_ms=now + 1)

    assert moved.code is Code.DONE
    assert raw.zrange(shard.tombstones, 0, -1) == [
        encode_member(old.timer_id, old.due_ms)
    ]
    await take_lease(queue, shard)
    assert await cascade_all(queue, shard, day) == [(1, 0)]
    assert not raw.exists(shard.tombstones)
    assert [
        k for k in keys_left(raw) if k.startswith(shard.tag.encode() + b":h")
    ] == []
    (entry,) = await deliver(queue, shard)
    assert entry.sched_ms == moved.due_ms
    assert (await claim(queue, shard, entry)).verdict is Verdict.FIRE


async def test_rescheduled_timer_old_ready_entry_is_skipped(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Moved after it reached the ready stream: that entry is dropped."""
    created = await create(queue, 0)
    (entry,) = await deliver(queue, shard)

    moved = await queue.reschedule(created.timer_id, delay_ms=300_000)

    assert moved.code is Code.DONE
    assert (await claim(queue, shard, entry)).verdict is Verdict.SKIP
    assert not raw.exists(shard.tombstones)


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (TimerState.FIRING, Code.CONFLICT),
        (TimerState.FIRED, Code.CONFLICT),
        (TimerState.FAILED, Code.CONFLICT),
        (TimerState.CANCELLED, Code.CONFLICT),
        (None, Code.NOT_FOUND),
    ],
)
async def test_reschedule_refuses_what_is_not_pending(
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    state: TimerState | None,
    code: Code,
) -> None:
    """Firing, finished or unknown timers do not move; nothing changes."""
    timer_id = await in_state(queue, shard, state)
    before = dump_all(raw)

    moved = await queue.reschedule(timer_id, delay_ms=60_000)

    assert moved.code is code
    assert moved.state is state
    assert dump_all(raw) == before


async def test_replayed_reschedule_answers_done_and_moves_once(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """The script sent twice with one token: DONE both times, one move."""
    created = await create(queue, 120_000)
    keys, args = reschedule_call(queue, shard, created, 900_000, b"tok")
    first = await queue.connection.script(SCRIPTS["reschedule"], keys, args)
    before = dump_all(raw)

    again = await queue.connection.script(SCRIPTS["reschedule"], keys, args)

    assert first[1:] == again[1:]
    assert first[1] == Code.DONE.value.encode()
    assert dump_all(raw) == before


async def test_reschedule_from_a_stale_read_changes_nothing(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A schedule other than the one read: STALE, nothing moves."""
    created = await create(queue, 120_000)
    keys, args = reschedule_call(queue, shard, created, 900_000, b"tok")
    args[1] = created.due_ms + 1
    before = dump_all(raw)

    reply = await queue.connection.script(SCRIPTS["reschedule"], keys, args)

    assert reply[1] == Code.STALE.value.encode()
    assert int(reply[2]) == created.due_ms
    assert dump_all(raw) == before


async def test_reschedule_back_revives_the_buried_copy(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Moved away and back to the same instant: the buried copy serves
    again, no second copy is made."""
    now = redis_ms(raw)
    day = Bucket(Level.DAY, now // DAY_MS + 3)
    at = day.start_ms + 5 * HOUR_MS
    created = await create_at(queue, at)

    assert (await queue.reschedule(created.timer_id, at_ms=at + 1)).code
    moved = await queue.reschedule(created.timer_id, at_ms=at)

    assert moved.due_ms == at
    assert raw.lrange(shard.bucket(day), 0, -1) == [
        encode_member(created.timer_id, at),
        encode_member(created.timer_id, at + 1),
    ]
    assert raw.zrange(shard.tombstones, 0, -1) == [
        encode_member(created.timer_id, at + 1)
    ]


async def test_reschedule_back_after_a_copy_left_the_stream(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A copy in the ready stream that is not yet due (an advance on a
    node whose clock ran ahead) is no buried copy: moved away, its stale
    entry dropped by the claim, and moved back, the timer is put on the
    wheel again, not left with no copy at all."""
    created, minute, entry = await advanced_early(queue, shard, raw, 60_000)

    await queue.reschedule(created.timer_id, at_ms=created.due_ms + 1)
    assert (await claim(queue, shard, entry)).verdict is Verdict.SKIP
    moved = await queue.reschedule(created.timer_id, at_ms=created.due_ms)

    assert moved.due_ms == created.due_ms
    assert raw.zscore(minute, created.timer_id) == created.due_ms
    assert not raw.exists(shard.tombstones)


async def test_cascade_never_replaces_the_current_copy(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A stale copy cascading into the minute bucket that holds the
    timer's current copy leaves the current one as it is."""
    now = redis_ms(raw)
    hour = Bucket(Level.HOUR, now // HOUR_MS + 2)
    (timer_id,) = put_on_wheel(raw, queue, shard, hour, [hour.start_ms + 5])
    minute = shard.bucket(minute_of(hour.start_ms))
    raw.zadd(minute, {timer_id: hour.start_ms + 9})
    raw.hset(shard.timer(timer_id), "d", hour.start_ms + 9)
    await take_lease(queue, shard)

    await cascade_all(queue, shard, hour)

    assert raw.zscore(minute, timer_id) == hour.start_ms + 9


async def test_replayed_cascade_with_tombstones_moves_each_once(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A cascade sent again after it emptied the bucket changes nothing."""
    now = redis_ms(raw)
    day = Bucket(Level.DAY, now // DAY_MS + 3)
    kept = await create_at(queue, day.start_ms + HOUR_MS)
    moved = await create_at(queue, day.start_ms + 2 * HOUR_MS)
    await queue.reschedule(moved.timer_id, at_ms=day.start_ms + 3 * HOUR_MS)
    await take_lease(queue, shard)
    assert await cascade_all(queue, shard, day) == [(3, 0)]
    before = dump_all(raw)

    again = await queue.cascade(shard, TOKEN, day, 1000)

    assert (again.code, again.moved, again.left) == (Code.DONE, 0, 0)
    assert dump_all(raw) == before
    hours = raw.lrange(
        shard.bucket(Bucket(Level.HOUR, kept.due_ms // HOUR_MS)), 0, -1
    )
    assert hours == [encode_member(kept.timer_id, kept.due_ms)]


def reschedule_call(
    queue: ShardQueue,
    shard: ShardKeys,
    created: Created,
    delay_ms: int,
    token: bytes,
) -> tuple[list[bytes], list[object]]:
    """The keys and arguments ShardQueue.reschedule sends."""
    minute = created.due_ms // MINUTE_MS
    due = queue.clocks.now_ms(SHARD) + delay_ms
    return (
        [
            shard.timer(created.timer_id),
            finished_key(shard, created.timer_id),
            shard.index,
            shard.minute(minute - 1),
            shard.minute(minute),
            shard.minute(minute + 1),
            shard.tombstones,
            shard.minute(due // MINUTE_MS),
            shard.minute(due // MINUTE_MS),
        ],
        [
            created.timer_id,
            created.due_ms,
            delay_ms,
            "",
            token,
            due // MINUTE_MS,
            "m",
            0,
        ],
    )


# -- the listing's walk -----------------------------------------------------


async def test_walk_reads_only_and_answers_the_same_twice(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """walk.lua sent twice reads the same and writes nothing."""
    for delay in (0, 90_000, 3 * DAY_MS):
        await create(queue, delay)
    await deliver(queue, shard)
    index_members = raw.zrange(shard.index, 0, -1)
    keys = [shard.index, shard.ready]
    args: list[object] = [0, "-inf", 64, 100, "-"]
    for member in index_members:
        bucket = parse_member(member.decode())
        keys.append(shard.bucket(bucket))
        args += ["m", "", ""] if bucket.level is Level.MINUTE else ["c", 0, ""]
    before = dump_all(raw)

    first = await queue.connection.script(SCRIPTS["walk"], keys, args)
    again = await queue.connection.script(SCRIPTS["walk"], keys, args)

    assert first[1:] == again[1:]
    assert dump_all(raw) == before
    assert len(first[3]) == 3  # the due timer, in the ready stream
    assert sum(len(read) - 2 for read in first[4]) == 3  # id, score + member


async def test_walk_stops_when_a_remembered_head_changed(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A coarse bucket whose head is not the remembered one: STALE."""
    now = redis_ms(raw)
    day = Bucket(Level.DAY, now // DAY_MS + 3)
    await create_at(queue, day.start_ms + 7)
    keys = [shard.index, shard.ready, shard.bucket(day)]
    args: list[object] = [1, b"x" * 22, "-inf", 64, 10, ""]

    reply = await queue.connection.script(SCRIPTS["walk"], keys, args)

    assert reply[1] == Code.STALE.value.encode()
