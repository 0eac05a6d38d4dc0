"""Every Lua script is safe to replay: sent twice with the same arguments
(a retry after a lost reply), the second call changes nothing and answers
as the first did, on Redis 6.2 and 7.

Each case drives one script through the code that calls it in
production, with the connection's ``script`` wrapped so that every call
runs twice in a row; the data is read in full after each run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis as sync_redis

from tests.test_schedule_scripts import (
    definition,
    new_schedule,
    occurrence_firing,
    read,
    roll,
    whole_seconds,
)
from tests.test_scripts import (
    CONSUMER,
    LEASE_MS,
    SHARD,
    SHARDS,
    TOKEN,
    complete,
    create,
    create_together,
    deliver,
    firing,
    hand_over,
    put_on_wheel,
    redis_ms,
    take_lease,
)
from wheel.core.buckets import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    Bucket,
    Level,
    minute_of,
)
from wheel.core.states import Code, Outcome, TimerState
from wheel.settings import Settings
from wheel.storage import legacy
from wheel.storage.inspect import Inspector
from wheel.storage.keys import GROUP, ShardKeys
from wheel.storage.listing import Listing, Query
from wheel.storage.registry import Registry
from wheel.storage.replies import Record
from wheel.storage.schedules import Edit, ScheduleStore
from wheel.storage.scripts import NAMES, Script
from wheel.storage.shards import ShardQueue

Snapshot = dict[bytes, object]


@pytest.fixture
def settings(any_redis_url: str) -> Settings:
    """Four shards on each Redis version in turn."""
    return Settings(redis_url=any_redis_url, shards=SHARDS)


@pytest.fixture
def shard(queue: ShardQueue) -> ShardKeys:
    """The shard of the timers the helpers create."""
    return queue.keys.shard(SHARD)


def snapshot(raw: sync_redis.Redis) -> Snapshot:
    """Every key's content, and whether it expires."""
    data: Snapshot = {}
    for key in sorted(raw.scan_iter(count=1000)):
        kind = raw.type(key).decode()
        value: object
        if kind == "string":
            value = raw.get(key)
        elif kind == "hash":
            value = sorted(raw.hgetall(key).items())
        elif kind == "list":
            value = raw.lrange(key, 0, -1)
        elif kind == "zset":
            value = raw.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            groups = [
                (
                    group["name"],
                    group["pending"],
                    group["last-delivered-id"],
                    sorted(
                        (c["name"], c["pending"])
                        for c in raw.xinfo_consumers(key, group["name"])
                    ),
                )
                for group in raw.xinfo_groups(key)
            ]
            value = (raw.xrange(key), groups)
        else:
            value = kind
        data[key] = (kind, value, raw.pttl(key) > 0)
    return data


class Replayer:
    """Wraps ``connection.script``: each call runs twice, and the data
    after each run and both replies are kept."""

    def __init__(self, queue: ShardQueue, raw: sync_redis.Redis) -> None:
        self.raw = raw
        self.runs: list[tuple[str, Any, Any, Snapshot, Snapshot]] = []
        connection = queue.connection
        original = connection.script

        async def twice(
            script: Script, keys: Any, args: Any, **kw: Any
        ) -> Any:
            first = await original(script, keys, args, **kw)
            after_first = snapshot(raw)
            second = await original(script, keys, args, **kw)
            self.runs.append(
                (script.name, first, second, after_first, snapshot(raw))
            )
            return first

        self._restore = lambda: setattr(connection, "script", original)
        connection.script = twice  # type: ignore[method-assign]

    def close(self) -> None:
        self._restore()


def same(first: Any, second: Any) -> bool:
    """The same answer, Redis' clock (the first element) aside."""
    return bool(first[1:] == second[1:])


def created_again(first: Any, second: Any) -> bool:
    """A replayed create finds its own records: each timer exists, with
    the same id and due (a call creates several, three values each)."""
    done, exists = Code.DONE.value.encode(), Code.EXISTS.value.encode()
    mismatch = Code.MISMATCH.value.encode()
    return (
        len(first) == len(second)
        and done in first[1::3]
        and all(
            code in (done, exists, mismatch) and again in (exists, mismatch)
            for code, again in zip(first[1::3], second[1::3], strict=True)
        )
        and first[2::3] == second[2::3]
        and first[3::3] == second[3::3]
    )


def nothing_more(first: Any, second: Any) -> bool:
    """A replayed move or release finds nothing left to do."""
    return int(second[2] if len(second) > 2 else second[1]) == 0


# Per case: the script it replays, how it is driven, how a replay answers.
Case = Callable[[ShardQueue, ShardKeys, sync_redis.Redis], Awaitable[None]]
CASES: dict[str, tuple[str, Case, Callable[[Any, Any], bool], bool]] = {}


def case(
    name: str,
    answer: Callable[[Any, Any], bool] = same,
    tag: str = "",
    clock: bool = False,
) -> Callable[[Case], Case]:
    """Register a case; ``clock``: it stores Redis' time (a heartbeat),
    which a replay moves on, so scores are compared by presence only."""

    def register(drive: Case) -> Case:
        key = f"{name}-{tag}" if tag else name
        CASES[key] = (name, drive, answer, clock)
        return drive

    return register


def without_scores(data: Snapshot) -> Snapshot:
    """A snapshot whose sorted sets keep their members, not scores."""
    return {
        key: (
            (kind, [member for member, _ in value], expires)
            if kind == "zset"
            else (kind, value, expires)
        )
        for key, (kind, value, expires) in data.items()  # type: ignore[misc]
    }


@case("create", created_again)
async def _create(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    await create(queue, 60_000)


@case("get")
async def _get(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    created = await create(queue, 60_000)
    await queue.get(created.timer_id)


@case("cancel")
async def _cancel(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    created = await create(queue, 60_000)
    await queue.cancel(created.timer_id)


@case("advance", nothing_more)
async def _advance(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    now = redis_ms(raw)
    put_on_wheel(raw, queue, shard, minute_of(now - MINUTE_MS), [now - 500])
    await take_lease(queue, shard)
    minute = (now - MINUTE_MS) // MINUTE_MS
    await queue.advance(shard, TOKEN, [minute])


@case("cascade", nothing_more)
async def _cascade(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    now = redis_ms(raw)
    bucket = Bucket(Level.HOUR, now // HOUR_MS)
    put_on_wheel(raw, queue, shard, bucket, [bucket.start_ms + 1000])
    await take_lease(queue, shard)
    await queue.cascade(shard, TOKEN, bucket, 100)


@case("claim")
async def _claim(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    await create(queue, 0)
    (entry,) = await deliver(queue, shard)
    await queue.claim(shard, CONSUMER, [entry])


def completing(outcome: Outcome) -> Case:
    """A case that completes a first attempt with ``outcome``."""

    async def drive(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
        _, entry, verdict = await firing(queue, shard)
        await complete(
            queue, shard, entry, verdict.attempt, outcome, delay_ms=60_000
        )

    return drive


for _outcome in Outcome:
    case("complete", tag=_outcome.value)(completing(_outcome))


@case("complete", tag="together")
async def _complete_together(
    queue: ShardQueue, shard: ShardKeys, raw: Any
) -> None:
    # Four attempts of one shard, each with its own outcome, in one call.
    for _ in range(4):
        await create(queue, 0)
    entries = await deliver(queue, shard)
    claims = await queue.claim(shard, CONSUMER, entries)
    codes = await asyncio.gather(
        *(
            complete(
                queue,
                shard,
                entry,
                verdict.attempt,
                outcome,
                delay_ms=60_000,
            )
            for entry, verdict, outcome in zip(
                entries, claims, Outcome, strict=True
            )
        )
    )
    assert codes == [Code.DONE] * 4


@case("create", created_again, tag="together")
async def _create_together(
    queue: ShardQueue, shard: ShardKeys, raw: Any
) -> None:
    # Six creates in one call, keyed and plain, at an instant, with a
    # request, in a minute and in an hour bucket.
    created = await create_together(queue)
    assert [c.code for c in created].count(Code.DONE) == 4


@case("requeue")
async def _requeue(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    # Due in days: put back, it goes into a day list, where a second
    # push would be a second copy (a sorted set would hide it).
    created = await create(queue, 3 * DAY_MS)
    # An advance on a node whose clock ran ahead handed it over early.
    hand_over(raw, shard, created.timer_id, created.due_ms)
    (entry,) = await queue.read(shard, CONSUMER, 10)
    await queue.requeue(shard, entry)


@case("retry")
async def _retry(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    created, entry, verdict = await firing(queue, shard)
    await complete(queue, shard, entry, verdict.attempt, Outcome.FAIL, "500")
    letter = await Inspector(queue).find_dead_letter(created.timer_id)
    assert letter is not None
    await queue.retry(created.timer_id, letter)


@case("acquire")
async def _acquire(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    await queue.acquire(shard, TOKEN, LEASE_MS)


@case("release", nothing_more)
async def _release(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    raw.set(shard.lease, TOKEN, px=LEASE_MS)
    await queue.release(shard, TOKEN)


@case("beat", clock=True)
async def _beat(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    await Registry(queue.connection, queue.settings).beat(
        "worker", CONSUMER, 15_000
    )


@case("drop_consumer")
async def _drop(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    await queue.ensure_group(shard)
    raw.xgroup_createconsumer(shard.ready, GROUP, "gone-worker")
    await queue.drop_consumer(shard, "gone-worker")


@case("reschedule")
async def _reschedule(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    created = await create(queue, 60_000)
    await queue.reschedule(created.timer_id, delay_ms=900_000)


@case("walk")
async def _walk(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    for delay_ms in (60_000, 3 * HOUR_MS, 3 * DAY_MS):
        await create(queue, delay_ms)
    await Listing(queue).page(Query(TimerState.PENDING, 100), None)


@case("create_schedule", created_again)
async def _create_schedule(
    queue: ShardQueue, shard: ShardKeys, raw: Any
) -> None:
    await new_schedule(ScheduleStore(queue), redis_ms(raw) + 60_000)


@case("patch_schedule", tag="pause")
async def _pause(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    store = ScheduleStore(queue)
    schedule_id = await new_schedule(store, redis_ms(raw) + 60_000)
    await store.edit(schedule_id, lambda r: Edit(True, None))


@case("patch_schedule", tag="edit")
async def _edit(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    store = ScheduleStore(queue)
    schedule_id = await new_schedule(store, redis_ms(raw) + 60_000)
    await store.edit(
        schedule_id,
        lambda r: Edit(
            False,
            (r.next_ms or 0) + 2000,
            definition(url="https://example.com/" + "z" * 100),
        ),
    )


@case("delete_schedule")
async def _delete(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    store = ScheduleStore(queue)
    await store.delete(await new_schedule(store, redis_ms(raw) + 60_000))


@case("roll", tag="due")
async def _roll(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    store = ScheduleStore(queue)
    schedule_id = await new_schedule(store, whole_seconds(raw, 0))
    await roll(store, shard, await read(store, schedule_id), redis_ms(raw))


@case("roll", tag="all-missed")
async def _roll_all(queue: ShardQueue, shard: ShardKeys, raw: Any) -> None:
    store = ScheduleStore(queue)
    made = definition(misfire="all")
    schedule_id = await new_schedule(store, whole_seconds(raw, 20), made)
    await roll(store, shard, await read(store, schedule_id), redis_ms(raw))


@case("read_schedules")
async def _read_schedules(
    queue: ShardQueue, shard: ShardKeys, raw: Any
) -> None:
    store = ScheduleStore(queue)
    schedule_id = await new_schedule(store, redis_ms(raw) + 60_000)
    await store.get_many(shard, [schedule_id, b"\x03" * 16])


@case("complete", tag="occurrence")
async def _complete_occurrence(
    queue: ShardQueue, shard: ShardKeys, raw: Any
) -> None:
    store = ScheduleStore(queue)
    _, attempt = await occurrence_firing(store, shard, raw)
    await queue.complete(shard, CONSUMER, attempt, deadline_s=2.0)


@case("import_finished")
async def _import_finished(
    queue: ShardQueue, shard: ShardKeys, raw: Any
) -> None:
    now = redis_ms(raw)
    record = Record(
        TimerState.FIRED, now - 5_000, 1, now, finished_ms=now, result="200"
    )
    timer_id = queue.ids.new(now - 5_000, SHARDS, SHARD)
    await legacy.import_finished(queue, timer_id, record, HOUR_MS)


def test_every_script_has_a_replay_case() -> None:
    """A new script cannot be added without its replay case."""
    assert {name for name, _, _, _ in CASES.values()} == set(NAMES)


@pytest.mark.parametrize("case_id", sorted(CASES))
async def test_a_replay_changes_nothing_and_answers_as_the_first(
    case_id: str,
    queue: ShardQueue,
    shard: ShardKeys,
    raw: sync_redis.Redis,
) -> None:
    """Run twice with the same arguments, a script's second run leaves
    the data as the first left it and answers as the first did."""
    name, drive, answer, clock = CASES[case_id]
    replayer = Replayer(queue, raw)
    try:
        await drive(queue, shard, raw)
    finally:
        replayer.close()
    runs = [run for run in replayer.runs if run[0] == name]
    assert runs, f"the case never ran {name}"
    for _, first, second, after_first, after_second in runs:
        if clock:
            after_first = without_scores(after_first)
            after_second = without_scores(after_second)
        assert after_second == after_first
        assert answer(first, second), (first, second)
