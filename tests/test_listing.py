"""GET /timers against a real Redis: every timer that exists throughout
the paging is listed exactly once, a page's Redis work is bounded
whatever the shards and timers, and a cascade under the cursor is
refused rather than repeat a timer."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis as sync_redis

from tests.test_scripts import coarse_delay, redis_ms
from wheel.api import app as api_app
from wheel.core import ids
from wheel.core.buckets import DAY_MS, HOUR_MS, Level, place
from wheel.core.states import Code, Outcome, TimerState, Verdict
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage import listing
from wheel.storage.connection import Connection, connect
from wheel.storage.keys import ShardKeys
from wheel.storage.shards import Attempt, ShardQueue

URL = "http://127.0.0.1:9/hook"
TOKEN = "ticker-test"
PAGE_CALLS_BOUND = (
    listing.SHARDS_PER_PAGE * (3 + 4 + 1 + 2)
    + listing.INDEX_PER_PAGE * 20
    + 2 * 100
)
"""Most Redis commands a page of 100 may run, from the listing's own
bounds (none depends on the number of shards or timers): per shard
visited, three calls (the index look, walk.lua, get.lua) and inside
walk.lua at most four head checks, the index slice, EXISTS and XRANGE;
per bucket read at most 20 commands (two ZCOUNTs, a binary search of
at most 17 steps over up to 131,072 timers, one range read); per timer
taken at most two HMGETs."""


class Deployment:
    """A deployment of ``shards`` shards on the test Redis: its queue,
    and the API app in process."""

    def __init__(
        self, redis_url: str, shards: int, prefix: str = "tw"
    ) -> None:
        self.settings = Settings(
            redis_url=redis_url, shards=shards, key_prefix=prefix
        )
        self.connection: Connection = connect(
            self.settings, client_name("test")
        )
        self.queue = ShardQueue(self.connection, self.settings)
        self.app = api_app.create_app(self.settings, self.connection)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://test",
        )

    async def create(self, delays_ms: list[int]) -> list[str]:
        """Timers due after each delay (500 script calls at a time)."""
        made = []
        for start in range(0, len(delays_ms), 500):
            replies = await asyncio.gather(
                *(
                    self.queue.create(URL, delay)
                    for delay in delays_ms[start : start + 500]
                )
            )
            made += [ids.to_text(r.timer_id) for r in replies]
        return made

    async def advance_all(self) -> None:
        """Move what is due on every shard into its ready stream."""
        for shard in self.queue.keys.all_shards():
            await self.queue.acquire(shard, TOKEN, 60_000)
            await self.queue.ensure_group(shard)
            peek = await self.queue.peek(shard, 64)
            minutes = [b.number for b, _ in peek if b.level is Level.MINUTE]
            if minutes:
                await self.queue.advance(shard, TOKEN, minutes)

    async def cascade(self, shard: ShardKeys, due_ms: int) -> None:
        """Cascade the coarse bucket that holds timers due at ``due_ms``
        (as placed now) until it is empty."""
        bucket = place(due_ms, redis_ms_of(self))
        assert bucket.level is not Level.MINUTE
        await self.queue.acquire(shard, TOKEN, 60_000)
        for _ in range(100):
            reply = await self.queue.cascade(shard, TOKEN, bucket, 1000)
            assert reply.code is Code.DONE
            if reply.left == 0:
                return
        raise AssertionError("the cascade never emptied the bucket")

    async def page(
        self, limit: int = 100, cursor: str | None = None, **params: Any
    ) -> httpx.Response:
        """One GET /timers."""
        query = {"limit": limit, **params}
        if cursor is not None:
            query["cursor"] = cursor
        return await self.http.get("/timers", params=query)

    async def everything(
        self, limit: int = 100, cursor: str | None = None, **params: Any
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Every id of a listing (from ``cursor`` on), in order, and every
        page's body."""
        seen: list[str] = []
        pages = []
        for _ in range(10_000):
            reply = await self.page(limit, cursor, **params)
            assert reply.status_code == 200, reply.text
            body = reply.json()
            pages.append(body)
            assert len(body["items"]) <= limit
            seen += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return seen, pages
        raise AssertionError("the listing never ended")

    async def aclose(self) -> None:
        """Close the client and the connection."""
        await self.http.aclose()
        await self.connection.aclose()


def redis_ms_of(deployment: Deployment) -> int:
    """Redis' clock, from a plain client."""
    client = sync_redis.Redis.from_url(deployment.settings.redis_url)
    try:
        return redis_ms(client)
    finally:
        client.close()


@pytest.fixture
async def wide(redis_url: str) -> AsyncIterator[Deployment]:
    """A deployment of 64 shards."""
    deployment = Deployment(redis_url, 64)
    await deployment.app.state.api.check_identity()
    yield deployment
    await deployment.aclose()


@pytest.fixture
async def one(redis_url: str) -> AsyncIterator[Deployment]:
    """A deployment of one shard (a listing's order is the shard's)."""
    deployment = Deployment(redis_url, 1)
    await deployment.app.state.api.check_identity()
    yield deployment
    await deployment.aclose()


def command_calls(raw: sync_redis.Redis) -> Counter[str]:
    """Calls per command since the last CONFIG RESETSTAT."""
    stats = raw.info("commandstats")
    return Counter(
        {
            name.removeprefix("cmdstat_"): int(row["calls"])
            for name, row in stats.items()
            if name not in ("cmdstat_info", "cmdstat_config")
        }
    )


def spread_delays(count: int, seed: int) -> list[int]:
    """Delays over every level of the wheel: minutes (a third), hours (a
    third) and days (up to 30)."""
    rng = random.Random(seed)
    delays = []
    for i in range(count):
        if i % 3 == 0:
            delays.append(rng.randint(10_000, 50 * 60_000))
        elif i % 3 == 1:
            delays.append(rng.randint(HOUR_MS, 22 * HOUR_MS))
        else:
            delays.append(rng.randint(2 * DAY_MS, 30 * DAY_MS))
    return delays


async def test_ten_thousand_timers_over_64_shards_each_listed_once(
    wide: Deployment, raw: sync_redis.Redis
) -> None:
    """10,000 pending timers on 64 shards (minute, hour and day buckets)
    and 200 due ones waiting in the ready streams, paged at 100: each is
    listed exactly once, and no page runs more Redis commands than the
    listing's bounds allow, nor more than two script calls a shard."""
    waiting = await wide.create([0] * 200)
    await wide.advance_all()
    pending = await wide.create(spread_delays(10_000, seed=17))
    assert sum(raw.xlen(s.ready) for s in wide.queue.keys.all_shards()) == 200

    seen: list[str] = []
    costs: list[Counter[str]] = []
    cursor = None
    for _ in range(1_000):
        raw.config_resetstat()
        reply = await wide.page(100, cursor)
        costs.append(command_calls(raw))
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert len(body["items"]) <= 100
        assert all(item["status"] == "pending" for item in body["items"])
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    counts = Counter(seen)
    assert set(counts) == set(pending) | set(waiting)
    assert max(counts.values()) == 1
    worst = max(sum(cost.values()) for cost in costs)
    assert worst <= PAGE_CALLS_BOUND, max(costs, key=lambda c: c.total())
    assert max(cost["evalsha"] for cost in costs) <= 2 * (
        listing.SHARDS_PER_PAGE
    )
    # Most pages are full: paging is not one shard a page.
    assert len(costs) <= 10_200 // 100 * 2


async def test_a_cascade_under_the_cursor_asks_for_a_restart(
    one: Deployment, raw: sync_redis.Redis
) -> None:
    """The cursor stands inside an hour bucket (a day bucket between
    22:54 and 23:00 UTC); the ticker cascades it before the next page:
    that page answers 409, and the listing started again lists every
    timer once."""
    delay = coarse_delay(redis_ms(raw))
    near = await one.create([30_000 + i for i in range(5)])
    coarse = await one.create([delay + i * 1000 for i in range(30)])
    first = (await one.page(10)).json()
    assert [item["id"] for item in first["items"]][:5] == near

    await one.cascade(one.queue.keys.shard(0), redis_ms(raw) + delay)
    reply = await one.page(10, first["next_cursor"])

    assert reply.status_code == 409
    assert reply.headers["content-type"] == "application/problem+json"
    assert "start the listing again" in reply.json()["detail"]
    seen, _ = await one.everything(10)
    assert sorted(seen) == sorted(near + coarse)
    assert len(seen) == len(set(seen))


async def test_a_cascade_ahead_of_the_cursor_changes_nothing(
    one: Deployment, raw: sync_redis.Redis
) -> None:
    """A day bucket the walk has not reached cascades into hours between
    two pages: the listing goes on and lists every timer once."""
    near = await one.create([30_000 + i for i in range(20)])
    days = await one.create([3 * DAY_MS + i * 60_000 for i in range(20)])
    first = (await one.page(10)).json()
    assert {item["id"] for item in first["items"]} <= set(near)

    await one.cascade(one.queue.keys.shard(0), redis_ms(raw) + 3 * DAY_MS)
    seen = [item["id"] for item in first["items"]]
    rest, _ = await one.everything(10, cursor=first["next_cursor"])

    assert Counter(seen + rest) == Counter(near + days)


async def test_timers_coming_due_between_pages_are_listed_once(
    one: Deployment,
) -> None:
    """Timers the ticker moves into the ready stream between two pages
    (no worker takes them) keep their place: each is listed once."""
    due = await one.create([0] * 30)
    later = await one.create([600_000 + i for i in range(10)])
    first = (await one.page(7)).json()

    await one.advance_all()
    seen = [item["id"] for item in first["items"]]
    rest, _ = await one.everything(7, cursor=first["next_cursor"])

    assert Counter(seen + rest) == Counter(due + later)


async def test_a_rescheduled_timer_is_listed_once_at_its_new_time(
    one: Deployment,
) -> None:
    """A timer moved out of a day bucket before the listing: its old
    copy (a tombstone) is not listed, its new one is."""
    (moved,) = await one.create([5 * DAY_MS])
    others = await one.create([4 * DAY_MS, 6 * DAY_MS])
    reply = await one.http.patch(f"/timer/{moved}", json={"minutes": 3})
    assert reply.status_code == 200, reply.text

    seen, _ = await one.everything(1)

    assert Counter(seen) == Counter([moved, *others])
    assert seen[0] == moved


async def firing_and_finished(
    queue: ShardQueue, count: int
) -> dict[TimerState, set[str]]:
    """``count`` timers per state on the queue's shards."""
    states: dict[TimerState, set[str]] = {s: set() for s in TimerState}
    made = {}
    for state in (TimerState.FIRING, TimerState.FIRED, TimerState.FAILED):
        made[state] = [
            (await queue.create(URL, 0)).timer_id for _ in range(count)
        ]
    for shard in queue.keys.all_shards():
        await queue.acquire(shard, TOKEN, 60_000)
        await queue.ensure_group(shard)
        peek = await queue.peek(shard, 64)
        minutes = [b.number for b, _ in peek if b.level is Level.MINUTE]
        await queue.advance(shard, TOKEN, minutes)
        entries = await queue.read(shard, "w", 1000)
        claims = await queue.claim(shard, "w", entries)
        for entry, claim in zip(entries, claims, strict=True):
            assert claim.verdict is Verdict.FIRE
            outcome = {
                **dict.fromkeys(made[TimerState.FIRED], Outcome.OK),
                **dict.fromkeys(made[TimerState.FAILED], Outcome.FAIL),
            }.get(entry.timer_id)
            if outcome is not None:
                done = Attempt(entry, 1, outcome, "500", 0, 3)
                await queue.complete(shard, "w", done, 2.0)
    for state, timer_ids in made.items():
        states[state] = {ids.to_text(i) for i in timer_ids}
    for _ in range(count):
        created = await queue.create(URL, 3 * DAY_MS)
        await queue.cancel(created.timer_id)
        states[TimerState.CANCELLED].add(ids.to_text(created.timer_id))
    return states


@pytest.mark.parametrize(
    "status",
    [
        TimerState.FIRING,
        TimerState.FIRED,
        TimerState.FAILED,
        TimerState.CANCELLED,
    ],
)
async def test_other_statuses_are_listed_once_each(
    wide: Deployment, status: TimerState
) -> None:
    """Firing, fired, failed and cancelled timers over 64 shards, paged
    at 7: each listed once, as GET shows it."""
    states = await firing_and_finished(wide.queue, 40)

    seen, pages = await wide.everything(7, status=status.value)

    assert Counter(seen) == Counter(states[status])
    items = [item for page in pages for item in page["items"]]
    assert {item["status"] for item in items} == {status.value}
    some = items[0]
    single = (await wide.http.get(f"/timer/{some['id']}")).json()
    assert {k: v for k, v in single.items() if k != "time_left"} == {
        k: v for k, v in some.items() if k not in ("time_left", "url")
    } | ({"url": some["url"]} if "url" in single else {})
    if status is TimerState.FAILED:
        assert all(item["url"] == URL for item in items)
        assert items[0]["history"][0]["status"] == 500


async def test_filters_narrow_the_listing(
    one: Deployment, raw: sync_redis.Redis
) -> None:
    """due_after, due_before and url_prefix keep what matches them."""
    now = redis_ms(raw)
    a = await one.create([HOUR_MS * 3])
    b = await one.create([HOUR_MS * 30])
    c = await one.create([60_000])
    other = (
        await one.queue.create("http://127.0.0.1:9/other", HOUR_MS * 3)
    ).timer_id

    def instant(ms: int) -> str:
        from wheel.core.delays import rfc3339

        return rfc3339(ms)

    window, _ = await one.everything(
        5,
        due_after=instant(now + HOUR_MS),
        due_before=instant(now + 10 * HOUR_MS),
    )
    assert sorted(window) == sorted([*a, ids.to_text(other)])
    hooks, _ = await one.everything(5, url_prefix="http://127.0.0.1:9/ho")
    assert sorted(hooks) == sorted(a + b + c)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        # A digit int() refuses, and more digits than int() reads.
        ({"limit": "\u00b2"}, "limit"),
        ({"limit": "0" * 4302 + "5"}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "AAAA"}, "cursor"),
        ({"due_after": "2026-12-01T16:00:00"}, "due_after"),
        ({"due_before": "2026-12-01T16:00:00+25:00"}, "due_before"),
        (
            {
                "due_after": "2026-12-02T00:00:00Z",
                "due_before": "2026-12-01T00:00:00Z",
            },
            "due_before",
        ),
        ({"status": "fired", "url_prefix": "http://a"}, "url_prefix"),
        ({"status": "cancelled", "url_prefix": "http://a"}, "url_prefix"),
        ({"sort": "due"}, "sort"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    one: Deployment, params: dict[str, str], field: str
) -> None:
    """Each bad parameter is a 422 problem naming it; nothing is read."""
    reply = await one.http.get("/timers", params=params)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in reply.json()["errors"]]


async def test_a_repeated_parameter_is_refused(one: Deployment) -> None:
    """status twice is ambiguous: 422."""
    reply = await one.http.get("/timers?status=pending&status=fired")
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "status"


@pytest.mark.parametrize(
    "other",
    [
        {"status": "failed"},
        {"due_after": "2020-01-01T00:00:00Z"},
        {"url_prefix": "http://x"},
    ],
)
async def test_a_cursor_of_another_listing_is_refused(
    one: Deployment, other: dict[str, str]
) -> None:
    """A cursor used with other parameters than its own: 422 naming it."""
    await one.create([60_000 + i for i in range(5)])
    cursor = (await one.page(2)).json()["next_cursor"]
    assert cursor is not None

    reply = await one.page(2, cursor, **other)

    assert reply.status_code == 422
    (error,) = reply.json()["errors"]
    assert error["field"] == "cursor"
    assert "another listing" in error["message"]


async def test_a_cursor_of_another_deployment_is_refused(
    one: Deployment, redis_url: str
) -> None:
    """A cursor of one deployment (key prefix) does not walk another."""
    await one.create([60_000 + i for i in range(5)])
    cursor = (await one.page(2)).json()["next_cursor"]
    other = Deployment(redis_url, 1, prefix="other")
    try:
        await other.app.state.api.check_identity()
        reply = await other.page(2, cursor)
    finally:
        await other.aclose()

    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "cursor"


async def test_a_listing_on_a_cluster_lists_each_timer_once(
    cluster_url: str,
) -> None:
    """On a 3-master Redis Cluster (16 shards spread over the masters),
    every script of a page touches one slot: each timer listed once."""
    deployment = Deployment(cluster_url, 16)
    try:
        await deployment.app.state.api.check_identity()
        made = await deployment.create(spread_delays(600, seed=3))
        seen, _ = await deployment.everything(50)
    finally:
        await deployment.aclose()
    assert Counter(seen) == Counter(made)
