"""Operators' windows: OpenAPI (validated, fuzzed by schemathesis),
Prometheus metrics that add up, dead letters and their retry (HTTP and
CLI), and the /stats figures."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import (
    FAST_ENV,
    LOADED_LATE_S,
    SETTLE_S,
    START_S,
    TIMER_WHEEL,
    Behaviour,
    Procs,
    Receiver,
    retries_s,
    wait_until,
)
from tests.test_e2e import status
from wheel.api.operators import FLEET_CACHE_S
from wheel.embedded.server import free_port


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text; 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (
        r"\{" + re.escape(wanted) + r"\}" if labels else ""
    )
    for line in text.splitlines():
        match = re.match(pattern + r" ([0-9.e+-]+)$", line)
        if match:
            return float(match.group(1))
    return 0.0


# -- OpenAPI ---------------------------------------------------------------


def test_openapi_document_is_valid_and_covers_every_route(
    procs: Procs,
) -> None:
    """/openapi.json is a valid OpenAPI 3.1 document listing each route;
    /docs and /dashboard are pages with no external resource."""
    base = procs.api()
    doc = httpx.get(f"{base}/openapi.json").json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    expected = {
        ("/timer", "post", "createTimer", "timers"),
        ("/timer/{timer_id}", "get", "getTimer", "timers"),
        ("/timer/{timer_id}", "delete", "cancelTimer", "timers"),
        ("/timer/{timer_id}", "patch", "rescheduleTimer", "timers"),
        ("/timers", "get", "listTimers", "timers"),
        ("/schedules", "post", "createSchedule", "schedules"),
        ("/schedules", "get", "listSchedules", "schedules"),
        ("/schedules/{schedule_id}", "get", "getSchedule", "schedules"),
        ("/schedules/{schedule_id}", "patch", "updateSchedule", "schedules"),
        ("/schedules/{schedule_id}", "delete", "deleteSchedule", "schedules"),
        ("/timer/{timer_id}/retry", "post", "retryTimer", "operators"),
        ("/dead-letters", "get", "listDeadLetters", "operators"),
        ("/stats", "get", "getStats", "operators"),
        ("/healthz", "get", "getHealth", "health"),
        ("/readyz", "get", "getReadiness", "health"),
        ("/metrics", "get", "getMetrics", "operators"),
        ("/openapi.json", "get", "getOpenApiDocument", "operators"),
        ("/docs", "get", "getDocs", "operators"),
        ("/dashboard", "get", "getDashboard", "operators"),
    }
    listed = {
        (p, m, op["operationId"], *op["tags"])
        for p, item in doc["paths"].items()
        for m, op in item.items()
    }
    assert listed == expected
    create = doc["paths"]["/timer"]["post"]["responses"]
    assert {"200", "201", "400", "413", "422", "503", "507"} <= set(create)
    schemas = doc["components"]["schemas"]
    assert set(schemas["TimerRequest"]["properties"]) == {
        "url",
        "hours",
        "minutes",
        "seconds",
        "at",
        "request",
    }
    assert set(schemas["RequestSpec"]["properties"]) == {
        "method",
        "headers",
        "body",
    }
    assert {"url", "request", "history"} <= set(
        schemas["TimerView"]["properties"]
    )
    assert set(schemas["TimerPage"]["properties"]) == {"items", "next_cursor"}
    assert set(schemas["Reschedule"]["properties"]) == {
        "hours",
        "minutes",
        "seconds",
        "at",
    }
    assert set(schemas["ScheduleRequest"]["properties"]) == {
        "cron",
        "timezone",
        "url",
        "request",
        "start_at",
        "end_at",
        "misfire",
    }
    assert set(schemas["ScheduleRequest"]["required"]) == {"cron", "url"}
    assert set(schemas["ScheduleCreated"]["properties"]) == {"id", "next"}
    assert set(schemas["SchedulePatch"]["properties"]) == {
        "paused",
        "cron",
        "timezone",
        "url",
        "request",
    }
    assert set(schemas["ScheduleView"]["properties"]) == {
        "id",
        "cron",
        "timezone",
        "url",
        "request",
        "start_at",
        "end_at",
        "misfire",
        "paused",
        "next_at",
        "last",
        "fired",
        "failed",
        "missed",
    }
    assert set(schemas["LastOccurrence"]["properties"]) == {
        "id",
        "scheduled_for",
        "status",
    }
    assert set(schemas["SchedulePage"]["properties"]) == {
        "items",
        "next_cursor",
    }
    for page in ("/docs", "/dashboard"):
        html = httpx.get(f"{base}{page}").text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_openapi_lists_bearer_auth_when_tokens_are_on(procs: Procs) -> None:
    """With WHEEL_API_TOKENS the guarded operations need bearer and 401."""
    procs.env["WHEEL_API_TOKENS"] = "t"
    base = procs.api()
    doc = httpx.get(f"{base}/openapi.json").json()
    validate(doc)
    post = doc["paths"]["/timer"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert "401" in post["responses"]
    assert "security" not in doc["paths"]["/healthz"]["get"]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
"""What the API promises for any request: no 5xx, and every answer as
documented. Not "valid data is accepted": a request can fit the schema
and still break a rule it cannot express (a private URL, a total delay
past the bound), which is a 4xx by design."""


def test_schemathesis_finds_no_5xx_and_no_schema_break(procs: Procs) -> None:
    """Bounded generated requests of every operation, against an API with
    no worker running (nothing fires, whatever URL it makes up): no server
    error and no response outside the document."""
    base = procs.api()
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in ("/docs", "/dashboard", "/metrics"):
            continue

        @given(operation.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case) -> None:
            nonlocal cases
            cases += 1
            try:
                case.call_and_validate(checks=CHECKS)
            except Exception as exc:  # a failed check: collect them all
                failures.append(f"{case.method} {case.path}: {exc}"[:1500])

        run()
    assert cases >= 100
    assert failures == [], "\n\n".join(failures[:5])


# -- metrics ---------------------------------------------------------------


def test_metrics_equal_a_known_mix_of_outcomes(
    redis_url: str, tmp_path: Path
) -> None:
    """6 timers succeed at once, 3 after one failure, 2 never: the
    counters say ok 9, retry 3 + 2, fail 2; the lateness histogram counts
    11 first attempts; the fleet gauges show 2 dead letters."""
    good, flaky, bad = (
        Receiver(),
        Receiver(Behaviour(fail_first=1)),
        Receiver(Behaviour(always_fail=True)),
    )
    for receiver in (good, flaky, bad):
        receiver.start()
    port = free_port()
    procs = Procs(
        {**FAST_ENV, "WHEEL_REDIS_URL": redis_url, "WHEEL_MAX_ATTEMPTS": "2"},
        tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        procs.start("run", "--port", str(port))
        wait_until(
            lambda: _ready(base), timeout_s=START_S, what="run to be ready"
        )
        urls = [good.url] * 6 + [flaky.url] * 3 + [bad.url] * 2
        timer_ids = [
            httpx.post(f"{base}/timer", json={"url": u}).json()["id"]
            for u in urls
        ]
        wait_until(
            lambda: all(
                status(base, t) in ("fired", "failed") for t in timer_ids
            ),
            timeout_s=retries_s(int(procs.env["WHEEL_MAX_ATTEMPTS"]))
            + SETTLE_S,
            what="every timer to finish",
        )
        text = httpx.get(f"{base}/metrics").text
    finally:
        procs.stop_all()
        for receiver in (good, flaky, bad):
            receiver.stop()
    attempts = "timer_wheel_webhook_attempts_total"
    assert metric(text, attempts, outcome="ok") == 9
    assert metric(text, attempts, outcome="retry") == 5
    assert metric(text, attempts, outcome="fail") == 2
    assert metric(text, "timer_wheel_timers_created_total") == 11
    assert metric(text, "timer_wheel_fire_lateness_seconds_count") == 11
    assert metric(text, "timer_wheel_dead_letters") == 2
    assert metric(text, "timer_wheel_pending_timers") == 0
    duration = "timer_wheel_http_request_duration_seconds_count"
    assert (
        metric(text, duration, method="POST", route="/timer", status="2xx")
        == 11
    )


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).is_success
    except httpx.HTTPError:
        return False


# -- dead letters and stats -------------------------------------------------


def test_dead_letters_are_listed_and_retry_fires_them_again(
    procs: Procs, redis_url: str
) -> None:
    """Failed timers are listed newest first (HTTP and CLI); a retry
    (HTTP or CLI) fires them again once the receiver recovers."""
    hooks = Receiver(Behaviour(always_fail=True))
    hooks.start()
    procs.env["WHEEL_MAX_ATTEMPTS"] = "1"
    try:
        base = procs.api()
        procs.role("ticker")
        procs.role("worker")
        first, second = (
            httpx.post(f"{base}/timer", json={"url": hooks.url}).json()["id"]
            for _ in range(2)
        )
        wait_until(
            lambda: status(base, first) == status(base, second) == "failed",
            # Due now; one attempt (WHEEL_MAX_ATTEMPTS=1), recorded.
            timeout_s=LOADED_LATE_S + SETTLE_S,
            what="both failed",
        )
        listed = httpx.get(f"{base}/dead-letters?limit=10").json()["items"]
        assert {item["id"] for item in listed} == {first, second}
        assert listed[0]["error"] == "HTTP 500"
        assert listed[0]["attempts"] == 1
        assert listed[0]["url"] == hooks.url
        assert listed[0]["at"] >= listed[1]["at"]
        cli = subprocess.run(
            [TIMER_WHEEL, "dead-letters", "--json"],
            env=procs.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert cli.returncode == 0, cli.stderr
        rows = [json.loads(line) for line in cli.stdout.splitlines()]
        assert {row["id"] for row in rows} == {first, second}

        hooks.behaviour.always_fail = False
        retried = httpx.post(f"{base}/timer/{first}/retry")
        assert retried.status_code == 202, retried.text
        by_cli = subprocess.run(
            [TIMER_WHEEL, "dead-letters", "--retry", second],
            env=procs.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert by_cli.returncode == 0, by_cli.stderr
        wait_until(
            lambda: status(base, first) == status(base, second) == "fired",
            # A retry fires again now (the first one before the CLI ran).
            timeout_s=LOADED_LATE_S + SETTLE_S,
            what="both fired after the retry",
        )
        assert hooks.ids() == {first: 2, second: 2}
        view = httpx.get(f"{base}/timer/{first}").json()
        assert view["attempts"] == 1
        again = httpx.post(f"{base}/timer/{first}/retry")
        assert again.status_code == 409
        assert httpx.get(f"{base}/dead-letters").json()["items"] == []
        unknown = httpx.post(
            f"{base}/timer/01a23149-9108-8c18-9bcd-e1cb6b98a9f7/retry"
        )
        assert unknown.status_code == 404
    finally:
        hooks.stop()


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1001", "%C2%B2"])
def test_dead_letter_limit_is_checked(procs: Procs, limit: str) -> None:
    """A limit outside 1..1000 is a 422 problem naming it."""
    base = procs.api()
    reply = httpx.get(f"{base}/dead-letters?limit={limit}")
    assert reply.status_code == 422
    assert [e["field"] for e in reply.json()["errors"]] == ["limit"]


def test_stats_report_the_fleet(procs: Procs) -> None:
    """/stats counts pending timers, shows them in the backlog charts and
    lists the live ticker and worker."""
    base = procs.api()
    procs.role("ticker")
    procs.role("worker")
    for minutes in (5, 5, 30):
        reply = httpx.post(
            f"{base}/timer",
            json={"minutes": minutes, "url": "http://127.0.0.1:9/h"},
        )
        assert reply.status_code == 201
    httpx.post(
        f"{base}/timer", json={"hours": 5, "url": "http://127.0.0.1:9/h"}
    )
    wait_until(
        lambda: len(httpx.get(f"{base}/stats").json()["workers"]) == 1,
        # The worker beats already; a cached read of the fleet expires.
        timeout_s=2 * FLEET_CACHE_S,
        what="the worker in /stats",
    )
    stats = httpx.get(f"{base}/stats").json()
    assert stats["pending"] == 4
    assert sum(stats["backlog_hour"]) == 3
    assert stats["backlog_hour"][4] + stats["backlog_hour"][5] == 2
    assert sum(stats["backlog_day"]) == 4
    # The 5-hour timer sits in a coarse bucket, counted at the bucket's
    # start: its hour's (4-5 h ahead), or its day's when it is due after
    # midnight (then anywhere from now to 5 h ahead).
    assert stats["backlog_day"][0] >= 3
    assert sum(stats["backlog_day"][:6]) == 4
    assert len(stats["minutes"]) == 30
    assert stats["oldest_overdue_s"] == 0
    [ticker] = stats["tickers"]
    assert ticker["shards"] == 4
    assert stats["workers"][0]["shards"] == 4
