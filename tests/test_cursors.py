"""Listing cursors come back from clients: a cursor that decodes but
holds what the service never writes is refused as invalid before any
of it reaches Redis (where it would be Redis' error, a 500)."""

from __future__ import annotations

import msgspec
import pytest

from wheel.core import paging
from wheel.storage.finished_walk import HourCursor
from wheel.storage.stream_walk import StreamCursor

LISTING = paging.fingerprint("failed", None, None, None)


def forged(*fields: object) -> str:
    """A cursor of LISTING holding ``fields``, as a client could make."""
    state = msgspec.Raw(msgspec.msgpack.encode(list(fields)))
    return paging.encode(LISTING, state)  # type: ignore[arg-type]


@pytest.mark.parametrize("entry", [b"", b"0-0", b"1733500000000-7"])
def test_a_stream_cursor_round_trips(entry: bytes) -> None:
    text = paging.encode(LISTING, StreamCursor(3, entry))
    assert paging.decode(text, LISTING, StreamCursor) == StreamCursor(3, entry)


@pytest.mark.parametrize(
    "entry", [b"not-an-id", b"1", b"-", b"1-2-3", b"1-2\n", b"9" * 21 + b"-0"]
)
def test_a_stream_cursor_holds_an_entry_id(entry: bytes) -> None:
    with pytest.raises(paging.CursorInvalid):
        paging.decode(forged(0, entry), LISTING, StreamCursor)


@pytest.mark.parametrize("scan", [-1, -(2**63)])
def test_an_hour_cursor_holds_a_scan_cursor(scan: int) -> None:
    with pytest.raises(paging.CursorInvalid):
        paging.decode(forged(0, 5, scan, []), LISTING, HourCursor)


def test_an_hour_cursor_round_trips() -> None:
    state = HourCursor(2, 5, 2**64 - 1, [bytes(16)])
    text = paging.encode(LISTING, state)
    assert paging.decode(text, LISTING, HourCursor) == state
