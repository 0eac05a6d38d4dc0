"""The schedules API in process, on a real Redis: create, read, edit,
pause, resume, delete, list; every refusal a 422 naming its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis as sync_redis

from tests.test_scripts import redis_ms
from wheel.core.delays import parse_rfc3339, rfc3339
from wheel.settings import Settings

HOOK = "http://example.com/hook"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
EVERY_2S = "*/2 * * * * *"


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """POST /schedules (every 2 s to :data:`HOOK` unless told); 201."""
    response = await client.post(
        "/schedules", json={"cron": EVERY_2S, "url": HOOK, **body}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/schedules/{created['id']}"
    return created


async def get(client: httpx.AsyncClient, schedule_id: str) -> dict[str, Any]:
    """GET /schedules/{id}; 200."""
    response = await client.get(f"/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def test_create_answers_the_next_five_and_get_shows_it(
    client: httpx.AsyncClient, raw: sync_redis.Redis
) -> None:
    """201 with the id and the next 5 occurrences (RFC 3339, in the
    schedule's zone); GET shows the definition and the state."""
    before = redis_ms(raw)
    created = await create(
        client,
        cron="30 9 * * MON-FRI",
        timezone="Europe/Amsterdam",
        misfire="skip",
        request={"method": "PUT", "headers": {"X-Kind": "daily"}},
        end_at="2099-01-01T00:00:00Z",
    )

    instants = [parse_rfc3339(text) for text in created["next"]]
    assert len(instants) == 5 and instants == sorted(set(instants))
    assert instants[0] > before
    for ms in instants:
        local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(AMSTERDAM)
        assert (local.hour, local.minute, local.weekday() < 5) == (9, 30, True)
    view = await get(client, created["id"])
    assert view == {
        "id": created["id"],
        "cron": "30 9 * * MON-FRI",
        "timezone": "Europe/Amsterdam",
        "url": HOOK,
        "request": {
            "method": "PUT",
            "headers": {"X-Kind": "daily"},
            "body": None,
        },
        "start_at": None,
        "end_at": "2099-01-01T00:00:00.000Z",
        "misfire": "skip",
        "paused": False,
        "next_at": created["next"][0],
        "last": None,
        "fired": 0,
        "failed": 0,
        "missed": 0,
    }


async def test_defaults_are_utc_once_and_the_default_webhook(
    client: httpx.AsyncClient,
) -> None:
    """Without them: timezone UTC, misfire once, no request."""
    created = await create(client)
    view = await get(client, created["id"])
    assert (view["timezone"], view["misfire"], view["request"]) == (
        "UTC",
        "once",
        None,
    )
    first, second = (parse_rfc3339(t) for t in created["next"][:2])
    assert second - first == 2000 and first % 2000 == 0


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * * *"}, "cron"),
    ({"cron": ""}, "cron"),
    ({"cron": 5}, "cron"),
    ({"cron": "0 0 30 2 *"}, "cron"),
    ({"cron": None}, "cron"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"timezone": "../etc/passwd"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    (
        {"start_at": "2031-01-02T00:00:00Z", "end_at": "2031-01-01T00:00:00Z"},
        "end_at",
    ),
    ({"end_at": "2001-01-01T00:00:00Z"}, "end_at"),
    (
        {
            "cron": "0 0 1 1 *",
            "start_at": "2031-01-02T00:00:00Z",
            "end_at": "2031-06-01T00:00:00Z",
        },
        "end_at",
    ),
    ({"start_at": "tomorrow"}, "start_at"),
    ({"end_at": "2031-01-01T00:00:00"}, "end_at"),
    ({"misfire": "twice"}, "misfire"),
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "http://10.0.0.1/hook"}, "url"),
    ({"request": {"method": "TRACE"}}, "request.method"),
    ({"request": {"headers": {"Host": "x"}}}, "request.headers.Host"),
    ({"request": "POST"}, "request"),
    ({"every": "2s"}, "every"),
]


@pytest.mark.parametrize(("change", "field"), INVALID)
async def test_each_refusal_is_a_422_naming_its_field(
    client: httpx.AsyncClient,
    raw: sync_redis.Redis,
    change: dict[str, Any],
    field: str,
) -> None:
    """A bad cron, an unknown zone, end_at before start_at, a schedule
    that never fires, ...: 422 naming the field; nothing stored."""
    body = {"cron": EVERY_2S, "url": HOOK, **change}

    response = await client.post("/schedules", json=body)

    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in problem["errors"]]
    assert raw.keys("*:s*") == []


@pytest.mark.parametrize("missing", ["cron", "url"])
async def test_cron_and_url_are_required(
    client: httpx.AsyncClient, missing: str
) -> None:
    """Either left out: 422 naming it."""
    body = {"cron": EVERY_2S, "url": HOOK}
    del body[missing]
    response = await client.post("/schedules", json=body)
    assert response.status_code == 422
    assert {"field": missing, "message": "is required"} in response.json()[
        "errors"
    ]


async def test_pause_and_resume(client: httpx.AsyncClient) -> None:
    """A pause takes the next occurrence off (next_at null); a resume
    puts the first one from now on back."""
    created = await create(client)
    schedule_id = created["id"]

    paused = await client.patch(
        f"/schedules/{schedule_id}", json={"paused": True}
    )

    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["next_at"]) == (True, None)
    resumed = await client.patch(
        f"/schedules/{schedule_id}", json={"paused": False}
    )
    view = resumed.json()
    assert view["paused"] is False
    assert parse_rfc3339(view["next_at"]) >= parse_rfc3339(created["next"][0])
    assert parse_rfc3339(view["next_at"]) % 2000 == 0


async def test_a_new_cron_or_zone_moves_the_next_occurrence(
    client: httpx.AsyncClient,
) -> None:
    """cron and timezone recompute next_at; url and request keep it."""
    created = await create(client, cron="0 12 * * *")
    schedule_id = created["id"]

    zoned = (
        await client.patch(
            f"/schedules/{schedule_id}", json={"timezone": "Asia/Tokyo"}
        )
    ).json()
    moved = (
        await client.patch(
            f"/schedules/{schedule_id}", json={"cron": "15 * * * *"}
        )
    ).json()
    kept = (
        await client.patch(
            f"/schedules/{schedule_id}",
            json={"url": HOOK + "/2", "request": {"body": "hi"}},
        )
    ).json()

    tokyo_noon = datetime.fromisoformat(zoned["next_at"]) + timedelta(hours=9)
    assert (tokyo_noon.hour, tokyo_noon.minute) == (12, 0)
    assert datetime.fromisoformat(moved["next_at"]).minute == 15
    assert kept["next_at"] == moved["next_at"]
    assert (kept["url"], kept["request"]["body"]) == (HOOK + "/2", "hi")
    assert kept["timezone"] == "Asia/Tokyo" and kept["cron"] == "15 * * * *"
    cleared = (
        await client.patch(f"/schedules/{schedule_id}", json={"request": None})
    ).json()
    assert cleared["request"] is None


PATCH_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"cron": "every day"}, "cron"),
    ({"timezone": "Nowhere/Else"}, "timezone"),
    ({"paused": "yes"}, "paused"),
    ({"start_at": "2031-01-01T00:00:00Z"}, "start_at"),
    ({"end_at": "2031-01-01T00:00:00Z"}, "end_at"),
    ({"misfire": "all"}, "misfire"),
    ({"url": "not a url"}, "url"),
    ({"url": "http://127.0.0.1/x"}, "url"),
    ({"request": {"method": "GET", "body": "x"}}, "request.body"),
    ({"colour": "blue"}, "colour"),
    ({}, "$"),
]


@pytest.mark.parametrize(("body", "field"), PATCH_INVALID)
async def test_a_bad_edit_is_a_422_naming_its_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    """An edit breaking a rule changes nothing."""
    created = await create(client)
    before = await get(client, created["id"])

    response = await client.patch(f"/schedules/{created['id']}", json=body)

    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await get(client, created["id"]) == before


async def test_an_edit_that_would_never_fire_again_is_refused(
    client: httpx.AsyncClient, raw: sync_redis.Redis
) -> None:
    """A new cron with no occurrence before end_at: 422 on end_at."""
    now_ms = redis_ms(raw)
    created = await create(client, end_at=rfc3339(now_ms + 3_600_000))
    month = datetime.fromtimestamp(now_ms / 1000, UTC).month
    # A yearly cron whose day is months away, whatever the date.
    yearly = "0 0 1 7 *" if month in (11, 12, 1) else "0 0 1 1 *"

    response = await client.patch(
        f"/schedules/{created['id']}", json={"cron": yearly}
    )

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["end_at"]


async def test_delete_answers_204_twice_then_get_is_404(
    client: httpx.AsyncClient,
) -> None:
    """DELETE is 204 (again 204), GET then 404; unknown ids are 404."""
    created = await create(client)
    path = f"/schedules/{created['id']}"

    assert (await client.delete(path)).status_code == 204
    assert (await client.delete(path)).status_code == 204
    assert (await client.get(path)).status_code == 404
    assert (await client.patch(path, json={"paused": True})).status_code == 404
    unknown = "/schedules/01a2315b-0000-8000-8000-000000000000"
    for method in ("GET", "DELETE"):
        assert (await client.request(method, unknown)).status_code == 404
    assert (await client.get("/schedules/not-a-uuid")).status_code == 404


async def test_the_listing_pages_every_schedule_once(
    client: httpx.AsyncClient,
) -> None:
    """25 schedules paged at 4 (shards visited in order): each once."""
    made = {(await create(client))["id"] for _ in range(25)}
    seen: list[str] = []
    cursor = None
    for _ in range(40):
        params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/schedules", params=params)).json()
        assert len(page["items"]) <= 4
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made)


async def test_the_listing_is_shard_by_shard_in_id_order(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """One page of everything is sorted by (shard, id)."""
    for _ in range(12):
        await create(client)
    page = (await client.get("/schedules", params={"limit": "100"})).json()
    order = [
        (int(item["id"].replace("-", ""), 16) % settings.shards, item["id"])
        for item in page["items"]
    ]
    assert order == sorted(order) and len(order) == 12
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [{"cursor": "nonsense"}, {"limit": "0"}, {"limit": "x"}, {"status": "a"}],
)
async def test_bad_listing_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    """A bad cursor, limit or unknown parameter names itself."""
    response = await client.get("/schedules", params=params)
    assert response.status_code == 422
    assert next(iter(params)) in [
        e["field"] for e in response.json()["errors"]
    ]


async def test_a_timer_listing_cursor_is_not_a_schedules_cursor(
    client: httpx.AsyncClient,
) -> None:
    """A cursor of GET /timers is refused by GET /schedules."""
    for _ in range(3):
        await client.post("/timer", json={"seconds": 60, "url": HOOK})
    timers = (await client.get("/timers", params={"limit": "1"})).json()
    response = await client.get(
        "/schedules", params={"cursor": timers["next_cursor"]}
    )
    assert response.status_code == 422
