"""Every rule of a ``POST /timer`` body, table-driven, through the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

import api
from wheel.keys import Keys
from wheel.models import TimerRequest
from wheel.settings import Settings
from wheel.validation import MAX_URL_LENGTH, check_request, check_url
from wheel.wheelmath import shard_of

URL = "http://example.com/hook"
YEAR_S = 365 * 86400
DELAY = "hours, minutes, seconds"


def body(**fields: Any) -> bytes:
    """A JSON object body with ``fields``."""
    return json.dumps(fields).encode()


def timer(**parts: Any) -> bytes:
    """A JSON timer body with the default url and ``parts``."""
    return body(url=URL, **parts)


def url_of_length(length: int) -> str:
    """A valid http URL exactly ``length`` characters long."""
    prefix = "http://example.com/"
    return prefix + "a" * (length - len(prefix))


# (case id, raw body, status, field named in "errors" or None)
BAD_BODIES: list[tuple[str, bytes, int, str | None]] = [
    # Not JSON at all: 400.
    ("empty body", b"", 400, None),
    ("only whitespace", b"  \n ", 400, None),
    ("truncated object", b'{"url": "http://example.com/hook"', 400, None),
    ("open brace", b"{", 400, None),
    ("single quotes", b"{'url': 'http://example.com/hook'}", 400, None),
    ("trailing garbage", timer(seconds=1) + b" x", 400, None),
    ("two objects", timer(seconds=1) + timer(seconds=1), 400, None),
    ("form encoded", b"url=http%3A%2F%2Fexample.com&seconds=1", 400, None),
    ("NaN literal", b'{"url": "http://a.io/", "seconds": NaN}', 400, None),
    ("leading zero", b'{"url": "http://a.io/", "seconds": 01}', 400, None),
    ("plus sign", b'{"url": "http://a.io/", "seconds": +1}', 400, None),
    ("non-UTF-8 bytes", b"\xff\xfe\xfd", 400, None),
    ("non-UTF-8 in string", b'{"url": "http://a.io/\xff"}', 400, None),
    ("latin-1 body", b'{"url": "http://a.io/caf\xe9"}', 400, None),
    ("UTF-16 body", json.dumps({"url": URL}).encode("utf-16"), 400, None),
    # Well-formed JSON that is not an object: 422.
    ("array", b"[]", 422, "$"),
    ("array of object", json.dumps([{"url": URL}]).encode(), 422, "$"),
    ("string", b'"http://example.com/hook"', 422, "$"),
    ("number", b"5", 422, "$"),
    ("float number", b"1.5", 422, "$"),
    ("null", b"null", 422, "$"),
    ("true", b"true", 422, "$"),
    # Parts that are not non-negative JSON integers: 422.
    ("hours true", timer(hours=True), 422, "hours"),
    ("minutes false", timer(minutes=False), 422, "minutes"),
    ("seconds float 1.0", timer(seconds=1.0), 422, "seconds"),
    ("hours float 1.0", timer(hours=1.0), 422, "hours"),
    ("minutes fraction", timer(minutes=1.5), 422, "minutes"),
    (
        "seconds exponent",
        b'{"url": "http://a.io/", "seconds": 1e3}',
        422,
        "seconds",
    ),
    ("hours string", timer(hours="1"), 422, "hours"),
    ("seconds string", timer(seconds="10"), 422, "seconds"),
    ("minutes empty string", timer(minutes=""), 422, "minutes"),
    ("hours null", timer(hours=None), 422, "hours"),
    ("seconds null", timer(seconds=None), 422, "seconds"),
    ("seconds array", timer(seconds=[1]), 422, "seconds"),
    ("minutes object", timer(minutes={"value": 1}), 422, "minutes"),
    ("hours negative", timer(hours=-1), 422, "hours"),
    (
        "negative hours, positive total",
        timer(hours=-1, minutes=120),
        422,
        "hours",
    ),
    (
        "negative minutes, positive total",
        timer(hours=1, minutes=-1),
        422,
        "minutes",
    ),
    (
        "negative seconds, positive total",
        timer(minutes=1, seconds=-30),
        422,
        "seconds",
    ),
    ("hours 1e30 integer literal", timer(hours=10**30), 422, "hours"),
    ("seconds past uint64", timer(seconds=2**64), 422, "seconds"),
    ("minutes huge negative", timer(minutes=-(2**70)), 422, "minutes"),
    ("minutes past the part bound", timer(minutes=10**12 + 1), 422, "minutes"),
    # Unknown fields: 422.
    ("typo second", timer(second=1), 422, "second"),
    ("typo Hours", timer(Hours=1), 422, "Hours"),
    ("extra id", timer(seconds=1, id="x"), 422, "id"),
    ("extra time_left", timer(time_left=5), 422, "time_left"),
    ("URL capitalised", body(URL=URL, seconds=1), 422, "URL"),
    # The total delay above the default bound of 365 days: 422.
    ("a year and a second", timer(seconds=YEAR_S + 1), 422, DELAY),
    ("8761 hours", timer(hours=8761), 422, DELAY),
    (
        "year spread over parts",
        timer(hours=8760, minutes=0, seconds=1),
        422,
        DELAY,
    ),
    (
        "every part at its bound",
        timer(hours=10**12, minutes=10**12, seconds=10**12),
        422,
        DELAY,
    ),
    # The url: 422.
    ("url missing", body(seconds=1), 422, "url"),
    ("url null", body(url=None, seconds=1), 422, "url"),
    ("url number", body(url=42, seconds=1), 422, "url"),
    ("url array", body(url=[URL], seconds=1), 422, "url"),
    ("url object", body(url={"href": URL}), 422, "url"),
    ("url empty", body(url="", seconds=1), 422, "url"),
    ("url ftp", body(url="ftp://example.com/hook"), 422, "url"),
    ("url javascript", body(url="javascript:alert(1)"), 422, "url"),
    ("url file", body(url="file:///etc/passwd"), 422, "url"),
    ("url mailto", body(url="mailto:ops@example.com"), 422, "url"),
    ("url relative path", body(url="/hook"), 422, "url"),
    ("url scheme-relative", body(url="//example.com/hook"), 422, "url"),
    ("url without scheme", body(url="example.com/hook"), 422, "url"),
    ("url http only", body(url="http://"), 422, "url"),
    ("url https only", body(url="https://"), 422, "url"),
    ("url no host", body(url="http:///hook"), 422, "url"),
    ("url userinfo no host", body(url="http://user@:80/"), 422, "url"),
    ("url bad port", body(url="http://example.com:99999/"), 422, "url"),
    ("url port zero", body(url="http://example.com:0/"), 422, "url"),
    ("url broken ipv6", body(url="http://[::1/hook"), 422, "url"),
    ("url space in host", body(url="http://exa mple.com/"), 422, "url"),
    ("url space in path", body(url="http://example.com/a b"), 422, "url"),
    ("url leading space", body(url=" " + URL), 422, "url"),
    ("url trailing newline", body(url=URL + "\n"), 422, "url"),
    ("url tab", body(url="http://example.com/\thook"), 422, "url"),
    ("url NUL", body(url="http://example.com/\x00"), 422, "url"),
    ("url DEL", body(url="http://example.com/\x7f"), 422, "url"),
    ("url C1 control", body(url="http://example.com/\x9b31m"), 422, "url"),
    ("url no-break space", body(url="http://example.com/\xa0"), 422, "url"),
    ("url line separator", body(url="http://example.com/\u2028"), 422, "url"),
    ("url 2049 chars", body(url=url_of_length(2049)), 422, "url"),
    ("url far too long", body(url=url_of_length(60_000)), 422, "url"),
    # Over 64 KiB: 413.
    ("body over 64 KiB", body(url=url_of_length(70_000)), 413, None),
    ("body 64 KiB + 1", b" " * (64 * 1024 - 1) + b"{}", 413, None),
]


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A byte-level client of the test Redis, for snapshots."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def snapshot(raw: Redis) -> tuple[int, dict[bytes, bytes]]:
    """DBSIZE and every key with its serialised value."""
    keys = sorted(await raw.keys("*"))
    return await raw.dbsize(), {key: await raw.dump(key) for key in keys}


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> None:
    """One delayed and one due timer, so Redis is not empty."""
    for seconds in (600, 0):
        reply = await client.post("/timer", content=timer(seconds=seconds))
        assert reply.status_code == 201


def test_table_has_enough_distinct_bodies() -> None:
    """The table holds at least 40 distinct bad bodies and unique ids."""
    assert len({case[1] for case in BAD_BODIES}) >= 40
    assert len({case[0] for case in BAD_BODIES}) == len(BAD_BODIES)


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(
    ("raw_body", "status", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_BODIES],
)
async def test_bad_body_is_rejected_and_stores_nothing(
    client: httpx.AsyncClient,
    raw: Redis,
    raw_body: bytes,
    status: int,
    field: str | None,
) -> None:
    """A bad body gets its 4xx problem and leaves Redis as it was."""
    before = await snapshot(raw)
    reply = await client.post(
        "/timer",
        content=raw_body,
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    assert "location" not in reply.headers
    if status == 422:
        assert problem["errors"]
        for error in problem["errors"]:
            assert set(error) == {"field", "message"}
            assert error["message"]
        assert field in [error["field"] for error in problem["errors"]]
    assert await snapshot(raw) == before


@pytest.mark.usefixtures("seeded")
async def test_streamed_body_over_64_kib_is_rejected(
    client: httpx.AsyncClient, raw: Redis
) -> None:
    """A chunked body past 64 KiB without Content-Length gets 413."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"url": "http://example.com/'
        for _ in range(20):
            yield b"a" * 4096
        yield b'"}'

    before = await snapshot(raw)
    reply = await client.post("/timer", content=chunks())
    assert reply.status_code == 413
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["status"] == 413
    assert await snapshot(raw) == before


async def test_body_of_exactly_64_kib_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    """A valid body of exactly 64 KiB is within the limit."""
    payload = timer(seconds=5)
    padded = b" " * (64 * 1024 - len(payload)) + payload
    assert len(padded) == 64 * 1024
    reply = await client.post("/timer", content=padded)
    assert reply.status_code == 201, reply.text


async def test_several_bad_fields_are_all_named(
    client: httpx.AsyncClient, raw: Redis
) -> None:
    """A bad url and a too long delay are reported together."""
    reply = await client.post(
        "/timer", content=body(url="ftp://x", hours=9000)
    )
    assert reply.status_code == 422
    fields = [error["field"] for error in reply.json()["errors"]]
    assert fields == ["url", DELAY]
    assert await raw.dbsize() == 0


# (case id, body, expected time_left)
GOOD_BODIES: list[tuple[str, bytes, int]] = [
    ("url only: every part 0", body(url=URL), 0),
    ("explicit zeros", timer(hours=0, minutes=0, seconds=0), 0),
    ("seconds only", timer(seconds=5), 5),
    ("minutes only", timer(minutes=2), 120),
    ("hours only", timer(hours=1), 3600),
    ("all parts", timer(hours=1, minutes=2, seconds=3), 3723),
    ("parts above 59", timer(minutes=90, seconds=90), 5490),
    ("exactly 365 days", timer(hours=8760), YEAR_S),
    ("365 days in seconds", timer(seconds=YEAR_S), YEAR_S),
    ("https", body(url="https://example.com/hook", seconds=1), 1),
    ("upper-case scheme", body(url="HTTPS://Example.COM/h", seconds=1), 1),
    (
        "port query fragment",
        body(url="http://example.com:8080/h?a=1&b=2#f", seconds=1),
        1,
    ),
    ("ipv4 host", body(url="http://127.0.0.1:9/h", seconds=1), 1),
    ("ipv6 host", body(url="http://[::1]:8080/h", seconds=1), 1),
    ("userinfo", body(url="https://u:p@example.com/h", seconds=1), 1),
    ("url of 2048 chars", body(url=url_of_length(2048), seconds=1), 1),
    ("fields in any order", b'{"seconds": 1, "url": "http://a.io/"}', 1),
    ("surrounding whitespace", b'\n {"url": "http://a.io/"} \n', 0),
    ("escaped slash", b'{"url": "http:\\/\\/a.io\\/h", "seconds": 1}', 1),
    ("unicode path", body(url="http://example.com/caf\u00e9", seconds=1), 1),
]


@pytest.mark.parametrize(
    ("raw_body", "time_left"),
    [pytest.param(*case[1:], id=case[0]) for case in GOOD_BODIES],
)
async def test_good_body_is_accepted(
    client: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
    raw_body: bytes,
    time_left: int,
) -> None:
    """A valid body creates exactly one timer with the full delay."""
    reply = await client.post("/timer", content=raw_body)
    assert reply.status_code == 201, reply.text
    assert reply.json()["time_left"] == time_left
    timer_id = uuid.UUID(reply.json()["id"])
    shard = Keys(settings.key_prefix, settings.shards).shard(
        shard_of(timer_id, settings.shards)
    )
    assert await redis.keys("*:t:*") == [shard.timer(str(timer_id))]
    record = await redis.hgetall(shard.timer(str(timer_id)))
    assert record["url"] == json.loads(raw_body)["url"]


@pytest.mark.parametrize(
    ("parts", "status"),
    [
        ({"seconds": 90}, 201),
        ({"minutes": 1, "seconds": 30}, 201),
        ({"seconds": 91}, 422),
        ({"minutes": 1, "seconds": 31}, 422),
        ({"minutes": 2}, 422),
        ({"hours": 1}, 422),
    ],
)
async def test_small_max_delay_bound_is_inclusive(
    settings: Settings,
    redis: Redis,
    raw: Redis,
    parts: dict[str, int],
    status: int,
) -> None:
    """With max_delay 90 s a 90 s timer is fine and 91 s is refused."""
    app = api.create_app(settings.replace(max_delay=90), redis)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test"
    ) as http:
        reply = await http.post("/timer", content=timer(**parts))
    assert reply.status_code == status, reply.text
    if status == 201:
        assert reply.json()["time_left"] == 90
    else:
        assert reply.json()["errors"][0]["field"] == DELAY
        assert "90" in reply.json()["errors"][0]["message"]
        assert await raw.dbsize() == 0


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        (URL, True),
        ("https://a.io", True),
        ("http://localhost:8000/x?y=1", True),
        (url_of_length(MAX_URL_LENGTH), True),
        (url_of_length(MAX_URL_LENGTH + 1), False),
        ("", False),
        ("http://", False),
        ("ftp://a.io/", False),
        ("javascript:alert(1)", False),
        ("relative/path", False),
        ("http://a.io/\x85", False),
        ("http://a.io/\x9f", False),
        ("http://a.io/\x1b[31m", False),
    ],
)
def test_check_url(url: str, ok: bool) -> None:
    """check_url accepts absolute http(s) URLs with a host, only."""
    reason = check_url(url)
    assert (reason is None) is ok
    if not ok:
        assert isinstance(reason, str)
        assert reason


@pytest.mark.parametrize(
    ("parts", "max_delay_s", "delay_ms", "ok"),
    [
        ({}, 10, 0, True),
        ({"seconds": 10}, 10, 10_000, True),
        ({"seconds": 11}, 10, 11_000, False),
        ({"minutes": 1}, 60, 60_000, True),
        ({"minutes": 1, "seconds": 1}, 60, 61_000, False),
        ({"hours": 8760}, YEAR_S, YEAR_S * 1000, True),
        ({"hours": 8760, "seconds": 1}, YEAR_S, (YEAR_S + 1) * 1000, False),
    ],
)
def test_check_request_bounds_the_total(
    parts: dict[str, int], max_delay_s: int, delay_ms: int, ok: bool
) -> None:
    """check_request returns the delay in ms and refuses past the bound."""
    total_ms, errors = check_request(
        TimerRequest(url=URL, **parts), max_delay_s
    )
    assert total_ms == delay_ms
    assert (errors == []) is ok
