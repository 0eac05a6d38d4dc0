"""The HTTP API: create and read timers, errors, health and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
import redis as sync_redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response

from wheel.api import app as api_app
from wheel.api.app import TimerApp
from wheel.api.response_parts import EncodedResponse
from wheel.core import ids
from wheel.core.delays import rfc3339
from wheel.embedded.server import free_port
from wheel.runtime import metrics
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import Connection, connect
from wheel.storage.keys import Keys

URL = "http://example.com/hook"
POLL_DEADLINE_S = 10.0


def http_client(app: Starlette) -> httpx.AsyncClient:
    """An HTTP client calling ``app`` in process."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    )


async def redis_now_ms(redis: sync_redis.Redis) -> int:
    """Redis' own clock in epoch ms."""
    seconds, micros = redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def epoch_ms(rfc3339: str) -> int:
    """Epoch ms of an RFC 3339 instant."""
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def assert_problem(reply: httpx.Response, status: int) -> dict:
    """``reply`` is an RFC 9457 problem with ``status``; its body."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["status"] == status
    assert isinstance(problem["title"], str)
    assert problem["title"]
    assert isinstance(problem["detail"], str)
    assert problem["detail"]
    return problem


async def test_spec_example_create(client: httpx.AsyncClient) -> None:
    """POST /timer of 4h0m1s answers 201 {id, time_left: 14401}."""
    reply = await client.post(
        "/timer", json={"hours": 4, "minutes": 0, "seconds": 1, "url": URL}
    )
    assert reply.status_code == 201, reply.text
    assert reply.headers["content-type"] == "application/json"
    created = reply.json()
    assert set(created) == {"id", "time_left"}
    assert created["time_left"] == 14401
    timer_id = uuid.UUID(created["id"])
    assert timer_id.version == 8
    assert str(timer_id) == created["id"]
    assert reply.headers["location"] == f"/timer/{created['id']}"


async def test_spec_example_read(
    client: httpx.AsyncClient, raw: sync_redis.Redis, settings: Settings
) -> None:
    """GET /timer/<id> reports the id, ceil of the time left, pending."""
    created = (
        await client.post(
            "/timer",
            json={"hours": 4, "minutes": 0, "seconds": 1, "url": URL},
        )
    ).json()
    before_ms = await redis_now_ms(raw)
    reply = await client.get(f"/timer/{created['id']}")
    after_ms = await redis_now_ms(raw)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    view = reply.json()
    assert view["id"] == created["id"]
    assert view["status"] == "pending"
    assert view["attempts"] == 0
    due_ms = epoch_ms(view["due_at"])
    keys = Keys(settings.key_prefix, settings.shards)
    timer_id = ids.parse(view["id"])
    assert timer_id is not None
    shard = keys.shard(ids.shard_of(timer_id, settings.shards))
    assert int(raw.hget(shard.timer(timer_id), "d")) == due_ms
    # The reply was computed at some Redis instant between the two reads.
    latest = math.ceil((due_ms - before_ms) / 1000)
    earliest = math.ceil((due_ms - after_ms) / 1000)
    assert earliest <= view["time_left"] <= latest
    assert view["time_left"] in (14400, 14401)


async def test_location_header_resolves(client: httpx.AsyncClient) -> None:
    """The Location of a created timer is where GET finds it."""
    reply = await client.post("/timer", json={"url": URL, "minutes": 3})
    view = await client.get(reply.headers["location"])
    assert view.status_code == 200
    assert view.json()["id"] == reply.json()["id"]
    assert view.json()["time_left"] in (179, 180)


async def test_zero_delay_timer_has_no_time_left(
    client: httpx.AsyncClient,
) -> None:
    """A timer of 0 seconds reports time_left 0 and is still pending."""
    reply = await client.post("/timer", json={"url": URL, "seconds": 0})
    assert reply.status_code == 201
    assert reply.json()["time_left"] == 0
    view = (await client.get(f"/timer/{reply.json()['id']}")).json()
    assert view["time_left"] == 0
    assert view["status"] == "pending"


async def test_time_left_reaches_zero_once_due(
    client: httpx.AsyncClient, raw: sync_redis.Redis
) -> None:
    """A 1 s timer counts down to 0, never reaching 0 before it is due."""
    created = (
        await client.post("/timer", json={"url": URL, "seconds": 1})
    ).json()
    assert created["time_left"] == 1
    seen = []
    deadline = time.monotonic() + POLL_DEADLINE_S
    while True:
        reply = await client.get(f"/timer/{created['id']}")
        after_ms = await redis_now_ms(raw)
        view = reply.json()
        assert view["status"] == "pending"
        due_ms = epoch_ms(view["due_at"])
        if after_ms < due_ms:
            assert view["time_left"] >= 1
        seen.append(view["time_left"])
        if view["time_left"] == 0:
            break
        assert time.monotonic() < deadline, f"never due: {seen}"
        await asyncio.sleep(0.05)
    assert await redis_now_ms(raw) >= due_ms
    assert seen == sorted(seen, reverse=True)
    assert set(seen) <= {0, 1}


async def test_unknown_timer_is_404(client: httpx.AsyncClient) -> None:
    """GET of a well-formed but unknown uuid is a 404 problem."""
    reply = await client.get(f"/timer/{uuid.uuid4()}")
    assert_problem(reply, 404)


@pytest.mark.parametrize(
    "bad_id",
    [
        "not-a-uuid",
        "123",
        "0000",
        "e4c5b0c4-2e6b-4b7c-9d51",
        "e4c5b0c4-2e6b-4b7c-9d51-3b1f8a2c7d9e0",
        "g4c5b0c4-2e6b-4b7c-9d51-3b1f8a2c7d9e",
        "%20",
    ],
)
async def test_malformed_id_is_404(
    client: httpx.AsyncClient, bad_id: str
) -> None:
    """GET of an id that is not a uuid is a 404 problem, not 400 or 500."""
    assert_problem(await client.get(f"/timer/{bad_id}"), 404)


async def test_unknown_path_is_404_problem(
    client: httpx.AsyncClient,
) -> None:
    """A path the API does not serve is a 404 problem."""
    assert_problem(await client.get("/timerz"), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/timer", "POST"),
        ("PUT", "/timer", "POST"),
        ("GET", "/timer", "POST"),
        ("PUT", "/timer/{id}", "GET, DELETE, PATCH"),
        ("POST", "/timer/{id}", "GET, DELETE, PATCH"),
        ("POST", "/timers", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_wrong_method_is_405(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    """A wrong method is a 405 problem that lists the allowed ones."""
    created = (await client.post("/timer", json={"url": URL})).json()
    path = path.replace("{id}", created["id"])
    reply = await client.request(method, path, json={"url": URL})
    problem = assert_problem(reply, 405)
    assert problem["title"] == "Method Not Allowed"
    for method_allowed in allowed.split(", "):
        assert method_allowed in reply.headers["allow"]


@pytest.mark.parametrize("path", ["/timer/{id}", "/schedules", "/timers"])
async def test_head_answers_as_get(
    client: httpx.AsyncClient, path: str
) -> None:
    """HEAD, which Starlette allows wherever GET is, answers as GET does
    (on a path with other methods too), without a body."""
    created = (await client.post("/timer", json={"url": URL})).json()
    path = path.replace("{id}", created["id"])
    got = await client.get(path)
    head = await client.head(path)
    assert (head.status_code, got.status_code) == (200, 200)
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.content == b""


async def test_healthz(client: httpx.AsyncClient) -> None:
    """/healthz answers 200 while the process runs."""
    reply = await client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


async def test_readyz_with_redis_up(client: httpx.AsyncClient) -> None:
    """/readyz answers 200 when Redis answers."""
    reply = await client.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready"}


async def test_readyz_stays_ready_with_replicas_missing(
    settings: Settings, connection: Connection
) -> None:
    """With WHEEL_REPLICA_ACKS=1 and no replica, /readyz is 200 and lists
    the primary as degraded (it serves; creates there answer 503 with
    their id), and the gauge counts it."""
    app = api_app.create_app(settings.replace(replica_acks=1), connection)
    await app.state.api.check_identity()
    async with http_client(app) as http:
        reply = await http.get("/readyz")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ready"
    assert body["degraded"] == [connection.primaries()[0].name]
    assert metrics.DEGRADED_PRIMARIES._value.get() == 1


@pytest.fixture
async def down_app(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Starlette]:
    """An app (owning its client) whose Redis is a closed port."""
    monkeypatch.setattr(api_app, "IDENTITY_WAIT_S", 0.2)
    closed = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = api_app.create_app(closed)
    # The lifespan closes the client the app built for itself.
    async with app.router.lifespan_context(app):
        yield app


async def test_readyz_without_redis(down_app: Starlette) -> None:
    """/readyz answers 503 when Redis is unreachable; /healthz 200."""
    async with http_client(down_app) as http:
        assert_problem(await http.get("/readyz"), 503)
        assert (await http.get("/healthz")).status_code == 200


async def test_create_and_read_without_redis_are_503(
    down_app: Starlette,
) -> None:
    """With Redis unreachable, create and read answer a 503 problem."""
    async with http_client(down_app) as http:
        created = await http.post("/timer", json={"url": URL, "seconds": 1})
        assert_problem(created, 503)
        assert_problem(await http.get(f"/timer/{uuid.uuid4()}"), 503)


async def test_two_apps_share_one_redis(settings: Settings) -> None:
    """Timers created through one API process are read through another."""
    first_redis = connect(settings, client_name("first"))
    second_redis = connect(settings, client_name("second"))
    first_app = api_app.create_app(settings, first_redis)
    second_app = api_app.create_app(settings, second_redis)
    await first_app.state.api.check_identity()
    await second_app.state.api.check_identity()
    try:
        async with (
            http_client(first_app) as first,
            http_client(second_app) as second,
        ):
            one = (await first.post("/timer", json={"url": URL})).json()
            two = (
                await second.post("/timer", json={"url": URL, "minutes": 5})
            ).json()
            seen_one = await second.get(f"/timer/{one['id']}")
            seen_two = await first.get(f"/timer/{two['id']}")
    finally:
        await first_redis.aclose()
        await second_redis.aclose()
    assert seen_one.status_code == 200
    assert seen_one.json()["id"] == one["id"]
    assert seen_one.json()["time_left"] == 0
    assert seen_two.status_code == 200
    assert seen_two.json()["id"] == two["id"]
    assert seen_two.json()["time_left"] in (299, 300)


async def test_ids_are_unique(client: httpx.AsyncClient) -> None:
    """Each create returns a fresh id."""
    ids = set()
    for _ in range(50):
        reply = await client.post("/timer", json={"url": URL, "minutes": 1})
        ids.add(reply.json()["id"])
    assert len(ids) == 50


async def test_due_at_is_rfc3339_utc_with_ms(
    client: httpx.AsyncClient,
) -> None:
    """due_at is an RFC 3339 UTC instant with milliseconds."""
    created = (await client.post("/timer", json={"url": URL})).json()
    due_at = (await client.get(f"/timer/{created['id']}")).json()["due_at"]
    assert due_at.endswith("Z")
    assert len(due_at) == len("2024-01-01T00:00:00.000Z")
    assert datetime.fromisoformat(due_at).utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("epoch_ms_value", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
        (1_700_000_000_001, "2023-11-14T22:13:20.001Z"),
    ],
)
def test_rfc3339(epoch_ms_value: int, text: str) -> None:
    """Epoch ms format as RFC 3339 UTC with exact milliseconds."""
    assert rfc3339(epoch_ms_value) == text


@contextlib.asynccontextmanager
async def unconfirmed_api(
    settings: Settings,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API that waits for one replica's ack (0.1 s), on
    a Redis without replicas: no write is ever confirmed."""
    acked = settings.replace(replica_acks=1, replica_ack_timeout=0.1)
    connection = connect(acked, client_name("acks"))
    app = api_app.create_app(acked, connection)
    await app.state.api.check_identity()
    try:
        async with http_client(app) as http:
            yield http
    finally:
        await connection.aclose()


async def test_create_answers_503_when_replicas_do_not_confirm(
    settings: Settings,
) -> None:
    """With WHEEL_REPLICA_ACKS=1 and no replica, a create answers 503 and
    says the write was not confirmed."""
    async with unconfirmed_api(settings) as http:
        reply = await http.post("/timer", json={"url": URL, "hours": 1})
    problem = assert_problem(reply, 503)
    assert "replicas" in problem["detail"]
    assert "Idempotency-Key" in problem["detail"]


async def test_a_schedule_create_not_confirmed_says_how_to_find_it(
    settings: Settings,
) -> None:
    """The same for POST /schedules: the 503 names the schedule's id and
    GET /schedules/{id}, which finds it, and warns that another POST
    makes a second schedule (no Idempotency-Key applies there)."""
    async with unconfirmed_api(settings) as http:
        reply = await http.post(
            "/schedules", json={"cron": "0 3 * * *", "url": URL}
        )
        problem = assert_problem(reply, 503)
        found = await http.get(f"/schedules/{problem['id']}")
    assert "GET /schedules/{id}" in problem["detail"]
    assert "Idempotency-Key" not in problem["detail"]
    assert found.status_code == 200


@pytest.mark.parametrize(
    ("status", "content_type", "headers"),
    [
        (200, "application/json", None),
        (201, "application/json", {"Location": "/timer/x"}),
        (503, "application/problem+json", {"Retry-After": "1", "X-A": "b"}),
    ],
)
def test_encoded_response_has_starlettes_headers(
    status: int, content_type: str, headers: dict[str, str] | None
) -> None:
    """The API's responses carry the headers Starlette's own would, in
    the same order."""
    body = b'{"id": "x", "time_left": 5}'
    ours = EncodedResponse(body, status, content_type.encode(), headers)
    theirs = Response(body, status, headers, media_type=content_type)
    assert ours.raw_headers == theirs.raw_headers
    assert ours.body == theirs.body
    assert ours.status_code == theirs.status_code
    assert ours.headers["content-type"] == content_type


@pytest.mark.parametrize("way", ["constructor", "add_middleware"])
def test_the_app_refuses_middleware(way: str) -> None:
    """``POST /timer`` and ``GET /timer/{id}`` skip the middleware stack
    (the short way in), so a middleware is refused, not silently
    skipped, whichever way it is given."""
    wrapper = Middleware(GZipMiddleware)
    with pytest.raises(TypeError, match="no middleware"):
        if way == "constructor":
            TimerApp(middleware=[wrapper])
        else:
            TimerApp().add_middleware(GZipMiddleware)
