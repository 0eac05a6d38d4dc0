"""Safe to expose: API tokens, idempotent create, cancel, the SSRF guard
at create and at connect, signed webhooks, malformed requests.

Traffic goes only to 127.0.0.1 servers the tests start. Guard cases for
other addresses judge the create-time answer only: no worker runs, and
their delays are hours, so nothing could fire during a test.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import standardwebhooks

from tests.support import (
    FAST_ENV,
    LOADED_LATE_S,
    RETRIES_S,
    SETTLE_S,
    Behaviour,
    Procs,
    Receiver,
    inspector,
    wait_until,
)
from tests.test_e2e import settled, status
from wheel.api import app as api_app
from wheel.settings import Settings
from wheel.storage.connection import Connection

URL = "https://hooks.example.com/timer"
SECRET_A = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwEa2wfWAjAXAs"
SECRET_B = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="


async def app_client(
    settings: Settings, connection: Connection
) -> httpx.AsyncClient:
    """An in-process client of an API with ``settings``."""
    app = api_app.create_app(settings, connection)
    await app.state.api.check_identity()
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    )


@pytest.fixture
async def guarded(
    settings: Settings, connection: Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with two tokens and the guard on (the defaults)."""
    with_tokens = settings.replace(api_tokens="tok-one, tok-two")
    async with await app_client(with_tokens, connection) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


# -- tokens ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic dG9rLW9uZTo="}, 401),
        ({"Authorization": "Bearer tok-on"}, 401),
        ({"Authorization": "Bearer tok-one2"}, 401),
        (bearer("tok-one"), 201),
        (bearer("tok-two"), 201),
        ({"Authorization": "bearer tok-two"}, 201),
    ],
)
async def test_timer_endpoints_need_a_valid_token(
    guarded: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    """No, a malformed or a wrong token is a 401 problem naming Bearer;
    each configured token works."""
    reply = await guarded.post(
        "/timer", json={"url": URL, "hours": 1}, headers=headers
    )
    assert reply.status_code == status, reply.text
    if status == 401:
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert reply.json()["status"] == 401


async def test_every_timer_route_is_guarded(
    guarded: httpx.AsyncClient,
) -> None:
    """GET and DELETE need the token too; health, readiness and metrics
    stay open."""
    created = await guarded.post(
        "/timer", json={"url": URL, "hours": 1}, headers=bearer("tok-one")
    )
    path = f"/timer/{created.json()['id']}"
    assert (await guarded.get(path)).status_code == 401
    assert (await guarded.delete(path)).status_code == 401
    assert (await guarded.get(path, headers=bearer("tok-two"))).is_success
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert (await guarded.get(open_path)).status_code == 200, open_path


# -- idempotency -----------------------------------------------------------


async def test_repeat_with_the_same_key_returns_the_same_timer(
    client: httpx.AsyncClient,
) -> None:
    """Same key and body: 200 with the same id and a recomputed time_left."""
    body = {"url": URL, "minutes": 10}
    headers = {"Idempotency-Key": '"order-42"'}
    first = await client.post("/timer", json=body, headers=headers)
    again = await client.post(
        "/timer", json=body, headers={"Idempotency-Key": "order-42"}
    )
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["time_left"] <= first.json()["time_left"]
    other = await client.post(
        "/timer", json=body, headers={"Idempotency-Key": "order-43"}
    )
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


async def test_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Same key, different body: 422, and no second timer."""
    headers = {"Idempotency-Key": "k-1"}
    first = await client.post(
        "/timer", json={"url": URL, "minutes": 10}, headers=headers
    )
    changed = await client.post(
        "/timer", json={"url": URL, "minutes": 11}, headers=headers
    )
    assert changed.status_code == 422
    assert changed.headers["content-type"] == "application/problem+json"
    assert first.json()["id"] in changed.json()["detail"]


@pytest.mark.parametrize(
    "key", ["", '""', "x" * 256, "tab\there", "new\nline"]
)
async def test_malformed_idempotency_key_is_400(
    client: httpx.AsyncClient, key: str
) -> None:
    """An empty, over-long or unprintable key is a 400 problem."""
    reply = await client.post(
        "/timer",
        json={"url": URL, "minutes": 1},
        headers={"Idempotency-Key": key},
    )
    assert reply.status_code == 400, reply.text


async def test_concurrent_requests_with_one_key_create_one_timer(
    client: httpx.AsyncClient,
) -> None:
    """20 concurrent creates with one key: one 201, nineteen 200, one id."""
    replies = await asyncio.gather(
        *(
            client.post(
                "/timer",
                json={"url": URL, "hours": 2},
                headers={"Idempotency-Key": "burst"},
            )
            for _ in range(20)
        )
    )
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] * 19 + [201]
    assert len({r.json()["id"] for r in replies}) == 1


async def test_keys_are_scoped_per_token(guarded: httpx.AsyncClient) -> None:
    """The same key under two tokens makes two timers."""
    body = {"url": URL, "hours": 3}
    one = await guarded.post(
        "/timer",
        json=body,
        headers={**bearer("tok-one"), "Idempotency-Key": "shared"},
    )
    two = await guarded.post(
        "/timer",
        json=body,
        headers={**bearer("tok-two"), "Idempotency-Key": "shared"},
    )
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["id"] != two.json()["id"]


# -- cancel ----------------------------------------------------------------


async def test_cancel_a_pending_timer(client: httpx.AsyncClient) -> None:
    """DELETE: 204, then GET shows cancelled with time_left 0; again 204."""
    created = await client.post("/timer", json={"url": URL, "hours": 1})
    path = f"/timer/{created.json()['id']}"
    assert (await client.delete(path)).status_code == 204
    view = (await client.get(path)).json()
    assert view["status"] == "cancelled"
    assert view["time_left"] == 0
    assert "finished_at" in view
    assert (await client.delete(path)).status_code == 204


@pytest.mark.parametrize(
    "timer_id",
    ["01a23149-9108-8c18-9bcd-e1cb6b98a9f7", "not-an-id", "0" * 36],
)
async def test_cancel_unknown_or_malformed_is_404(
    client: httpx.AsyncClient, timer_id: str
) -> None:
    """DELETE of an unknown or malformed id is a 404 problem."""
    reply = await client.delete(f"/timer/{timer_id}")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"


def test_cancel_racing_the_firing_is_never_both(
    procs: Procs, receiver: Receiver, redis_url: str
) -> None:
    """50 timers cancelled around their due time: each is either cancelled
    (204, no webhook ever) or fired (409, exactly one webhook)."""
    base = procs.api()
    procs.role("ticker")
    procs.role("worker")
    with httpx.Client(base_url=base) as http:
        timer_ids = [
            http.post(
                "/timer", json={"seconds": 1, "url": receiver.url}
            ).json()["id"]
            for _ in range(50)
        ]
    first_due = time.monotonic() + 0.7
    last_due = first_due + 0.3

    async def cancel_all() -> dict[str, int]:
        async with httpx.AsyncClient(base_url=base) as http:

            async def one(i: int, timer_id: str) -> int:
                # Spread the cancels over 0.7 s .. 1.5 s after creation.
                await asyncio.sleep(
                    max(0.0, first_due - time.monotonic()) + i * 0.016
                )
                return (await http.delete(f"/timer/{timer_id}")).status_code

            codes = await asyncio.gather(
                *(one(i, t) for i, t in enumerate(timer_ids))
            )
            return dict(zip(timer_ids, codes, strict=True))

    codes = asyncio.run(cancel_all())
    client = inspector(redis_url)
    wait_until(
        lambda: settled(client),
        timeout_s=last_due + LOADED_LATE_S + SETTLE_S - time.monotonic(),
        what="the wheel to settle",
    )
    client.close()
    fired = receiver.ids()
    assert set(codes.values()) <= {204, 409}
    assert {204, 409} <= set(codes.values()), codes
    for timer_id, code in codes.items():
        if code == 204:
            assert timer_id not in fired
            assert status(base, timer_id) == "cancelled"
        else:
            assert fired[timer_id] == 1
            assert status(base, timer_id) == "fired"


# -- the SSRF guard ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/h",
        "http://127.1/h",
        "http://2130706433/h",
        "http://0x7f000001/h",
        "http://017700000001/h",
        "http://[::ffff:127.0.0.1]/h",
        "http://0.0.0.0/h",
        "http://[::]/h",
        "http://[::1]:8080/h",
        "http://10.0.0.8/h",
        "http://172.16.5.4/h",
        "http://192.168.1.1/h",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/h",
        "http://[fd00::1]/h",
        "http://[fe80::1]/h",
        "http://224.0.0.1/h",
        "http://255.255.255.255/h",
        "https://user:secret@hooks.example.com/h",
        "https://user@hooks.example.com/h",
    ],
)
async def test_guard_refuses_private_targets_at_create(
    guarded: httpx.AsyncClient, url: str
) -> None:
    """Every spelling of a private or special address, and credentials in
    the URL, are a 422 naming the url; nothing is stored."""
    reply = await guarded.post(
        "/timer", json={"url": url, "hours": 5}, headers=bearer("tok-one")
    )
    assert reply.status_code == 422, reply.text
    assert reply.json()["errors"][0]["field"] == "url"


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/h",
        "http://localhost:9/h",
        "http://8.8.8.8/h",
        "http://[2606:4700::1111]/h",
    ],
)
async def test_guard_lets_public_targets_and_names_through_at_create(
    guarded: httpx.AsyncClient, url: str
) -> None:
    """Public addresses and host names pass create (names are checked when
    the worker connects)."""
    reply = await guarded.post(
        "/timer", json={"url": url, "hours": 5}, headers=bearer("tok-one")
    )
    assert reply.status_code == 201, reply.text


def test_a_name_resolving_to_loopback_is_refused_at_connect(
    redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """With the guard on, http://localhost:<port> is accepted, then refused
    when the worker connects: the timer fails naming the address, and the
    receiver on 127.0.0.1 gets nothing."""
    env = {**FAST_ENV, "WHEEL_REDIS_URL": redis_url}
    del env["WHEEL_ALLOWED_TARGETS"]
    procs = Procs(env, tmp_path)
    try:
        base = procs.api()
        procs.role("ticker")
        procs.role("worker")
        url = receiver.url.replace("127.0.0.1", "localhost")
        timer_id = httpx.post(
            f"{base}/timer", json={"seconds": 0, "url": url}
        ).json()["id"]
        # Due now; the guard fails it at its one attempt.
        wait_until(
            lambda: status(base, timer_id) == "failed",
            timeout_s=LOADED_LATE_S + SETTLE_S,
            what="failed",
        )
        view = httpx.get(f"{base}/timer/{timer_id}").json()
    finally:
        procs.stop_all()
    assert view["attempts"] == 1
    assert "loopback" in view["last_error"]
    assert "127.0.0.1" in view["last_error"] or "::1" in view["last_error"]
    assert receiver.arrivals == []


# -- signed webhooks --------------------------------------------------------


def test_webhooks_are_signed_with_every_secret_across_retries(
    redis_url: str, tmp_path: Path
) -> None:
    """With two secrets each webhook verifies with either one, and a
    retry carries the same webhook-id."""
    hooks = Receiver(Behaviour(fail_first=1))
    hooks.start()
    procs = Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": redis_url,
            "WHEEL_WEBHOOK_SECRET": f"{SECRET_A} {SECRET_B}",
        },
        tmp_path,
    )
    try:
        base = procs.api()
        procs.role("ticker")
        procs.role("worker")
        timer_id = httpx.post(
            f"{base}/timer", json={"seconds": 0, "url": hooks.url}
        ).json()["id"]
        wait_until(
            lambda: status(base, timer_id) == "fired",
            timeout_s=RETRIES_S + SETTLE_S,
            what="fired",
        )
    finally:
        procs.stop_all()
        hooks.stop()
    first, second = hooks.arrivals
    for arrival in (first, second):
        for secret in (SECRET_A, SECRET_B):
            payload = standardwebhooks.Webhook(secret).verify(
                arrival.body, arrival.headers
            )
            assert payload == {"id": timer_id}
        assert len(arrival.headers["webhook-signature"].split()) == 2
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.headers["webhook-id"] == timer_id
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET_A).verify(
            first.body.replace(b"}", b" }"), first.headers
        )


# -- requests the app never sees whole --------------------------------------


def test_bad_content_length_is_a_problem(procs: Procs) -> None:
    """A request uvicorn cannot parse gets a 400 problem+json, too."""
    base = procs.api()
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /timer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 400


async def test_trailing_slash_is_not_redirected(
    client: httpx.AsyncClient,
) -> None:
    """POST /timer/ answers 404 like any unknown path, never a redirect."""
    reply = await client.post("/timer/", json={"url": URL, "hours": 1})
    assert reply.status_code == 404
    assert "location" not in reply.headers
