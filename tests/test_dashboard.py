"""The dashboard and the docs page in a real headless Chromium, against
the real api, ticker and worker processes and a receiver on 127.0.0.1."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    sync_playwright,
)

from tests.support import (
    FAST_ENV,
    LOADED_LATE_S,
    SETTLE_S,
    SHARDS,
    Behaviour,
    Procs,
    Receiver,
    create_timer,
    wait_until,
)
from wheel.core import ids

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home (and, offline, floods refused
    # connections): the docs test asserts nothing leaves 127.0.0.1.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dashboard-test-token"
NO_VALUE = "\N{EN DASH}"
"""What the page shows for a percentile of no observations."""
OUTCOMES = ("fired", "retried", "failed", "deferred")

# What the page shows, read in one go (a refresh cannot land halfway).
SNAPSHOT_JS = """() => {
  const text = (id) =>
    document.querySelector(`[data-testid="${id}"]`).textContent.trim();
  const all = (selector) => [...document.querySelectorAll(selector)];
  const cells = (tr, from) =>
    [...tr.cells].slice(from).map((td) => td.textContent.trim());
  const numbers = (id) =>
    all(`[data-testid="${id}"] details tbody tr`).map((tr) => cells(tr, 1));
  return {
    pending: text("pending"),
    ready: text("ready"),
    in_flight: text("in-flight"),
    oldest_overdue: text("oldest-overdue"),
    dead_letters: text("dead-letters-count"),
    lateness: [text("lateness-count"), text("p50"), text("p90"),
      text("p99")],
    processes: all('[data-testid="process-row"]').map((tr) =>
      cells(tr, 0).slice(0, 3)),
    letters: all('[data-testid="dead-letter-row"]').map((tr) =>
      cells(tr, 0).slice(0, 4)),
    minutes: numbers("chart-minutes"),
    backlog_hour: numbers("chart-backlog-hour"),
    backlog_day: numbers("chart-backlog-day"),
  };
}"""


def chromium() -> str:
    """Debian's Chromium; fail in CI without it, else skip loudly."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = (
        f"NO CHROMIUM AT {CHROMIUM}: install Debian's chromium (.ci/run "
        "does) to run the dashboard's browser tests"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile, on a laptop-sized screen."""
    executable = chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1366, "height": 900},
            locale="en-US",
            timezone_id="UTC",
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def procs(redis_url: str, tmp_path: Path) -> Iterator[Procs]:
    """Service processes on the test Redis; one failed attempt is final."""
    running = Procs(
        {
            **FAST_ENV,
            "WHEEL_REDIS_URL": redis_url,
            "WHEEL_MAX_ATTEMPTS": "1",
        },
        tmp_path,
    )
    yield running
    running.stop_all()


@pytest.fixture
def failing() -> Iterator[Receiver]:
    """A receiver that answers 500 until told otherwise."""
    hooks = Receiver(Behaviour(always_fail=True))
    hooks.start()
    yield hooks
    hooks.stop()


@dataclass
class Watch:
    """Everything a page reported: requests, and anything that went wrong
    (console errors and warnings, uncaught errors, failed requests)."""

    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        """Listen to ``page``; return it."""
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"js: {exc}"))
        page.on("request", self._request)
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        return page

    def _request(self, request: Request) -> None:
        self.requests.append(request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _failed(self, request: Request) -> None:
        self.problems.append(f"failed: {request.url} {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def urls(self) -> list[str]:
        """Every URL the page requested, in order."""
        return [request.url for request in self.requests]


def open_page(context: BrowserContext, url: str) -> tuple[Page, Watch]:
    """A new page, watched from its first request, at ``url``."""
    watch = Watch()
    page = watch.attach(context.new_page())
    page.goto(url)
    return page, watch


def refreshed(page: Page) -> None:
    """Click "Refresh now" and wait until that refresh is drawn."""
    count = int(page.evaluate("document.body.dataset.refreshes"))
    page.get_by_test_id("refresh-button").click()
    page.wait_for_function(
        f"Number(document.body.dataset.refreshes) > {count}"
    )


def one_decimal(value: float) -> str:
    """``value`` as the page writes it (Intl rounds half away from 0)."""
    rounded = Decimal(repr(value)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"{rounded:,}"


def expected(stats: dict[str, Any], letters: dict[str, Any]) -> dict:
    """What the page should show for these ``/stats`` and
    ``/dead-letters`` answers."""
    lateness = stats["lateness"]
    return {
        "pending": f"{stats['pending']:,}",
        "ready": f"{stats['ready']:,}",
        "in_flight": f"{stats['in_flight']:,}",
        "oldest_overdue": one_decimal(stats["oldest_overdue_s"]),
        "dead_letters": f"{stats['dead_letters']:,}",
        "lateness": [f"{lateness['count']:,}"]
        + [
            NO_VALUE if lateness[p] is None else one_decimal(lateness[p])
            for p in ("p50_ms", "p90_ms", "p99_ms")
        ],
        "processes": [
            [role, member["name"], f"{member['shards']:,}"]
            for role in ("ticker", "worker")
            for member in stats[f"{role}s"]
        ],
        "letters": [
            [item["id"], item["url"], f"{item['attempts']:,}", item["error"]]
            for item in letters["items"]
        ],
        "minutes": [
            [f"{minute[k]:,}" for k in OUTCOMES] for minute in stats["minutes"]
        ],
        "backlog_hour": [[f"{n:,}"] for n in stats["backlog_hour"]],
        "backlog_day": [[f"{n:,}"] for n in stats["backlog_day"]],
    }


def agree_with_api(
    page: Page,
    api: httpx.Client,
    until: Callable[[dict[str, Any]], bool] = lambda stats: True,
    attempts: int = 40,
) -> dict[str, Any]:
    """Refresh until the page shows what the API reports right after,
    and that answer of ``/stats`` passes ``until`` (bounded): that answer.

    The API caches its fleet figures for 2 s, so a change shows up in
    ``/stats`` a little after ``/dead-letters``.
    """
    shown: dict = {}
    wanted: dict = {"never": "compared"}
    stats: dict[str, Any] = {}
    for _ in range(attempts):
        refreshed(page)
        stats = api.get("/stats").json()
        letters = api.get("/dead-letters", params={"limit": 50}).json()
        shown = page.evaluate(SNAPSHOT_JS)
        wanted = expected(stats, letters)
        if shown == wanted and until(stats):
            return stats
        time.sleep(0.25)
    assert shown == wanted, "the page never agreed with /stats"
    raise AssertionError(f"/stats never passed the condition: {stats}")


def status(api: httpx.Client, timer_id: str) -> str:
    """The status ``GET /timer/{id}`` reports."""
    return str(api.get(f"/timer/{timer_id}").json()["status"])


def dead_letter(api: httpx.Client, receiver: Receiver) -> str:
    """A timer that failed for good (listed as a dead letter): its id."""
    timer_id = str(create_timer(api, receiver.url)["id"])
    # Due now, one attempt (WHEEL_MAX_ATTEMPTS=1), then recorded.
    wait_until(
        lambda: status(api, timer_id) == "failed",
        timeout_s=LOADED_LATE_S + SETTLE_S,
        what="the timer to fail",
    )
    wait_until(
        lambda: any(
            item["id"] == timer_id
            for item in api.get("/dead-letters").json()["items"]
        ),
        # Written with the failure, in the same completion.
        timeout_s=SETTLE_S,
        what="its dead letter",
    )
    return timer_id


def test_dashboard_shows_what_stats_reports(
    procs: Procs, failing: Receiver, browser: BrowserContext, tmp_path: Path
) -> None:
    """The dashboard renders cleanly and shows /stats and /dead-letters."""
    base = procs.api()
    ticker = procs.role("ticker")
    worker = procs.role("worker")
    with httpx.Client(base_url=base) as api:
        failed = dead_letter(api, failing)
        # Timers in both backlog charts: 10 minutes and 3 hours ahead.
        create_timer(api, failing.url, minutes=10)
        create_timer(api, failing.url, hours=3)
        page, watch = open_page(browser, f"{base}/dashboard")
        # Workers add up each minute's outcomes once a second.
        stats = agree_with_api(
            page,
            api,
            until=lambda stats: (
                sum(m["failed"] for m in stats["minutes"]) == 1
                and stats["lateness"]["count"] == 1
            ),
        )
    assert page.get_by_test_id("total-failed").text_content() == "(1)"
    assert page.get_by_test_id("p50").text_content() != NO_VALUE
    assert stats["pending"] == 2
    assert stats["dead_letters"] == 1
    assert sum(stats["backlog_hour"]) == 1
    assert sum(stats["backlog_day"]) == 2
    # Coarse buckets count at their start: the charts say so.
    for note, unit in (
        ("backlog-hour-note", "hour"),
        ("backlog-day-note", "day"),
    ):
        text = " ".join(
            (page.get_by_test_id(note).text_content() or "").split()
        )
        assert f"counts at the start of its {unit}" in text
    names = [row[1] for row in page.evaluate(SNAPSHOT_JS)["processes"]]
    assert any(f":{ticker.pid}:" in name for name in names)
    assert any(f":{worker.pid}:" in name for name in names)
    row = page.locator(f'[data-testid="dead-letter-row"][data-id="{failed}"]')
    assert row.get_by_test_id("retry-button").is_enabled()
    assert page.get_by_test_id("error-banner").is_hidden()
    assert page.get_by_test_id("token-form").is_hidden()
    for chart, bars in (
        ("chart-minutes", len(stats["minutes"])),
        ("chart-backlog-hour", 60),
        ("chart-backlog-day", 24),
    ):
        svg = page.get_by_test_id(chart).locator("svg")
        assert svg.get_attribute("role") == "img"
        assert svg.locator("g > title").count() == bars
    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    assert all(url.startswith(f"{base}/") for url in watch.urls())
    assert watch.problems == []


def test_retry_button_fires_a_dead_letter_again(
    procs: Procs, failing: Receiver, browser: BrowserContext
) -> None:
    """Retry re-fires a dead letter: the receiver gets it again and the
    timer is fired; the button is disabled while the POST is out."""
    base = procs.api()
    procs.role("ticker")
    procs.role("worker")
    with httpx.Client(base_url=base) as api:
        timer_id = dead_letter(api, failing)
        assert failing.ids()[timer_id] == 1
        page, watch = open_page(browser, f"{base}/dashboard")
        row = page.locator(
            f'[data-testid="dead-letter-row"][data-id="{timer_id}"]'
        )
        button = row.get_by_test_id("retry-button")
        button.wait_for()
        # Note the button's state as the POST leaves (the page's own
        # fetch, wrapped only to look).
        page.evaluate(
            """(id) => {
              const send = window.fetch;
              window.retrySeen = [];
              window.fetch = (url, options) => {
                if (options && options.method === "POST") {
                  const button = document.querySelector(
                    `[data-testid="dead-letter-row"][data-id="${id}"] ` +
                    `[data-testid="retry-button"]`);
                  window.retrySeen.push([String(url), button.disabled]);
                }
                return send(url, options);
              };
            }""",
            timer_id,
        )
        failing.behaviour.always_fail = False
        button.click()
        outcome = page.get_by_test_id("retry-outcome")
        page.wait_for_function(
            "document.querySelector('[data-testid=retry-outcome]')"
            ".textContent.includes('queued')"
        )
        assert timer_id in outcome.inner_text()
        assert page.evaluate("window.retrySeen") == [
            [f"/timer/{timer_id}/retry", True]
        ]
        # A retry fires again now.
        wait_until(
            lambda: failing.ids()[timer_id] == 2,
            timeout_s=LOADED_LATE_S,
            what="the retried webhook",
        )
        wait_until(
            lambda: status(api, timer_id) == "fired",
            timeout_s=SETTLE_S,
            what="status fired",
        )
        agree_with_api(
            page,
            api,
            until=lambda stats: (
                stats["dead_letters"] == 0
                and sum(m["fired"] for m in stats["minutes"]) == 1
            ),
        )
    assert row.count() == 0
    assert page.get_by_test_id("dead-letters-count").text_content() == "0"
    assert page.get_by_test_id("total-fired").text_content() == "(1)"
    assert page.get_by_test_id("total-failed").text_content() == "(1)"
    assert watch.problems == []


def test_a_refused_retry_shows_why(
    procs: Procs, failing: Receiver, browser: BrowserContext
) -> None:
    """Retry on a row someone else retried already shows the API's 409
    and the row is gone on the refresh that follows."""
    base = procs.api()
    procs.role("ticker")
    procs.role("worker")
    with httpx.Client(base_url=base) as api:
        timer_id = dead_letter(api, failing)
        page, watch = open_page(browser, f"{base}/dashboard")
        row = page.locator(
            f'[data-testid="dead-letter-row"][data-id="{timer_id}"]'
        )
        row.wait_for()
        # Just refreshed: the next automatic refresh is 5 s away, so the
        # row is still on screen when clicked.
        refreshed(page)
        failing.behaviour.always_fail = False
        assert api.post(f"/timer/{timer_id}/retry").status_code == 202
        retried_at = time.monotonic()
        row.get_by_test_id("retry-button").click()
        outcome = page.get_by_test_id("retry-outcome")
        page.wait_for_function(
            "document.querySelector('[data-testid=retry-outcome]')"
            ".classList.contains('bad')"
        )
        assert f"Retry of timer {timer_id} failed: 409" in outcome.inner_text()
        row.wait_for(state="detached")
        # The retry fired now, and was recorded.
        wait_until(
            lambda: status(api, timer_id) == "fired",
            timeout_s=retried_at + LOADED_LATE_S + SETTLE_S - time.monotonic(),
            what="status fired",
        )
    assert failing.ids()[timer_id] == 2
    assert [p for p in watch.problems if p.startswith("HTTP")] == [
        f"HTTP 409: {base}/timer/{timer_id}/retry"
    ]


def test_error_banner_shows_while_the_api_is_down_and_clears(
    procs: Procs, browser: BrowserContext
) -> None:
    """With the API killed the page shows an error banner; once it is
    back the next automatic refresh clears it."""
    base = procs.api()
    page, _ = open_page(browser, f"{base}/dashboard")
    page.wait_for_function("document.body.dataset.state === 'ok'")
    banner = page.get_by_test_id("error-banner")
    assert banner.is_hidden()
    (api,) = procs.running
    procs.kill(api)
    refreshed(page)
    assert banner.is_visible()
    assert "Could not load /stats" in banner.inner_text()
    assert page.evaluate("document.body.dataset.state") == "error"
    # The last figures stay on screen meanwhile.
    assert page.get_by_test_id("pending").text_content() == "0"
    procs.api(port=urlsplit(base).port)
    # No click: the page retries on its own every 5 s.
    banner.wait_for(state="hidden", timeout=12_000)
    assert page.evaluate("document.body.dataset.state") == "ok"


def test_token_form_when_the_api_needs_a_token(
    procs: Procs, browser: BrowserContext
) -> None:
    """With API tokens on, the page asks for one, refuses a wrong one,
    then works with the right one sent as a bearer token; forgetting it
    asks again."""
    procs.env["WHEEL_API_TOKENS"] = TOKEN
    base = procs.api()
    page, watch = open_page(browser, f"{base}/dashboard")
    form = page.get_by_test_id("token-form")
    form.wait_for()
    assert page.get_by_test_id("pending").is_hidden()
    assert page.get_by_test_id("error-banner").is_hidden()
    # Only the two 401s of the first load went wrong.
    assert sorted(p for p in watch.problems if p.startswith("HTTP")) == [
        f"HTTP 401: {base}/dead-letters?limit=50",
        f"HTTP 401: {base}/stats",
    ]
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_test_id("token-submit").click()
    page.get_by_text("The token was refused").wait_for()
    assert form.is_visible()
    assert page.evaluate("sessionStorage.length") == 0

    seen = len(watch.requests)
    watch.problems.clear()
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_test_id("token-submit").click()
    form.wait_for(state="hidden")
    page.wait_for_function("document.body.dataset.state === 'ok'")
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as api:
        agree_with_api(page, api)
    assert watch.problems == []
    calls = [
        r for r in watch.requests[seen:] if urlsplit(r.url).path == "/stats"
    ]
    assert calls
    assert all(
        r.headers.get("authorization") == f"Bearer {TOKEN}" for r in calls
    )
    assert page.evaluate("sessionStorage.length") == 1

    page.get_by_test_id("forget-token").click()
    form.wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    assert page.get_by_text("The token was refused").is_hidden()


def test_docs_render_swagger_ui_from_the_service_alone(
    procs: Procs, browser: BrowserContext
) -> None:
    """/docs renders Swagger UI of /openapi.json; every request the page
    makes goes to the API itself."""
    base = procs.api()
    page, watch = open_page(browser, f"{base}/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "timer-wheel" in page.locator(".swagger-ui .info").inner_text()
    for path in ("/timer/{timer_id}/retry", "/dead-letters", "/stats"):
        page.locator(f'.opblock-summary-path[data-path="{path}"]').wait_for()
    # The validator badge would fetch from validator.swagger.io.
    assert page.locator(".swagger-ui img").count() == 0
    urls = watch.urls()
    assert f"{base}/openapi.json" in urls
    assert all(url.startswith(f"{base}/") for url in urls), urls
    assert watch.problems == []


# -- the Timers view ---------------------------------------------------------


def timer_rows(page: Page) -> list[str]:
    """The ids of the Timers view's rows, top to bottom."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
             '[data-testid="timer-row"]')].map((tr) => tr.dataset.id)"""
    )


def loaded(page: Page, count: int) -> None:
    """Wait until the Timers view has loaded its list ``count`` times."""
    page.wait_for_function(
        f"Number(document.body.dataset.timersLoads || 0) >= {count}"
    )


def test_timers_view_lists_pending_soonest_and_moves_and_cancels(
    procs: Procs, receiver: Receiver, browser: BrowserContext
) -> None:
    """Pending timers over several shards and buckets show due soonest
    first; search finds one by id; Reschedule and Cancel act through the
    API (PATCH, DELETE) and the list follows."""
    base = procs.api()
    with httpx.Client(base_url=base) as api:
        day = str(create_timer(api, receiver.url, hours=26)["id"])
        soon = str(create_timer(api, receiver.url, minutes=10)["id"])
        hours = str(create_timer(api, receiver.url, hours=3)["id"])
        page, watch = open_page(browser, f"{base}/dashboard")
        loaded(page, 1)
        assert timer_rows(page) == [soon, hours, day]

        page.get_by_test_id("timer-id").fill(hours.upper())
        page.get_by_test_id("timer-find").click()
        page.get_by_test_id("found-id").wait_for()
        assert page.get_by_test_id("found-id").text_content() == hours
        assert page.get_by_test_id("found-status").text_content() == "pending"

        row = page.locator(f'[data-testid="timer-row"][data-id="{hours}"]')
        row.get_by_test_id("reschedule-button").click()
        row.get_by_test_id("reschedule-input").fill("60")
        row.get_by_test_id("reschedule-submit").click()
        page.wait_for_function(
            "document.querySelector('[data-testid=timers-outcome]')"
            ".textContent.includes('moved')"
        )
        loaded(page, 2)
        assert 55 <= api.get(f"/timer/{hours}").json()["time_left"] <= 60
        assert timer_rows(page) == [hours, soon, day]
        found_left = page.get_by_test_id("found-time-left").text_content()
        assert found_left is not None
        assert int(found_left.split()[0]) <= 60

        page.locator(
            f'[data-testid="timer-row"][data-id="{day}"]'
        ).get_by_test_id("cancel-button").click()
        page.wait_for_function(
            "document.querySelector('[data-testid=timers-outcome]')"
            ".textContent.includes('cancelled')"
        )
        loaded(page, 3)
        assert api.get(f"/timer/{day}").json()["status"] == "cancelled"
        assert timer_rows(page) == [hours, soon]
    assert all(url.startswith(f"{base}/") for url in watch.urls())
    assert watch.problems == []


FAR_TIMERS = 1000
"""Timers due later: the first three of the four shards hold about 750,
more than the 500 the old view's five pages held, so the old view never
reached the last shard."""


def test_timers_view_finds_the_soonest_on_any_shard(
    procs: Procs, receiver: Receiver, browser: BrowserContext
) -> None:
    """1,000 timers due in 3 hours fill every shard; timers due in a
    minute, one of them on the last shard (which the listing reaches
    last), are the first rows: the view asks for due times window by
    window, not for the first pages the listing gives."""
    base = procs.api()
    with httpx.Client(base_url=base) as api:
        for _ in range(FAR_TIMERS):
            create_timer(api, receiver.url, hours=3)
        near: list[str] = []
        last_shard = False
        for _ in range(200):
            timer_id = str(create_timer(api, receiver.url, seconds=50)["id"])
            near.append(timer_id)
            raw = ids.parse(timer_id)
            assert raw is not None
            if ids.shard_of(raw, SHARDS) == SHARDS - 1:
                last_shard = True
                break
        assert last_shard, "no timer landed on the last shard"
        page, watch = open_page(browser, f"{base}/dashboard")
        loaded(page, 1)
        rows = timer_rows(page)
    assert set(rows[: len(near)]) == set(near), (len(near), rows[:5])
    assert len(rows) >= 100
    assert watch.problems == []


def test_timers_view_retries_a_failed_timer(
    procs: Procs, failing: Receiver, browser: BrowserContext
) -> None:
    """The Failed tab lists a failed timer from GET /timers; Retry fires
    it again; the found timer shows both attempts."""
    base = procs.api()
    procs.role("ticker")
    procs.role("worker")
    with httpx.Client(base_url=base) as api:
        timer_id = dead_letter(api, failing)
        page, watch = open_page(browser, f"{base}/dashboard")
        loaded(page, 1)
        page.get_by_test_id("tab-failed").click()
        row = page.locator(f'[data-testid="timer-row"][data-id="{timer_id}"]')
        row.wait_for()
        assert timer_rows(page) == [timer_id]
        failing.behaviour.always_fail = False
        row.get_by_test_id("timer-retry-button").click()
        page.wait_for_function(
            "document.querySelector('[data-testid=timers-outcome]')"
            ".textContent.includes('queued')"
        )
        # A retry fires again now.
        wait_until(
            lambda: failing.ids()[timer_id] == 2,
            timeout_s=LOADED_LATE_S,
            what="the retried webhook",
        )
        wait_until(
            lambda: status(api, timer_id) == "fired",
            timeout_s=SETTLE_S,
            what="status fired",
        )
        page.get_by_test_id("timer-id").fill(timer_id)
        page.get_by_test_id("timer-find").click()
        page.wait_for_function(
            "document.querySelectorAll('[data-testid=history-row]')"
            ".length === 2"
        )
        assert page.get_by_test_id("found-status").text_content() == "fired"
    assert watch.problems == []


def schedule_rows(page: Page) -> list[tuple[str, str, str]]:
    """The Schedules view's rows, top to bottom: id, state, and the next
    occurrence as the API wrote it."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
             '[data-testid="schedule-row"]')].map((tr) => [tr.dataset.id,
             tr.dataset.state,
             tr.querySelector('[data-testid="schedule-next"]').title])"""
    )


def schedules_loaded(page: Page, count: int) -> None:
    """Wait until the Schedules view has loaded its list ``count`` times."""
    page.wait_for_function(
        f"Number(document.body.dataset.schedulesLoads || 0) >= {count}"
    )


def test_schedules_view_shows_next_and_last_and_pauses_and_resumes(
    procs: Procs, receiver: Receiver, browser: BrowserContext
) -> None:
    """The Schedules table lists active schedules by next occurrence
    (then paused ones), shows the last occurrence's status once one has
    fired, and Pause and Resume act through PATCH."""
    base = procs.api()
    procs.role("ticker")
    procs.role("worker")
    with httpx.Client(base_url=base) as api:

        def create(cron: str) -> str:
            body = {"cron": cron, "url": receiver.url}
            reply = api.post("/schedules", json=body)
            assert reply.status_code == 201, reply.text
            return str(reply.json()["id"])

        yearly = create("0 0 1 1 *")
        often = create("*/2 * * * * *")
        period_s = 2
        paused = create("0 12 * * *")
        assert api.patch(
            f"/schedules/{paused}", json={"paused": True}
        ).is_success
        wait_until(
            lambda: (
                api.get(f"/schedules/{often}").json()["last"] is not None
                and api.get(f"/schedules/{often}").json()["last"]["status"]
                == "fired"
            ),
            # Its first occurrence is due within a period, fires on time
            # and is recorded.
            timeout_s=period_s + LOADED_LATE_S + SETTLE_S,
            what="an occurrence fired",
        )
        page, watch = open_page(browser, f"{base}/dashboard")
        schedules_loaded(page, 1)
        rows = schedule_rows(page)
        assert [(i, state) for i, state, _ in rows] == [
            (often, "active"),
            (yearly, "active"),
            (paused, "paused"),
        ]
        assert rows[1][2] == api.get(f"/schedules/{yearly}").json()["next_at"]
        assert rows[2][2] == ""
        last = page.locator(
            f'[data-testid="schedule-row"][data-id="{often}"] '
            '[data-testid="schedule-last"]'
        )
        assert last.get_attribute("data-status") == "fired"

        row = page.locator(f'[data-testid="schedule-row"][data-id="{yearly}"]')
        row.get_by_test_id("pause-button").click()
        page.wait_for_function(
            "document.querySelector('[data-testid=schedules-outcome]')"
            ".textContent.includes('is paused')"
        )
        assert api.get(f"/schedules/{yearly}").json()["paused"] is True
        page.wait_for_function(
            f"""document.querySelector('[data-testid="schedule-row"]'
                + '[data-id="{yearly}"]').dataset.state === 'paused'"""
        )
        row = page.locator(f'[data-testid="schedule-row"][data-id="{paused}"]')
        row.get_by_test_id("resume-button").click()
        page.wait_for_function(
            "document.querySelector('[data-testid=schedules-outcome]')"
            ".textContent.includes('is resumed')"
        )
        view = api.get(f"/schedules/{paused}").json()
        assert view["paused"] is False and view["next_at"] is not None
        page.wait_for_function(
            f"""document.querySelector('[data-testid="schedule-row"]'
                + '[data-id="{paused}"]').dataset.state === 'active'"""
        )
    assert all(url.startswith(f"{base}/") for url in watch.urls())
    assert watch.problems == []
