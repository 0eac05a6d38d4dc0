"""Every rule of a ``POST /timer`` body: the parser, then the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from wheel.api import app as api_app
from wheel.api.validation import (
    MAX_URL_LENGTH,
    ORIGIN_KEPT_MAX,
    InvalidRequest,
    TimerInput,
    _url_syntax,
    check_url,
    origin_of,
    parse_timer_request,
)
from wheel.core import ids
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import connect
from wheel.storage.keys import Keys

URL = "http://example.com/hook"
YEAR_S = 365 * 86400
DELAY = "hours, minutes, seconds"
YEAR_LIMIT = f"the total delay must be at most {YEAR_S} seconds"
FOUR_BAD = b'{"hours": -1, "minutes": "x", "url": 5, "foo": 1}'


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
    ("UTF-8 BOM", b'\xef\xbb\xbf{"url": "http://a.io/"}', 400, None),
    (
        "Infinity literal",
        b'{"url": "http://a.io/", "hours": Infinity}',
        400,
        None,
    ),
    ("lone surrogate escape", b'{"url": "http://a.io/\\ud800"}', 400, None),
    (
        "nested too deeply",
        b'{"url": "http://a.io/", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        400,
        None,
    ),
    # Repeated keys make the body ambiguous: 400.
    (
        "seconds twice",
        b'{"seconds": 1, "seconds": 2, "url": "http://a.io/"}',
        400,
        None,
    ),
    ("url twice", body(url=URL)[:-1] + b', "url": "http://b.io/"}', 400, None),
    (
        "seconds twice, once escaped",
        b'{"seconds": 1, "s\\u0065conds": 2, "url": "http://a.io/"}',
        400,
        None,
    ),
    (
        "a bad part twice",
        b'{"url": "http://a.io/", "hours": "x", "hours": 1}',
        400,
        None,
    ),
    (
        "repeated key in a nested object",
        b'{"url": "http://a.io/", "minutes": {"a": 1, "a": 2}}',
        400,
        None,
    ),
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
    (
        "seconds of 5000 digits",
        b'{"url": "http://a.io/", "seconds": ' + b"9" * 5000 + b"}",
        422,
        "seconds",
    ),
    # Unknown fields: 422.
    ("typo second", timer(second=1), 422, "second"),
    ("typo Hours", timer(Hours=1), 422, "Hours"),
    ("extra id", timer(seconds=1, id="x"), 422, "id"),
    ("extra time_left", timer(time_left=5), 422, "time_left"),
    ("URL capitalised", body(URL=URL, seconds=1), 422, "URL"),
    # Several bad fields: each is listed (the table checks one of them).
    ("four bad fields", FOUR_BAD, 422, "foo"),
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
    # at: an RFC 3339 date-time with an offset, instead of the parts.
    ("at without offset", timer(at="2026-12-01T16:00:00"), 422, "at"),
    ("at offset +25:00", timer(at="2026-12-01T16:00:00+25:00"), 422, "at"),
    ("at offset +01:60", timer(at="2026-12-01T16:00:00+01:60"), 422, "at"),
    ("at offset +0100", timer(at="2026-12-01T16:00:00+0100"), 422, "at"),
    ("at a date only", timer(at="2026-12-01"), 422, "at"),
    ("at the 30th of February", timer(at="2026-02-30T00:00:00Z"), 422, "at"),
    ("at a number", timer(at=1796140800), 422, "at"),
    ("at null", timer(at=None), 422, "at"),
    ("at beyond the max delay", timer(at="2999-01-01T00:00:00Z"), 422, "at"),
    (
        "at with seconds",
        timer(at="2026-12-01T16:00:00Z", seconds=5),
        422,
        "at",
    ),
    (
        "at with hours, naming hours",
        timer(at="2026-12-01T16:00:00Z", hours=1),
        422,
        "hours",
    ),
    # request: method, headers, body.
    ("request a string", timer(request="PUT"), 422, "request"),
    (
        "request unknown method",
        timer(request={"method": "TRACE"}),
        422,
        "request.method",
    ),
    (
        "request lower-case method",
        timer(request={"method": "put"}),
        422,
        "request.method",
    ),
    (
        "request unknown field",
        timer(request={"verb": "PUT"}),
        422,
        "request.verb",
    ),
    (
        "request header Host",
        timer(request={"headers": {"Host": "a"}}),
        422,
        "request.headers.Host",
    ),
    (
        "request header Content-Length",
        timer(request={"headers": {"Content-Length": "1"}}),
        422,
        "request.headers.Content-Length",
    ),
    (
        "request header webhook-signature",
        timer(request={"headers": {"webhook-signature": "v1,x"}}),
        422,
        "request.headers.webhook-signature",
    ),
    (
        "request header Idempotency-Key",
        timer(request={"headers": {"Idempotency-Key": "k"}}),
        422,
        "request.headers.Idempotency-Key",
    ),
    (
        "request header name with a space",
        timer(request={"headers": {"X A": "1"}}),
        422,
        "request.headers.X A",
    ),
    (
        "request header value with CRLF",
        timer(request={"headers": {"X-A": "1\r\nX-B: 2"}}),
        422,
        "request.headers.X-A",
    ),
    ("request body a number", timer(request={"body": 5}), 422, "request.body"),
    (
        "request body over 32 KiB",
        timer(request={"body": "x" * (32 * 1024 + 1)}),
        422,
        "request.body",
    ),
    (
        "request body with GET",
        timer(request={"method": "GET", "body": "x"}),
        422,
        "request.body",
    ),
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


async def timer_keys(raw: Redis) -> list[bytes]:
    """Every key of a shard (the deployment's meta keys aside)."""
    return sorted(k for k in await raw.keys("*") if k.startswith(b"{"))


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


async def test_streamed_body_in_chunks_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    """A valid body sent in several chunks is read whole."""
    payload = timer(seconds=5)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 7):
            yield payload[start : start + 7]

    reply = await client.post("/timer", content=chunks())
    assert reply.status_code == 201, reply.text
    assert reply.json()["time_left"] == 5


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
    assert await timer_keys(raw) == []


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
    ("public ipv4 host", body(url="http://192.0.43.8:9/h", seconds=1), 1),
    (
        "public ipv6 host",
        body(url="http://[2606:4700::1]:8080/h", seconds=1),
        1,
    ),
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
    raw: Redis,
    raw_body: bytes,
    time_left: int,
) -> None:
    """A valid body creates exactly one timer with the full delay."""
    reply = await client.post("/timer", content=raw_body)
    assert reply.status_code == 201, reply.text
    assert reply.json()["time_left"] == time_left
    timer_id = ids.from_uuid(uuid.UUID(reply.json()["id"]))
    shard = Keys(settings.key_prefix, settings.shards).shard(
        ids.shard_of(timer_id, settings.shards)
    )
    assert await raw.keys("*:t:*") == [shard.timer(timer_id)]
    record = await raw.hgetall(shard.timer(timer_id))
    assert record[b"u"].decode() == json.loads(raw_body)["url"]


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
    raw: Redis,
    parts: dict[str, int],
    status: int,
) -> None:
    """With max_delay 90 s a 90 s timer is fine and 91 s is refused."""
    small = settings.replace(max_delay=90)
    connection = connect(small, client_name("test"))
    app = api_app.create_app(small, connection)
    await app.state.api.check_identity()
    await raw.flushall()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test"
    ) as http:
        reply = await http.post("/timer", content=timer(**parts))
    await connection.aclose()
    assert reply.status_code == status, reply.text
    if status == 201:
        assert reply.json()["time_left"] == 90
    else:
        assert reply.json()["errors"][0]["field"] == DELAY
        assert "90" in reply.json()["errors"][0]["message"]
        assert await timer_keys(raw) == []


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
    ("url", "origin"),
    [
        ("http://a.io/x?y#z", "http://a.io"),
        ("http://a.io?y", "http://a.io"),
        ("http://a.io#z", "http://a.io"),
        ("https://u:p@a.io:8443/x", "https://u:p@a.io:8443"),
        # urlsplit keeps a backslash in the authority: so does the origin.
        ("http://a.io\\@127.0.0.1/x", "http://a.io\\@127.0.0.1"),
        ("http://[::1]:80/x", "http://[::1]:80"),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ("relative/path", "relative/path"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    """The origin is the url up to the end of its authority."""
    assert origin_of(url) == origin


def test_check_url_remembers_origins_not_paths() -> None:
    """A verdict is kept per origin, but the whole url is still checked:
    a bad character after an accepted origin, or another port, is
    refused."""
    assert check_url("http://remembered.io/ok") is None
    assert check_url("http://remembered.io/b c") is not None
    assert check_url("http://remembered.io/\x1b") is not None
    assert check_url("http://remembered.io:0/ok") is not None
    assert check_url("http://remembered.io:x/ok") is not None
    assert check_url("http://remembered.io/again") is None


def test_long_origins_are_judged_but_not_remembered() -> None:
    """An origin past ORIGIN_KEPT_MAX is judged each time and kept out
    of the cache, so made-up long hosts cannot fill it."""
    long_host = "a" * ORIGIN_KEPT_MAX + ".io"
    cached = len(_url_syntax)

    assert check_url(f"http://{long_host}/x") is None
    assert check_url(f"http://{long_host}:0/x") == "must not use port 0"
    assert check_url(f"ftp://{long_host}/x") is not None

    assert len(_url_syntax) == cached
    assert check_url("http://short-origin.io/x") is None
    assert len(_url_syntax) == cached + 1


async def test_every_bad_field_is_listed_in_body_order(
    client: httpx.AsyncClient, raw: Redis
) -> None:
    """Four bad fields give four errors, in body order, and no timer."""
    reply = await client.post("/timer", content=FOUR_BAD)
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    fields = [error["field"] for error in problem["errors"]]
    assert fields == ["hours", "minutes", "url", "foo"]
    for field in fields:
        assert f"`{field}`" in problem["detail"]
    assert await timer_keys(raw) == []


@pytest.mark.usefixtures("seeded")
async def test_repeated_key_is_a_400_naming_it(
    client: httpx.AsyncClient, raw: Redis
) -> None:
    """A body repeating "seconds" is a 400 naming it and stores nothing."""
    before = await snapshot(raw)
    reply = await client.post(
        "/timer",
        content=b'{"seconds": 1, "seconds": 2, "url": "http://a.io/"}',
    )
    assert reply.status_code == 400, reply.text
    assert "`seconds`" in reply.json()["detail"]
    assert await snapshot(raw) == before


# The parser on its own: no Redis, no HTTP.


def refusal(raw_body: bytes, max_delay_s: int = YEAR_S) -> InvalidRequest:
    """What ``parse_timer_request`` raises for ``raw_body``."""
    with pytest.raises(InvalidRequest) as caught:
        parse_timer_request(raw_body, max_delay_s)
    return caught.value


@pytest.mark.parametrize(
    ("raw_body", "status", "field"),
    [
        pytest.param(*case[1:], id=case[0])
        for case in BAD_BODIES
        if case[2] != 413
    ],
)
def test_parser_refuses_bad_body(
    raw_body: bytes, status: int, field: str | None
) -> None:
    """parse_timer_request refuses each bad body with its status and field."""
    refused = refusal(raw_body)
    assert refused.status == status
    assert refused.title
    assert refused.detail
    fields = [error.field for error in refused.errors]
    if status == 422:
        assert field in fields
        assert all(error.message for error in refused.errors)
    else:
        assert fields == []


@pytest.mark.parametrize(
    ("raw_body", "time_left"),
    [pytest.param(*case[1:], id=case[0]) for case in GOOD_BODIES],
)
def test_parser_accepts_good_body(raw_body: bytes, time_left: int) -> None:
    """parse_timer_request returns the url and the delay in ms."""
    parsed = parse_timer_request(raw_body, YEAR_S)
    assert parsed.url == json.loads(raw_body)["url"]
    assert parsed.delay_ms == time_left * 1000


@pytest.mark.parametrize(
    "raw_body",
    [
        pytest.param(case[1], id=case[0])
        for case in GOOD_BODIES
        if b"\\" not in case[1]
    ],
)
def test_escaped_body_parses_the_same(raw_body: bytes) -> None:
    """A good body with "\\/" escapes (the slow path) parses the same."""
    escaped = raw_body.replace(b"/", b"\\/")
    assert b"\\" in escaped
    assert parse_timer_request(escaped, YEAR_S) == parse_timer_request(
        raw_body, YEAR_S
    )


def test_parser_returns_every_part() -> None:
    """The spec's example body parses to its parts and 14401 s in ms."""
    raw_body = b'{"hours": 4, "minutes": 0, "seconds": 1, "url": "%s"}' % (
        URL.encode()
    )
    assert parse_timer_request(raw_body, YEAR_S) == TimerInput(
        URL, 4, 0, 1, 14_401_000
    )


def test_missing_parts_count_as_zero() -> None:
    """A body with only minutes has 0 hours and 0 seconds."""
    assert parse_timer_request(timer(minutes=2), YEAR_S) == TimerInput(
        URL, 0, 2, 0, 120_000
    )


def test_four_bad_fields_are_all_explained() -> None:
    """Each of four bad fields has its own error and clause in the detail."""
    refused = refusal(FOUR_BAD)
    assert refused.status == 422
    assert [(e.field, e.message) for e in refused.errors] == [
        ("hours", "must be a non-negative integer, not a negative number"),
        ("minutes", "must be a non-negative integer, not a string"),
        ("url", "must be a string, not an integer"),
        ("foo", "is not a known field"),
    ]
    assert refused.detail == "; ".join(
        f"`{e.field}` {e.message}" for e in refused.errors
    )


def test_bad_url_and_total_are_both_listed() -> None:
    """A bad url and a too long delay are two errors, url first."""
    refused = refusal(body(url="ftp://x", hours=9000))
    assert [e.field for e in refused.errors] == ["url", DELAY]
    assert refused.errors[1].message == YEAR_LIMIT
    assert refused.detail.endswith(YEAR_LIMIT)


@pytest.mark.parametrize(
    ("raw_body", "field"),
    [
        (timer(hours=10**30), "hours"),
        (timer(seconds=2**64), "seconds"),
        (timer(minutes=10**12 + 1), "minutes"),
        (b'{"url": "http://a.io/", "seconds": %s}' % (b"9" * 5000), "seconds"),
        (timer(hours=8761), DELAY),
        (timer(seconds=YEAR_S + 1), DELAY),
        (timer(hours=10**12, minutes=10**12, seconds=10**12), DELAY),
    ],
)
def test_too_long_names_the_real_limit(raw_body: bytes, field: str) -> None:
    """Any part or total past the bound cites max_delay, no inner bound."""
    refused = refusal(raw_body)
    assert [e.field for e in refused.errors] == [field]
    assert refused.errors[0].message.endswith(YEAR_LIMIT)
    assert "1000000000000" not in refused.detail
    assert "<=" not in refused.detail


def test_limit_follows_max_delay() -> None:
    """With max_delay 90 s the message names 90 seconds."""
    refused = refusal(timer(seconds=91), max_delay_s=90)
    assert refused.errors[0].message == (
        "the total delay must be at most 90 seconds"
    )
    assert parse_timer_request(timer(seconds=90), 90).delay_ms == 90_000


@pytest.mark.parametrize(
    ("raw_body", "keys"),
    [
        (b'{"seconds": 1, "seconds": 2, "url": "http://a.io/"}', "`seconds`"),
        (b'{"url": "http://a.io/", "url": "http://b.io/"}', "`url`"),
        (
            b'{"seconds": 1, "s\\u0065conds": 1, "url": "http://a.io/"}',
            "`seconds`",
        ),
        (
            b'{"url": "http://a.io/", "url": "x", "hours": 1, "hours": 1}',
            "keys `url`, `hours`",
        ),
        (b'{"url": "http://a.io/", "x": [{"a": 1, "a": 2}]}', "`a`"),
    ],
)
def test_repeated_key_is_named(raw_body: bytes, keys: str) -> None:
    """A repeated key, at any depth and however spelt, is a 400 naming it."""
    refused = refusal(raw_body)
    assert refused.status == 400
    assert refused.detail == f"the body repeats the {keys}".replace(
        "the `", "the key `"
    )


def test_syntax_error_beats_repeated_key() -> None:
    """Broken JSON is reported as such even if it also repeats a key."""
    refused = refusal(b'{"seconds": 1, "seconds": 2, "url": "http://a.io/"} x')
    assert refused.detail.startswith("the body is not valid JSON: ")


@pytest.mark.parametrize(
    ("raw_body", "start"),
    [
        (b"\xff\xfe\xfd", "the body is not valid UTF-8: "),
        (b'{"url": "http://a.io/\xff"}', "the body is not valid UTF-8: "),
        (b'{"url": "http://a.io/\\udc00"}', "the body is not valid UTF-8: "),
        (b"", "the body is not valid JSON: "),
        (
            b'{"url": "http://a.io/", "seconds": NaN}',
            "the body is not valid JSON: ",
        ),
        (timer(seconds=1) + b" x", "the body is not valid JSON: "),
    ],
)
def test_bad_request_says_why(raw_body: bytes, start: str) -> None:
    """A 400's detail says whether the UTF-8 or the JSON is at fault."""
    refused = refusal(raw_body)
    assert refused.status == 400
    assert refused.title == "Bad Request"
    assert refused.detail.startswith(start)


@pytest.mark.parametrize(
    ("raw_body", "message"),
    [
        (b"[]", "must be a JSON object, not an array"),
        (b'"x"', "must be a JSON object, not a string"),
        (b"null", "must be a JSON object, not null"),
        (
            b"1.5",
            "must be a JSON object, not a number with a fraction or an "
            "exponent",
        ),
    ],
)
def test_non_object_is_field_dollar(raw_body: bytes, message: str) -> None:
    """JSON that is not an object is a 422 on the field "$"."""
    refused = refusal(raw_body)
    assert refused.status == 422
    assert [(e.field, e.message) for e in refused.errors] == [("$", message)]
    assert refused.detail == f"the body {message}"


def test_url_missing_is_required() -> None:
    """A body without a url says the url is required."""
    refused = refusal(body(seconds=1))
    assert [(e.field, e.message) for e in refused.errors] == [
        ("url", "is required")
    ]


def test_detail_stays_short_when_errors_are_many() -> None:
    """500 unknown fields are all in errors; the detail shows ten."""
    raw_body = body(url=URL, **{f"x{i}": 1 for i in range(500)})
    refused = refusal(raw_body)
    assert len(refused.errors) == 500
    assert refused.detail.endswith("; and 490 more")
    assert refused.detail.count("is not a known field") == 10
