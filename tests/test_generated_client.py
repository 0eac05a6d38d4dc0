"""A client generated from /openapi.json by a maintained generator
(openapi-python-client) drives a timer end to end: its functions are
named after the operation ids, its errors parse as Problem."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.support import (
    LOADED_LATE_S,
    SETTLE_S,
    Procs,
    Receiver,
    wait_until,
)

PACKAGE = "timer_wheel_client"
GENERATOR = shutil.which("openapi-python-client") or str(
    Path(sys.executable).with_name("openapi-python-client")
)


@pytest.fixture
def generated(procs: Procs, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The base URL of a running API, and the package of a client
    generated from its document (importable while the test runs)."""
    base = procs.api()
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{base}/openapi.json").content)
    config = tmp_path / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    made = subprocess.run(
        [
            GENERATOR,
            "generate",
            "--path",
            str(document),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield base, PACKAGE
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    """A module of the generated package."""
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_client_drives_a_timer(
    generated: tuple[str, str], procs: Procs, receiver: Receiver
) -> None:
    """Create (with at and a request), read, list, reschedule, fire and
    cancel through the generated functions; 422 and 404 are Problems."""
    base, _ = generated
    procs.role("ticker")
    procs.role("worker")
    models = module("models")
    client = module("client").Client(base_url=base, timeout=10.0)
    create = module("api.timers.create_timer")
    get = module("api.timers.get_timer")
    listing = module("api.timers.list_timers")
    move = module("api.timers.reschedule_timer")
    cancel = module("api.timers.cancel_timer")

    request = models.RequestSpec(
        method=models.RequestSpecMethod.PUT,
        headers=models.RequestSpecHeaders.from_dict({"X-Tenant": "acme"}),
        body="hello",
    )
    at = datetime.now(UTC) + timedelta(hours=1)
    created = create.sync(
        client=client,
        body=models.TimerRequest(url=receiver.url, at=at, request=request),
    )
    assert isinstance(created, models.TimerCreated), created
    assert 3590 <= created.time_left <= 3601

    view = get.sync(created.id, client=client)
    assert isinstance(view, models.TimerView)
    assert view.status == "pending"
    assert view.request.body == "hello"
    page = listing.sync(client=client, limit=10)
    assert isinstance(page, models.TimerPage)
    assert created.id in [item.id for item in page.items]
    assert page.next_cursor is None

    moved = move.sync(
        created.id, client=client, body=models.Reschedule(seconds=1)
    )
    assert isinstance(moved, models.TimerView), moved
    timer_id = str(created.id)
    wait_until(
        lambda: receiver.ids()[timer_id] == 1,
        timeout_s=1 + LOADED_LATE_S,
        what="the webhook",
    )
    (arrival,) = receiver.arrivals
    assert (arrival.method, arrival.body) == ("PUT", b"hello")
    wait_until(
        lambda: get.sync(created.id, client=client).status == "fired",
        timeout_s=SETTLE_S,
        what="fired",
    )

    bad = create.sync(
        client=client, body=models.TimerRequest(url="ftp://x", seconds=1)
    )
    assert isinstance(bad, models.Problem)
    assert bad.status == 422
    assert bad.errors[0].field == "url"
    gone = get.sync("0190f0e2-0000-8000-8000-000000000000", client=client)
    assert isinstance(gone, models.Problem)
    assert gone.status == 404
    other = create.sync(
        client=client, body=models.TimerRequest(url=receiver.url, hours=1)
    )
    answer = cancel.sync_detailed(other.id, client=client)
    assert answer.status_code == 204
    late = move.sync(other.id, client=client, body=models.Reschedule(hours=2))
    assert isinstance(late, models.Problem)
    assert late.status == 409


def test_functions_are_named_after_operation_ids(
    generated: tuple[str, str],
) -> None:
    """createTimer is create_timer (not post_timer), and so on."""
    for name in (
        "timers.create_timer",
        "timers.get_timer",
        "timers.cancel_timer",
        "timers.list_timers",
        "timers.reschedule_timer",
        "operators.retry_timer",
        "operators.list_dead_letters",
        "health.get_health",
    ):
        assert hasattr(module(f"api.{name}"), "sync"), name
