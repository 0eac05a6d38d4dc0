"""Where a url's authority ends (pure logic)."""

from __future__ import annotations

import pytest

from wheel.core.urls import authority_end


@pytest.mark.parametrize(
    ("rest", "stops", "end"),
    [
        ("a.io/x?y#z", "/?#", 4),
        ("a.io?y/z", "/?#", 4),
        ("a.io#z?y", "/?#", 4),
        ("u:p@a.io:8443", "/?#", 13),
        ("a.io\\@127.0.0.1/x", "/?#", 15),
        ("a.io\\@127.0.0.1/x", "/?#\\", 4),
        ("", "/?#", 0),
    ],
)
def test_authority_ends_at_the_first_stop(
    rest: str, stops: str, end: int
) -> None:
    assert authority_end(rest, stops) == end
