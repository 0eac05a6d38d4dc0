"""End to end with the real api, ticker and worker processes and a real
receiver on 127.0.0.1: at, own requests, receiver signals, reschedule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
from standardwebhooks import Webhook

from tests.support import (
    FAST_ENV,
    LOADED_LATE_S,
    RETRIES_S,
    SETTLE_S,
    Behaviour,
    Procs,
    Receiver,
    create_timer,
    wait_until,
)
from wheel.core.delays import rfc3339

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ON_TIME_S = 0.5
"""How late after its due time a webhook may arrive (as elsewhere)."""


@pytest.fixture
def procs(redis_url: str, tmp_path: Path) -> Iterator[Procs]:
    """Service processes with the fast settings, signing webhooks."""
    running = Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": redis_url,
            "WHEEL_WEBHOOK_SECRET": SECRET,
        },
        tmp_path,
    )
    yield running
    running.stop_all()


def redis_now_ms(redis_url: str) -> int:
    """Redis' clock in epoch ms."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        seconds, micros = client.time()
    finally:
        client.close()
    return int(seconds) * 1000 + int(micros) // 1000


def epoch_ms(instant: str) -> int:
    """Epoch ms of an RFC 3339 instant."""
    return round(datetime.fromisoformat(instant).timestamp() * 1000)


def view(base: str, timer_id: str) -> dict:
    """GET /timer/{id}."""
    return httpx.get(f"{base}/timer/{timer_id}").json()


def start_all(procs: Procs) -> str:
    """An API, a ticker and a worker; the API's base URL."""
    base = procs.api()
    procs.role("ticker")
    procs.role("worker")
    return base


def test_at_fires_at_the_instant_given(
    procs: Procs, receiver: Receiver, redis_url: str
) -> None:
    """A timer at an instant 2.5 s ahead fires then, not before."""
    base = start_all(procs)
    at_ms = redis_now_ms(redis_url) + 2_500
    reply = httpx.post(
        f"{base}/timer", json={"url": receiver.url, "at": rfc3339(at_ms)}
    )
    assert reply.status_code == 201, reply.text
    timer_id = reply.json()["id"]
    assert epoch_ms(view(base, timer_id)["due_at"]) == at_ms

    wait_until(
        lambda: receiver.ids()[timer_id] == 1,
        timeout_s=at_ms / 1000 - time.time() + LOADED_LATE_S,
        what="the webhook",
    )
    (arrival,) = receiver.arrivals
    assert at_ms / 1000 <= arrival.at <= at_ms / 1000 + ON_TIME_S


def test_own_put_arrives_byte_for_byte_signed_on_every_retry(
    procs: Procs, redis_url: str
) -> None:
    """A PUT with headers and a text body fails twice, then succeeds:
    each of the three attempts carries the same method, headers and
    body, byte for byte, with a signature of that body."""
    hooks = Receiver(Behaviour(fail_first=2))
    hooks.start()
    try:
        base = start_all(procs)
        body = "caf\u00e9 \u2603\nline two\n{not json}"
        request = {
            "method": "PUT",
            "headers": {
                "Authorization": "Bearer s3cret",
                "Content-Type": "text/plain; charset=utf-8",
                "X-Tenant": "acme",
            },
            "body": body,
        }
        reply = httpx.post(
            f"{base}/timer",
            json={"url": hooks.url, "seconds": 1, "request": request},
        )
        assert reply.status_code == 201, reply.text
        timer_id = reply.json()["id"]
        wait_until(
            lambda: view(base, timer_id)["status"] == "fired",
            timeout_s=1 + RETRIES_S + SETTLE_S,
            what="the third attempt to succeed",
        )
    finally:
        hooks.stop()
    arrivals = [a for a in hooks.arrivals if a.timer_id == timer_id]
    assert len(arrivals) == 3
    for arrival in arrivals:
        assert arrival.method == "PUT"
        assert arrival.body == body.encode()
        for name, value in request["headers"].items():
            assert arrival.headers[name] == value
        assert arrival.headers["Idempotency-Key"] == timer_id
        stamp = datetime.fromtimestamp(
            int(arrival.headers["webhook-timestamp"]), tz=UTC
        )
        signature = Webhook(SECRET).sign(timer_id, stamp, body)
        assert arrival.headers["webhook-signature"] == signature
    final = view(base, timer_id)
    assert final["request"] == request
    assert [a["status"] for a in final["history"]] == [500, 500, 200]


def one_timer(
    procs: Procs,
    answers: list[tuple[int, dict[str, str]]],
    status: str,
    within_s: float,
) -> tuple[str, str, Receiver]:
    """The service and a receiver giving ``answers``; one timer created
    and followed until its status is ``status`` (within ``within_s`` of
    the create). Returns the API's base url, the timer's id and the
    (stopped) receiver."""
    hooks = Receiver(Behaviour(answers=answers))
    hooks.start()
    try:
        base = start_all(procs)
        with httpx.Client(base_url=base) as client:
            timer_id = str(create_timer(client, hooks.url)["id"])
        wait_until(
            lambda: view(base, timer_id)["status"] == status,
            timeout_s=within_s,
            what=f"the timer to be {status}",
        )
    finally:
        hooks.stop()
    return base, timer_id, hooks


def test_gone_stops_after_one_attempt(procs: Procs, redis_url: str) -> None:
    """A 410 answer fails the timer at once: one attempt, no retry."""
    # Due now; the one attempt fails it at once.
    base, timer_id, hooks = one_timer(
        procs, [(410, {})] * 3, "failed", LOADED_LATE_S + SETTLE_S
    )
    assert hooks.ids()[timer_id] == 1
    final = view(base, timer_id)
    assert final["attempts"] == 1
    assert [(a["status"], a["error"]) for a in final["history"]] == [
        (410, "HTTP 410")
    ]
    assert final["last_error"] == "HTTP 410"


def test_retry_after_delays_the_next_attempt(
    procs: Procs, redis_url: str
) -> None:
    """A 503 with Retry-After: 2 puts the next attempt at least 2 s
    after it (the plain backoff here is at most 0.5 s)."""
    # Due now; the second attempt 2 s after the first.
    base, timer_id, hooks = one_timer(
        procs,
        [(503, {"Retry-After": "2"})],
        "fired",
        LOADED_LATE_S + 2 + SETTLE_S,
    )
    first, second = hooks.times(timer_id)
    assert second - first >= 2.0
    history = view(base, timer_id)["history"]
    assert [a["status"] for a in history] == [503, 200]


def test_reschedule_racing_the_firing_fires_once(
    procs: Procs, receiver: Receiver
) -> None:
    """PATCHes sent around their timers' due time: each timer fires
    exactly once, at its old time when the PATCH lost (409) or at its
    new one when it won (200), never both. The PATCHes run from before
    the due time to past the promise of firing on time, so both
    outcomes happen: a race that never raced fails."""
    base = start_all(procs)
    count = 24
    with httpx.Client(base_url=base) as client:
        timer_ids = [
            str(create_timer(client, receiver.url, seconds=2)["id"])
            for _ in range(count)
        ]
    dues = {i: epoch_ms(view(base, i)["due_at"]) for i in timer_ids}

    async def race() -> dict[str, httpx.Response]:
        async with httpx.AsyncClient(base_url=base) as client:

            async def one(n: int, timer_id: str) -> httpx.Response:
                # From 150 ms before the due time to 250 ms past the
                # promise of firing within ON_TIME_S of it.
                span_s = 0.15 + ON_TIME_S + 0.25
                wake_s = dues[timer_id] / 1000 - 0.15 + n * span_s / count
                await asyncio.sleep(max(0.0, wake_s - time.time()))
                return await client.patch(
                    f"/timer/{timer_id}", json={"seconds": 2}
                )

            replies = await asyncio.gather(
                *(one(n, i) for n, i in enumerate(timer_ids))
            )
            return dict(zip(timer_ids, replies, strict=True))

    replies = asyncio.run(race())
    assert {r.status_code for r in replies.values()} == {200, 409}
    moved = {i: r.json() for i, r in replies.items() if r.status_code == 200}
    last_due_s = (
        max([*dues.values()] + [epoch_ms(m["due_at"]) for m in moved.values()])
        / 1000
    )
    wait_until(
        lambda: set(receiver.ids()) == set(timer_ids),
        timeout_s=last_due_s - time.time() + LOADED_LATE_S,
        what="every timer to fire",
    )
    wait_until(
        lambda: all(view(base, i)["status"] == "fired" for i in timer_ids),
        timeout_s=SETTLE_S,
        what="every timer fired",
    )
    counts = receiver.ids()
    assert max(counts.values()) == 1
    for timer_id in timer_ids:
        (arrived,) = receiver.times(timer_id)
        if timer_id in moved:
            new_due_s = epoch_ms(moved[timer_id]["due_at"]) / 1000
            assert new_due_s <= arrived <= new_due_s + ON_TIME_S
        else:
            old_due_s = dues[timer_id] / 1000
            assert old_due_s <= arrived <= old_due_s + ON_TIME_S
