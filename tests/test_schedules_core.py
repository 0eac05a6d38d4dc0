"""Pure: a schedule's stored definition, its occurrences' requests, what
one roll does (misfire policy and grace), and what an edit writes."""

from __future__ import annotations

import json

import pytest

from wheel.api.schedule_validation import ScheduleChange
from wheel.api.schedules import edit_of
from wheel.core.cron import InvalidSchedule
from wheel.core.delays import parse_rfc3339
from wheel.core.ids import to_text
from wheel.core.occurrences import ALL_CAP, occurrence_id
from wheel.core.schedules import (
    CHUNK_BYTES,
    Definition,
    chunks,
    default_body,
    occurrence_request,
    pack_definition,
    plan_roll,
    unpack_definition,
)
from wheel.core.webhook_request import WebhookRequest, pack, unpack
from wheel.storage.replies import ScheduleRecord

SCHEDULE = bytes.fromhex("0190a3b27c4d8e5f9a6b1c2d3e4f5a6b")
T0_MS = 1_750_000_020_000  # 2025-06-15T15:07:00Z, a whole minute
URL = "https://example.com/hook"


def every(cron: str = "* * * * *", misfire: str = "once") -> Definition:
    """A definition in UTC to :data:`URL`."""
    return Definition(cron, "UTC", URL, None, None, None, misfire)


@pytest.mark.parametrize(
    "definition",
    [
        every(),
        Definition(
            "*/10 * * * * *",
            "Europe/Amsterdam",
            "https://example.com/" + "é" * 300,
            pack(WebhookRequest("PUT", (("A", "b"),), "x" * 500)),
            T0_MS,
            T0_MS + 86_400_000,
            "all",
        ),
    ],
)
def test_a_definition_packs_and_unpacks_in_small_chunks(
    definition: Definition,
) -> None:
    """Packed, cut into chunks of at most 60 bytes, joined, unpacked:
    the same definition."""
    parts = chunks(pack_definition(definition))
    assert all(0 < len(part) <= CHUNK_BYTES for part in parts)
    assert unpack_definition(b"".join(parts)) == definition


def test_an_unreadable_definition_is_a_value_error() -> None:
    """Garbage is refused, not half read."""
    with pytest.raises(ValueError, match="not a packed definition"):
        unpack_definition(b"\x93\x01")


def test_the_default_body_names_the_occurrence() -> None:
    """{"id", "schedule_id", "scheduled_for"}, RFC 3339 UTC with ms."""
    occurrence = occurrence_id(SCHEDULE, T0_MS, 16)
    body = json.loads(default_body(occurrence, SCHEDULE, T0_MS))
    assert body == {
        "id": to_text(occurrence),
        "schedule_id": "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6b",
        "scheduled_for": "2025-06-15T15:07:00.000Z",
    }
    assert parse_rfc3339(body["scheduled_for"]) == T0_MS


@pytest.mark.parametrize(
    ("own", "method", "body_is_default"),
    [
        (None, "POST", True),
        (WebhookRequest("PUT", (("X", "1"),)), "PUT", True),
        (WebhookRequest("PATCH", (), "mine"), "PATCH", False),
        (WebhookRequest("GET"), "GET", False),
        (WebhookRequest("DELETE", (("X", "2"),)), "DELETE", False),
    ],
)
def test_an_occurrence_sends_the_schedules_request(
    own: WebhookRequest | None, method: str, body_is_default: bool
) -> None:
    """Method and headers are the schedule's; the body its own, else
    the default (none for GET and DELETE)."""
    occurrence = occurrence_id(SCHEDULE, T0_MS, 16)
    sent = unpack(occurrence_request(own, occurrence, SCHEDULE, T0_MS))
    assert sent.method == method
    assert sent.headers == (own.headers if own else ())
    if body_is_default:
        assert sent.body == default_body(occurrence, SCHEDULE, T0_MS)
    else:
        assert sent.body == (own.body if own else None)


def test_an_occurrence_on_time_fires_and_the_next_follows() -> None:
    """Not late: this one fires, the next occurrence follows."""
    plan = plan_roll(SCHEDULE, every(), T0_MS, T0_MS + 5, 16)
    assert [o.scheduled_ms for o in plan.fire] == [T0_MS]
    assert plan.fire[0].id == occurrence_id(SCHEDULE, T0_MS, 16)
    assert (plan.missed, plan.next_ms) == (0, T0_MS + 60_000)


def test_an_occurrence_not_due_is_refused() -> None:
    """Never early."""
    with pytest.raises(ValueError, match="not due"):
        plan_roll(SCHEDULE, every(), T0_MS, T0_MS - 1, 16)


@pytest.mark.parametrize(
    ("misfire", "fired", "missed"),
    [("once", [0], 9), ("skip", [], 10), ("all", list(range(10)), 0)],
)
def test_past_the_grace_the_policy_decides(
    misfire: str, fired: list[int], missed: int
) -> None:
    """Ten minutes overdue, a 30 s grace: once fires the first, skip
    none, all each; the next is the first from now."""
    now_ms = T0_MS + 9 * 60_000 + 30_000
    plan = plan_roll(
        SCHEDULE, every(misfire=misfire), T0_MS, now_ms, 16, 30_000
    )
    assert [o.scheduled_ms for o in plan.fire] == [
        T0_MS + 60_000 * i for i in fired
    ]
    assert (plan.missed, plan.next_ms) == (missed, T0_MS + 10 * 60_000)


@pytest.mark.parametrize("misfire", ["once", "skip", "all"])
def test_lateness_within_the_grace_fires_each_in_turn(misfire: str) -> None:
    """Twenty seconds late on a 10 s schedule, a 30 s grace: whatever
    the policy, this one fires and the next (due) follows, so each fires
    in turn."""
    plan = plan_roll(
        SCHEDULE,
        every("*/10 * * * * *", misfire),
        T0_MS,
        T0_MS + 20_000,
        16,
        30_000,
    )
    assert [o.scheduled_ms for o in plan.fire] == [T0_MS]
    assert (plan.missed, plan.next_ms) == (0, T0_MS + 10_000)


def test_all_is_capped() -> None:
    """Past the cap the rest count as missed."""
    plan = plan_roll(
        SCHEDULE, every(misfire="all"), T0_MS, T0_MS + 300 * 60_000, 16
    )
    assert len(plan.fire) == ALL_CAP
    assert plan.missed == 300 - ALL_CAP


def test_the_last_occurrence_has_no_successor() -> None:
    """end_at reached: the schedule ends after this one."""
    ending = every().edited(end_at_ms=T0_MS + 30_000)
    plan = plan_roll(SCHEDULE, ending, T0_MS, T0_MS, 16)
    assert (len(plan.fire), plan.next_ms) == (1, None)


def _record(
    paused: bool = False,
    next_ms: int | None = T0_MS + 60_000,
    last_ms: int | None = T0_MS,
) -> ScheduleRecord:
    return ScheduleRecord(
        SCHEDULE,
        b"3",
        every(),
        paused,
        next_ms,
        None if last_ms is None else occurrence_id(SCHEDULE, last_ms, 16),
        0,
        0,
        0,
    )


def test_a_pause_takes_the_next_occurrence_off() -> None:
    """Paused: no next occurrence; the definition stays."""
    edit = edit_of(_record(), ScheduleChange(paused=True), T0_MS + 10)
    assert (edit.paused, edit.next_ms, edit.definition) == (True, None, None)


def test_a_resume_puts_the_first_from_now_on() -> None:
    """Resumed an hour later: the first occurrence after now."""
    now_ms = T0_MS + 3_600_000 + 10
    edit = edit_of(
        _record(paused=True, next_ms=None),
        ScheduleChange(paused=False),
        now_ms,
    )
    assert (edit.paused, edit.next_ms) == (False, T0_MS + 3_660_000)


def test_a_new_cron_starts_after_the_last_handed_over() -> None:
    """A clock estimate behind the last occurrence handed over cannot
    make the new cron repeat it."""
    edit = edit_of(
        _record(last_ms=T0_MS + 120_000),
        ScheduleChange(cron="*/2 * * * *"),
        T0_MS,
    )
    # 15:09 handed over; the next even minute after it is 15:10.
    assert edit.next_ms == T0_MS + 180_000
    assert edit.definition is not None
    assert edit.definition.cron == "*/2 * * * *"


def test_a_new_url_keeps_the_next_occurrence() -> None:
    """url and request change what is sent, not when."""
    edit = edit_of(
        _record(),
        ScheduleChange(
            url=URL + "/2",
            request=WebhookRequest("PUT"),
            request_given=True,
        ),
        T0_MS + 10,
    )
    assert edit.next_ms == T0_MS + 60_000
    assert edit.definition is not None
    assert edit.definition.url == URL + "/2"
    assert unpack(edit.definition.request or b"").method == "PUT"


def test_a_bad_new_zone_is_refused_naming_it() -> None:
    """An unknown zone raises with the field named."""
    with pytest.raises(InvalidSchedule) as refused:
        edit_of(_record(), ScheduleChange(timezone="Mars/Base"), T0_MS)
    assert [p.field for p in refused.value.problems] == ["timezone"]
