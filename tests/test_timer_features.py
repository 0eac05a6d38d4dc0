"""The API's timers beyond the seed's: at, own requests, reschedule,
history in GET (in process, on a real Redis)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import redis as sync_redis

from tests.test_api import assert_problem, epoch_ms, redis_now_ms
from wheel.core import ids
from wheel.core.delays import rfc3339
from wheel.core.states import Code
from wheel.settings import Settings
from wheel.storage.keys import Keys
from wheel.storage.shards import ShardQueue

URL = "http://example.com/hook"
REQUEST = {
    "method": "PUT",
    "headers": {"Authorization": "Bearer abc", "Content-Type": "text/plain"},
    "body": "hello\nworld",
}


async def test_at_is_the_due_time(
    client: httpx.AsyncClient, raw: sync_redis.Redis
) -> None:
    """A timer at an instant is due exactly then; time_left counts to it;
    the seed's answer shape is unchanged."""
    now = await redis_now_ms(raw)
    at_ms = now + 3_600_000 + 123
    reply = await client.post(
        "/timer", json={"url": URL, "at": rfc3339(at_ms)}
    )
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert set(created) == {"id", "time_left"}
    assert created["time_left"] in (3601, 3602)
    view = (await client.get(f"/timer/{created['id']}")).json()
    assert epoch_ms(view["due_at"]) == at_ms
    assert view["history"] == []


async def test_at_with_an_offset_names_the_same_instant(
    client: httpx.AsyncClient, raw: sync_redis.Redis
) -> None:
    """Z and +02:00 spellings of one instant give one due time."""
    base = (await redis_now_ms(raw) // 1000 + 7200) * 1000
    spellings = [
        rfc3339(base),
        datetime.fromtimestamp(
            base / 1000, tz=timezone(timedelta(hours=2))
        ).isoformat(),
        datetime.fromtimestamp(
            base / 1000, tz=timezone(-timedelta(hours=9))
        ).isoformat(timespec="microseconds"),
    ]
    dues = set()
    for at in spellings:
        reply = await client.post("/timer", json={"url": URL, "at": at})
        assert reply.status_code == 201, reply.text
        view = (await client.get(f"/timer/{reply.json()['id']}")).json()
        dues.add(view["due_at"])
    assert dues == {rfc3339(base)}


async def test_at_in_the_past_is_due_at_once(
    client: httpx.AsyncClient, raw: sync_redis.Redis
) -> None:
    """An instant already past: time_left 0, due at creation."""
    before = await redis_now_ms(raw)
    reply = await client.post(
        "/timer", json={"url": URL, "at": "2001-01-01T00:00:00Z"}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["time_left"] == 0
    view = (await client.get(f"/timer/{reply.json()['id']}")).json()
    assert epoch_ms(view["due_at"]) >= before


async def test_own_request_is_echoed_by_get(client: httpx.AsyncClient) -> None:
    """GET shows the request as given, under the same name, and the url."""
    reply = await client.post(
        "/timer", json={"url": URL, "seconds": 600, "request": REQUEST}
    )
    assert reply.status_code == 201, reply.text
    view = (await client.get(f"/timer/{reply.json()['id']}")).json()
    assert view["request"] == REQUEST
    assert view["url"] == URL


async def test_plain_timer_has_no_request(
    client: httpx.AsyncClient, raw: sync_redis.Redis, settings: Settings
) -> None:
    """Without request (or with an empty one) nothing more is stored."""
    for extra in ({}, {"request": {}}, {"request": {"method": "POST"}}):
        reply = await client.post(
            "/timer", json={"url": URL, "seconds": 600, **extra}
        )
        view = (await client.get(f"/timer/{reply.json()['id']}")).json()
        assert "request" not in view
        timer_id = ids.parse(view["id"])
        assert timer_id is not None
        keys = Keys(settings.key_prefix, settings.shards)
        shard = keys.shard(ids.shard_of(timer_id, settings.shards))
        assert set(raw.hkeys(shard.timer(timer_id))) == {b"u", b"d", b"s"}


async def test_idempotency_tells_requests_apart(
    client: httpx.AsyncClient, raw: sync_redis.Redis
) -> None:
    """One key: the same at and request repeat; another request is a
    mismatch."""
    first = {
        "url": URL,
        "at": rfc3339(await redis_now_ms(raw) + 86_400_000),
        "request": REQUEST,
    }
    headers = {"Idempotency-Key": "k-17"}
    a = await client.post("/timer", json=first, headers=headers)
    b = await client.post("/timer", json=first, headers=headers)
    changed = {**first, "request": {**REQUEST, "body": "other"}}
    c = await client.post("/timer", json=changed, headers=headers)
    assert (a.status_code, b.status_code) == (201, 200)
    assert a.json()["id"] == b.json()["id"]
    assert_problem(c, 422)


async def test_a_repeat_answers_the_timer_as_it_is_now(
    client: httpx.AsyncClient,
) -> None:
    """A repeat with the same Idempotency-Key after a reschedule and a
    cancel answers the timer as it is then, not as it was created."""
    body = {"url": URL, "hours": 5}
    headers = {"Idempotency-Key": "k-18"}
    created = (await client.post("/timer", json=body, headers=headers)).json()
    await client.patch(f"/timer/{created['id']}", json={"minutes": 10})

    moved = await client.post("/timer", json=body, headers=headers)

    assert moved.status_code == 200
    assert moved.json()["id"] == created["id"]
    assert moved.json()["time_left"] in (599, 600)
    await client.delete(f"/timer/{created['id']}")
    cancelled = await client.post("/timer", json=body, headers=headers)
    assert cancelled.json() == {"id": created["id"], "time_left": 0}


async def test_reschedule_moves_a_pending_timer(
    client: httpx.AsyncClient, raw: sync_redis.Redis
) -> None:
    """PATCH with a delay or at: 200 with the new time_left and due_at."""
    created = (
        await client.post("/timer", json={"url": URL, "hours": 5})
    ).json()
    before = await redis_now_ms(raw)
    reply = await client.patch(f"/timer/{created['id']}", json={"minutes": 10})
    after = await redis_now_ms(raw)
    assert reply.status_code == 200, reply.text
    view = reply.json()
    assert view["status"] == "pending"
    assert view["time_left"] in (599, 600)
    assert before + 600_000 <= epoch_ms(view["due_at"]) <= after + 600_000

    at = rfc3339(after + 2 * 86_400_000)
    moved = await client.patch(f"/timer/{created['id']}", json={"at": at})
    assert moved.status_code == 200
    assert moved.json()["due_at"] == at
    assert math.isclose(moved.json()["time_left"], 172_800, abs_tol=2)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "$"),
        ({"url": "http://x.io/"}, "url"),
        ({"request": {}}, "request"),
        ({"seconds": -1}, "seconds"),
        ({"seconds": 1.0}, "seconds"),
        ({"at": "2026-12-01T16:00:00"}, "at"),
        ({"at": "2026-12-01T16:00:00Z", "minutes": 1}, "minutes"),
        ({"hours": 10**6}, "hours, minutes, seconds"),
        ({"sec": 1}, "sec"),
    ],
)
async def test_bad_reschedule_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    raw: sync_redis.Redis,
    body: dict[str, object],
    field: str,
) -> None:
    """A bad PATCH body names the field; the timer stays as it was."""
    created = (
        await client.post("/timer", json={"url": URL, "hours": 5})
    ).json()
    before = (await client.get(f"/timer/{created['id']}")).json()
    reply = await client.patch(f"/timer/{created['id']}", json=body)
    problem = assert_problem(reply, 422)
    assert field in [e["field"] for e in problem["errors"]]
    after = (await client.get(f"/timer/{created['id']}")).json()
    assert after["due_at"] == before["due_at"]


async def test_reschedule_of_a_cancelled_timer_is_409(
    client: httpx.AsyncClient,
) -> None:
    """Only a pending timer moves."""
    created = (
        await client.post("/timer", json={"url": URL, "hours": 5})
    ).json()
    assert (await client.delete(f"/timer/{created['id']}")).status_code == 204
    reply = await client.patch(f"/timer/{created['id']}", json={"hours": 1})
    problem = assert_problem(reply, 409)
    assert "cancelled" in problem["detail"]


@pytest.mark.parametrize(
    "timer_id", ["0190f0e2-0000-8000-8000-000000000000", "not-a-uuid"]
)
async def test_reschedule_of_an_unknown_timer_is_404(
    client: httpx.AsyncClient, timer_id: str
) -> None:
    """Unknown or malformed id: 404."""
    assert_problem(
        await client.patch(f"/timer/{timer_id}", json={"hours": 1}), 404
    )


async def test_history_shows_each_attempt(
    client: httpx.AsyncClient, queue: ShardQueue
) -> None:
    """GET's history: at, status, error, duration_ms per attempt."""
    from tests.test_scripts import take_lease

    created = (await client.post("/timer", json={"url": URL})).json()
    timer_id = ids.parse(created["id"])
    assert timer_id is not None
    shard = queue.shard_of(timer_id)
    await take_lease(queue, shard)
    await queue.ensure_group(shard)
    peek = await queue.peek(shard, 8)
    await queue.advance(shard, "ticker-a", [b.number for b, _ in peek])
    (entry,) = await queue.read(shard, "w", 10)
    (claim,) = await queue.claim(shard, "w", [entry])
    from wheel.core.states import Outcome
    from wheel.storage.shards import Attempt

    done = Attempt(entry, claim.attempt, Outcome.RETRY, "503", 60_000, 25)
    assert (await queue.complete(shard, "w", done, 2.0)).code is Code.DONE

    view = (await client.get(f"/timer/{created['id']}")).json()
    (attempt,) = view["history"]
    assert attempt["status"] == 503
    assert attempt["error"] == "HTTP 503"
    assert attempt["duration_ms"] == 25
    assert epoch_ms(attempt["at"]) <= epoch_ms(view["next_attempt_at"])
