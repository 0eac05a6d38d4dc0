"""The schedule scripts' semantics through ScheduleStore and ShardQueue,
on Redis 6.2 and 7: create, edit, delete, roll, and an occurrence's
claim and completion counting in its schedule."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis as sync_redis

from tests.test_scripts import (
    CONSUMER,
    deliver,
    dump_all,
    finished_key,
    keys_left,
    redis_ms,
    stream,
    until,
    with_settings,
)
from wheel.core import ids
from wheel.core.delays import rfc3339
from wheel.core.occurrences import occurrence_id
from wheel.core.schedules import (
    Definition,
    RollPlan,
    chunks,
    occurrence_request,
    pack_definition,
    plan_roll,
)
from wheel.core.states import Code, Outcome, TimerState, Verdict
from wheel.core.webhook_request import WebhookRequest, pack, unpack
from wheel.settings import Settings
from wheel.storage.inspect import Inspector
from wheel.storage.keys import GROUP, ShardKeys
from wheel.storage.replies import Rolled, ScheduleRecord
from wheel.storage.schedules import DELETED_MARKER_MS, Edit, ScheduleStore
from wheel.storage.shards import Attempt, ShardQueue

URL = "http://127.0.0.1:9/hook"
SHARDS = 4
SHARD = 1
EVERY_2S = "*/2 * * * * *"


@pytest.fixture
def settings(any_redis_url: str) -> Settings:
    """Four shards on each Redis version in turn."""
    return Settings(redis_url=any_redis_url, shards=SHARDS)


@pytest.fixture
def store(queue: ShardQueue) -> ScheduleStore:
    """The schedules of the test deployment."""
    return ScheduleStore(queue)


@pytest.fixture
def shard(queue: ShardQueue) -> ShardKeys:
    """The shard the helpers put schedules on."""
    return queue.keys.shard(SHARD)


def definition(
    cron: str = EVERY_2S, misfire: str = "once", **changes: object
) -> Definition:
    """A schedule's definition: every 2 s by default, to :data:`URL`."""
    made = Definition(cron, "UTC", URL, None, None, None, misfire)
    return made.edited(**changes) if changes else made


async def new_schedule(
    store: ScheduleStore, next_ms: int, made: Definition | None = None
) -> bytes:
    """A schedule on :data:`SHARD` whose next occurrence is ``next_ms``
    (in the past too: as after downtime)."""
    schedule_id = store.queue.ids.new(next_ms, SHARDS, SHARD)
    code, got, stored = await store.create(
        made or definition(), next_ms, schedule_id
    )
    assert (code, got, stored) == (Code.DONE, schedule_id, next_ms)
    return schedule_id


async def read(store: ScheduleStore, schedule_id: bytes) -> ScheduleRecord:
    """The schedule's record, which must exist."""
    got = await store.get(schedule_id)
    assert got is not None
    return got


def planned(
    got: ScheduleRecord, now_ms: int, grace_ms: int = 0
) -> tuple[RollPlan, list[bytes]]:
    """The roll a roller would make of ``got`` at ``now_ms``."""
    assert got.next_ms is not None
    plan = plan_roll(
        got.schedule_id,
        got.definition,
        got.next_ms,
        now_ms,
        SHARDS,
        grace_ms,
    )
    own = got.definition.own_request()
    requests = [
        occurrence_request(own, o.id, got.schedule_id, o.scheduled_ms)
        for o in plan.fire
    ]
    return plan, requests


async def roll(
    store: ScheduleStore,
    shard: ShardKeys,
    got: ScheduleRecord,
    now_ms: int,
) -> tuple[RollPlan, Rolled]:
    """Roll ``got`` as read, deciding at ``now_ms``."""
    plan, requests = planned(got, now_ms)
    return plan, await store.roll(shard, got, plan, requests)


def whole_seconds(raw: sync_redis.Redis, back_s: int) -> int:
    """An even whole second ``back_s`` or more before Redis' now."""
    return (redis_ms(raw) // 2000 - back_s // 2) * 2000


# -- create -----------------------------------------------------------------


async def test_create_stores_the_definition_and_one_next_occurrence(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A create writes version 1, the next occurrence and the definition
    in listpack-sized chunks; the id joins both sets; nothing else."""
    long = definition(url="https://example.com/" + "x" * 150)
    next_ms = redis_ms(raw) + 60_000
    schedule_id = await new_schedule(store, next_ms, long)

    fields = raw.hgetall(shard.schedule(schedule_id))
    parts = chunks(pack_definition(long))
    assert len(parts) > 2
    assert fields == {
        b"v": b"1",
        b"n": b"%d" % next_ms,
        b"d": b"%d" % len(parts),
        **{b"d%d" % (i + 1): part for i, part in enumerate(parts)},
    }
    assert max(len(value) for value in fields.values()) <= 60
    assert raw.object("encoding", shard.schedule(schedule_id)) in (
        b"listpack",
        b"ziplist",
    )
    assert raw.zrange(shard.schedules_next, 0, -1, withscores=True) == [
        (schedule_id, float(next_ms))
    ]
    assert raw.zrange(shard.schedules, 0, -1, withscores=True) == [
        (schedule_id, 0.0)
    ]
    assert keys_left(raw) == {
        shard.schedule(schedule_id),
        shard.schedules_next,
        shard.schedules,
    }
    got = await read(store, schedule_id)
    assert (got.definition, got.next_ms, got.paused, got.last_id) == (
        long,
        next_ms,
        False,
        None,
    )


async def test_a_replayed_create_answers_exists_and_writes_nothing(
    store: ScheduleStore, raw: sync_redis.Redis
) -> None:
    """The same id again: EXISTS with the stored next occurrence."""
    next_ms = redis_ms(raw) + 60_000
    schedule_id = await new_schedule(store, next_ms)
    before = dump_all(raw)

    again = await store.create(definition(cron="0 0 * * *"), 5, schedule_id)

    assert again == (Code.EXISTS, schedule_id, next_ms)
    assert dump_all(raw) == before


# -- roll -------------------------------------------------------------------


async def test_a_roll_hands_the_occurrence_over_and_puts_the_next_on(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """The due occurrence becomes a pending timer in the ready stream
    (id from schedule and instant, its schedule named, the default body
    as its request); the successor replaces it in the set."""
    due_ms = whole_seconds(raw, 0)
    schedule_id = await new_schedule(store, due_ms)
    got = await read(store, schedule_id)

    plan, rolled = await roll(store, shard, got, redis_ms(raw))

    occurrence = occurrence_id(schedule_id, due_ms, SHARDS)
    assert [o.id for o in plan.fire] == [occurrence]
    assert (rolled.code, rolled.created) == (Code.DONE, 1)
    timer = raw.hgetall(shard.timer(occurrence))
    request = unpack(
        b"".join(timer[b"q%d" % i] for i in range(1, int(timer[b"q"]) + 1))
    )
    assert msgspec.json.decode(request.body or "") == {
        "id": ids.to_text(occurrence),
        "schedule_id": ids.to_text(schedule_id),
        "scheduled_for": rfc3339(due_ms),
    }
    assert request.method == "POST"
    assert (timer[b"u"], timer[b"d"], timer[b"s"], timer[b"g"]) == (
        URL.encode(),
        b"%d" % due_ms,
        b"p",
        schedule_id,
    )
    assert max(len(value) for value in timer.values()) <= 60
    assert [fields for _, fields in stream(raw, shard.ready)] == [
        {"i": occurrence, "s": b"%d" % due_ms}
    ]
    (group,) = raw.xinfo_groups(shard.ready)
    assert (group["name"], group["last-delivered-id"]) == (GROUP, b"0-0")
    assert raw.get(shard.count) == b"1"
    after = await read(store, schedule_id)
    assert (after.next_ms, after.last_id, after.version) == (
        due_ms + 2000,
        occurrence,
        b"1",
    )
    assert raw.zrange(shard.schedules_next, 0, -1, withscores=True) == [
        (schedule_id, float(due_ms + 2000))
    ]


async def test_a_roll_read_before_another_answers_as_that_one(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Two rollers read the same record: the second's roll finds the
    first's marker, answers done with its count and creates nothing."""
    schedule_id = await new_schedule(store, whole_seconds(raw, 0))
    got = await read(store, schedule_id)
    now_ms = redis_ms(raw)
    _, first = await roll(store, shard, got, now_ms)
    before = dump_all(raw)

    _, second = await roll(store, shard, got, now_ms)

    assert (first.code, first.created) == (Code.DONE, 1)
    assert (second.code, second.created) == (Code.DONE, 1)
    assert dump_all(raw) == before
    assert raw.xlen(shard.ready) == 1


async def test_a_roll_of_an_older_read_is_stale(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A read older than the last roll changes nothing: stale."""
    schedule_id = await new_schedule(store, whole_seconds(raw, 6))
    old = await read(store, schedule_id)
    now_ms = old.next_ms or 0
    await roll(store, shard, old, now_ms)
    newer = await read(store, schedule_id)
    await roll(store, shard, newer, (newer.next_ms or 0) + 1)
    before = dump_all(raw)

    _, rolled = await roll(store, shard, old, now_ms)

    assert rolled.code is Code.STALE
    assert dump_all(raw) == before


async def test_a_roll_after_an_edit_is_stale(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """An edit between the read and the roll: nothing is created under
    the old definition."""
    schedule_id = await new_schedule(store, whole_seconds(raw, 0))
    got = await read(store, schedule_id)
    edited = await store.edit(
        schedule_id,
        lambda r: Edit(False, r.next_ms, r.definition.edited(url=URL + "2")),
    )
    assert edited.code is Code.DONE
    before = dump_all(raw)

    _, rolled = await roll(store, shard, got, redis_ms(raw))

    assert rolled.code is Code.STALE
    assert dump_all(raw) == before


async def test_an_occurrence_not_yet_due_is_not_handed_over(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Redis' clock decides: an occurrence in its future is EARLY."""
    due_ms = redis_ms(raw) + 5_000
    schedule_id = await new_schedule(store, due_ms)
    got = await read(store, schedule_id)
    before = dump_all(raw)

    # A roller whose estimate of Redis' clock runs 5 s ahead.
    _, rolled = await roll(store, shard, got, due_ms)

    assert rolled.code is Code.EARLY
    assert dump_all(raw) == before


async def test_a_full_ready_stream_holds_the_occurrence_back(
    queue: ShardQueue, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """At the ready stream's bound nothing moves: FULL."""
    store = ScheduleStore(
        ShardQueue(queue.connection, queue.settings.replace(ready_max=1))
    )
    schedule_id = await new_schedule(store, whole_seconds(raw, 0))
    raw.xgroup_create(shard.ready, GROUP, id="0", mkstream=True)
    raw.xadd(shard.ready, {"i": b"x" * 16, "s": 1})
    got = await read(store, schedule_id)
    before = dump_all(raw)

    _, rolled = await roll(store, shard, got, redis_ms(raw))

    assert rolled.code is Code.FULL
    assert dump_all(raw) == before


async def test_the_last_occurrence_ends_the_schedule(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """No successor (end_at): the member leaves the set, n goes."""
    due_ms = whole_seconds(raw, 0)
    schedule_id = await new_schedule(
        store, due_ms, definition(end_at_ms=due_ms + 1000)
    )
    got = await read(store, schedule_id)

    plan, rolled = await roll(store, shard, got, redis_ms(raw))

    assert plan.next_ms is None
    assert (rolled.code, rolled.created) == (Code.DONE, 1)
    after = await read(store, schedule_id)
    assert (after.next_ms, after.paused) == (None, False)
    assert raw.zcard(shard.schedules_next) == 0
    assert raw.zcard(shard.schedules) == 1


@pytest.mark.parametrize(
    ("misfire", "fired"), [("once", 1), ("skip", 0), ("all", 5)]
)
async def test_after_downtime_the_policy_decides_what_fires(
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    misfire: str,
    fired: int,
) -> None:
    """Five occurrences overdue: once fires the first, skip none, all
    each; the rest count as missed; the next is in the future."""
    now_ms = redis_ms(raw)
    first_ms = (now_ms // 2000 - 4) * 2000
    schedule_id = await new_schedule(
        store, first_ms, definition(misfire=misfire)
    )
    got = await read(store, schedule_id)

    plan, rolled = await roll(store, shard, got, now_ms)

    overdue = [first_ms + 2000 * i for i in range(5)]
    assert [o.scheduled_ms for o in plan.fire] == overdue[:fired]
    assert (rolled.code, rolled.created) == (Code.DONE, fired)
    entries = stream(raw, shard.ready) if raw.exists(shard.ready) else []
    assert [int(f["s"]) for _, f in entries] == overdue[:fired]
    after = await read(store, schedule_id)
    assert after.missed == 5 - fired
    assert after.next_ms is not None and after.next_ms > overdue[-1]
    if fired:
        assert after.last_id == occurrence_id(
            schedule_id, overdue[fired - 1], SHARDS
        )


async def test_an_occurrence_whose_timer_exists_is_not_made_twice(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """The derived id finds the occurrence's timer (or its finished
    record) and creates no second one."""
    due_ms = whole_seconds(raw, 0)
    schedule_id = await new_schedule(store, due_ms)
    occurrence = occurrence_id(schedule_id, due_ms, SHARDS)
    raw.hset(finished_key(shard, occurrence), occurrence, "f1,1,1,200")
    got = await read(store, schedule_id)

    _, rolled = await roll(store, shard, got, redis_ms(raw))

    assert (rolled.code, rolled.created) == (Code.DONE, 0)
    assert not raw.exists(shard.ready)
    assert not raw.exists(shard.timer(occurrence))
    assert (await read(store, schedule_id)).next_ms == due_ms + 2000


async def test_a_member_without_a_record_is_dropped(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A member whose record is gone (it cannot be rolled) leaves."""
    schedule_id = await new_schedule(store, whole_seconds(raw, 0))
    got = await read(store, schedule_id)
    raw.delete(shard.schedule(schedule_id))

    _, rolled = await roll(store, shard, got, redis_ms(raw))

    assert rolled.code is Code.STALE
    assert raw.zcard(shard.schedules_next) == 0
    assert not raw.exists(shard.ready)


async def test_an_own_request_is_sent_with_its_body_or_the_default(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A PUT with headers and no body sends the default body; a body of
    its own replaces it; a GET sends none."""
    due_ms = whole_seconds(raw, 0)
    for own in (
        WebhookRequest("PUT", (("X-A", "1"),)),
        WebhookRequest("POST", (), "custom"),
        WebhookRequest("GET"),
    ):
        made = definition(request=pack(own))
        schedule_id = await new_schedule(store, due_ms, made)
        got = await read(store, schedule_id)
        plan, _ = await roll(store, shard, got, redis_ms(raw))
        (occurrence,) = plan.fire
        stored = await store.queue.get(occurrence.id)
        assert stored is not None
        sent = unpack(stored.request)
        assert (sent.method, sent.headers) == (own.method, own.headers)
        if own.method == "PUT":
            assert sent.body is not None and '"schedule_id"' in sent.body
        else:
            assert sent.body == own.body


# -- edit and delete --------------------------------------------------------


async def test_a_pause_takes_the_next_occurrence_off_and_a_resume_back(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Each edit raises the version; a pause drops the member, a resume
    puts the given next occurrence back."""
    next_ms = redis_ms(raw) + 60_000
    schedule_id = await new_schedule(store, next_ms)

    paused = await store.edit(schedule_id, lambda r: Edit(True, None))

    assert paused.code is Code.DONE and paused.record is not None
    assert (paused.record.version, paused.record.paused) == (b"2", True)
    assert paused.record.next_ms is None
    assert raw.zcard(shard.schedules_next) == 0

    resumed = await store.edit(
        schedule_id, lambda r: Edit(False, next_ms + 2000)
    )

    assert resumed.record is not None
    assert (resumed.record.version, resumed.record.paused) == (b"3", False)
    assert raw.zrange(shard.schedules_next, 0, -1, withscores=True) == [
        (schedule_id, float(next_ms + 2000))
    ]


async def test_an_edit_replaces_the_definition_and_its_chunks(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A shorter definition leaves no chunk of the longer one behind."""
    long = definition(url="https://example.com/" + "y" * 200)
    schedule_id = await new_schedule(store, redis_ms(raw) + 60_000, long)
    short = definition(cron="0 * * * *")

    edited = await store.edit(
        schedule_id, lambda r: Edit(False, r.next_ms, short)
    )

    assert edited.record is not None
    assert edited.record.definition == short
    fields = raw.hgetall(shard.schedule(schedule_id))
    count = int(fields[b"d"])
    assert count == len(chunks(pack_definition(short)))
    assert not any(
        name.startswith(b"d") and name[1:].isdigit() and int(name[1:]) > count
        for name in fields
    )


async def test_an_edit_of_a_changed_record_reads_it_again(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A roll between an edit's read and its write: the edit's
    compare-and-set fails, it reads again, and keeps the roll's next."""
    schedule_id = await new_schedule(store, whole_seconds(raw, 0))
    seen: list[int | None] = []

    def change(r: ScheduleRecord) -> Edit:
        seen.append(r.next_ms)
        if len(seen) == 1:
            # The roller hands the occurrence over meanwhile.
            raw.hset(shard.schedule(schedule_id), "n", (r.next_ms or 0) + 2000)
        return Edit(False, r.next_ms, r.definition.edited(url=URL + "2"))

    edited = await store.edit(schedule_id, change)

    assert edited.record is not None
    assert len(seen) == 2 and seen[1] == (seen[0] or 0) + 2000
    assert edited.record.next_ms == seen[1]


async def test_an_edit_of_an_unknown_schedule_is_not_found(
    store: ScheduleStore,
) -> None:
    """No record: not found, nothing written."""
    edited = await store.edit(b"\x01" * 16, lambda r: Edit(True, None))
    assert edited.code is Code.NOT_FOUND


async def test_a_delete_leaves_a_marker_and_answers_done_again(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """A delete drops the record and both members; its marker answers a
    second delete (done) for a day; GET finds nothing; a roll of an old
    read creates nothing."""
    schedule_id = await new_schedule(store, whole_seconds(raw, 0))
    got = await read(store, schedule_id)

    assert await store.delete(schedule_id) is Code.DONE

    assert keys_left(raw) == {shard.schedule(schedule_id)}
    assert raw.hgetall(shard.schedule(schedule_id)) == {b"z": b"1"}
    ttl = raw.pttl(shard.schedule(schedule_id))
    assert 0 < ttl <= DELETED_MARKER_MS
    assert await store.get(schedule_id) is None
    assert await store.delete(schedule_id) is Code.DONE
    _, rolled = await roll(store, shard, got, redis_ms(raw))
    assert rolled.code is Code.STALE
    assert keys_left(raw) == {shard.schedule(schedule_id)}
    assert await store.delete(b"\x02" * 16) is Code.NOT_FOUND


# -- an occurrence's claim and completion -----------------------------------


async def occurrence_firing(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> tuple[bytes, Attempt]:
    """A schedule whose first occurrence was handed over and claimed;
    the attempt to complete (its outcome to be chosen)."""
    schedule_id = await new_schedule(store, whole_seconds(raw, 0))
    await roll(store, shard, await read(store, schedule_id), redis_ms(raw))
    queue = store.queue
    (entry,) = await queue.read(shard, CONSUMER, 10)
    (claim,) = await queue.claim(shard, CONSUMER, [entry])
    assert claim.verdict is Verdict.FIRE
    assert claim.schedule_id == schedule_id
    return schedule_id, Attempt(
        entry, claim.attempt, Outcome.OK, "200", 0, 5, claim.schedule_id
    )


@pytest.mark.parametrize(
    ("outcome", "counts"),
    [(Outcome.OK, (1, 0)), (Outcome.FAIL, (0, 1)), (Outcome.RETRY, (0, 0))],
)
async def test_a_finished_occurrence_counts_in_its_schedule_once(
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    outcome: Outcome,
    counts: tuple[int, int],
) -> None:
    """Fired or failed counts once in the schedule (a replayed
    completion counts nothing); a retry counts nothing yet."""
    schedule_id, attempt = await occurrence_firing(store, shard, raw)
    attempt = Attempt(
        attempt.entry,
        attempt.attempt,
        outcome,
        "500",
        60_000,
        5,
        attempt.schedule_id,
    )
    for _ in range(2):
        completed = await store.queue.complete(
            shard, CONSUMER, attempt, deadline_s=2
        )
        assert completed.code is Code.DONE
    got = await read(store, schedule_id)
    assert (got.fired, got.failed) == counts
    timer = await store.queue.get(attempt.entry.timer_id)
    assert timer is not None
    expected = {
        Outcome.OK: TimerState.FIRED,
        Outcome.FAIL: TimerState.FAILED,
        Outcome.RETRY: TimerState.PENDING,
    }[outcome]
    assert timer.state is expected


@pytest.mark.parametrize("failed_by", ["completion", "claim"])
async def test_a_retried_occurrence_still_counts_in_its_schedule(
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    failed_by: str,
) -> None:
    """An occurrence that failed (its last attempt's completion, or a
    claim that found no attempt left) keeps its schedule's id beside its
    finished record; an operator's retry puts it back on the record, so
    the retried occurrence's claim names the schedule and its end counts
    there. A fired one keeps no id."""
    schedule_id, attempt = await occurrence_firing(store, shard, raw)
    timer_id = attempt.entry.timer_id
    if failed_by == "completion":
        outcome, counts = Outcome.FAIL, (1, 1)
    else:
        # A retry at the last attempt: the next claim finds none left.
        outcome, counts = Outcome.RETRY, (1, 0)
    ending = Attempt(
        attempt.entry, attempt.attempt, outcome, "500", 0, 5, schedule_id
    )
    completed = await store.queue.complete(
        shard, CONSUMER, ending, deadline_s=2
    )
    assert completed.code is Code.DONE
    if failed_by == "claim":
        once = with_settings(store.queue, max_attempts=1)
        (again,) = await until(
            lambda: deliver(once, shard), what="the retry to come due"
        )
        (dead,) = await once.claim(shard, CONSUMER, [again])
        assert dead.verdict is Verdict.DEAD
    kept = raw.hget(finished_key(shard, timer_id), timer_id + b"g")
    assert kept == schedule_id
    (letter,) = await Inspector(store.queue).dead_letters(shard, 10)

    retried = await store.queue.retry(timer_id, letter)

    assert retried == (Code.DONE, TimerState.PENDING)
    (entry,) = await until(
        lambda: deliver(store.queue, shard), what="the retry to come due"
    )
    (claim,) = await store.queue.claim(shard, CONSUMER, [entry])
    assert (claim.verdict, claim.schedule_id) == (Verdict.FIRE, schedule_id)
    firing = Attempt(
        entry, claim.attempt, Outcome.OK, "200", 0, 5, claim.schedule_id
    )
    completed = await store.queue.complete(
        shard, CONSUMER, firing, deadline_s=2
    )
    assert completed.code is Code.DONE
    got = await read(store, schedule_id)
    assert (got.fired, got.failed) == counts
    fields = raw.hgetall(finished_key(shard, timer_id))
    assert timer_id + b"g" not in fields


async def test_an_occurrence_of_a_deleted_schedule_completes_alone(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Deleted while its occurrence was in flight: the occurrence
    completes and stays readable; the marker gets no count."""
    schedule_id, attempt = await occurrence_firing(store, shard, raw)
    assert await store.delete(schedule_id) is Code.DONE

    completed = await store.queue.complete(
        shard, CONSUMER, attempt, deadline_s=2
    )

    assert completed.code is Code.DONE
    assert raw.hgetall(shard.schedule(schedule_id)) == {b"z": b"1"}
    timer = await store.queue.get(attempt.entry.timer_id)
    assert timer is not None and timer.state is TimerState.FIRED


async def test_completions_gathered_in_one_call_count_each_schedule(
    store: ScheduleStore, shard: ShardKeys, raw: sync_redis.Redis
) -> None:
    """Three schedules' occurrences and a plain timer finish in the same
    turn (one completion call): each schedule counts its own, once."""
    queue = store.queue
    due_ms = whole_seconds(raw, 0)
    schedule_ids = [await new_schedule(store, due_ms) for _ in range(3)]
    for schedule_id in schedule_ids:
        got = await read(store, schedule_id)
        await roll(store, shard, got, redis_ms(raw))
    plain = queue.ids.new(due_ms, SHARDS, SHARD)
    await queue.create(URL, 0, timer_id=plain)
    raw.xadd(shard.ready, {"i": plain, "s": raw.hget(shard.timer(plain), "d")})
    entries = await queue.read(shard, CONSUMER, 10)
    claims = await queue.claim(shard, CONSUMER, entries)
    assert sorted(c.schedule_id for c in claims) == sorted(
        [b"", *schedule_ids]
    )
    outcomes = [Outcome.OK, Outcome.FAIL, Outcome.OK, Outcome.OK]
    attempts = [
        Attempt(e, c.attempt, o, "200", 0, 5, c.schedule_id)
        for e, c, o in zip(entries, claims, outcomes, strict=True)
    ]

    done = await asyncio.gather(
        *(queue.complete(shard, CONSUMER, a, deadline_s=2) for a in attempts)
    )

    assert [d.code for d in done] == [Code.DONE] * 4
    for attempt in attempts:
        if not attempt.schedule_id:
            continue
        got = await read(store, attempt.schedule_id)
        assert (got.fired, got.failed) == (
            (0, 1) if attempt.outcome is Outcome.FAIL else (1, 0)
        )
