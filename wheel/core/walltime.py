"""Wall times of an IANA zone and the UTC instants they stand for.

A schedule names wall times (what a clock on the wall of its zone shows);
the wheel needs instants (epoch ms). Most wall times are one instant.
Around a daylight-saving change two kinds are not, and these are the
rules (``wheel/core/cron.py`` states them for schedules):

- **Gap** (spring forward, e.g. 02:00 -> 03:00): a wall time the clock
  skips stands for the first instant after the gap, the moment of the
  change (02:30 becomes 03:00). Every skipped wall time maps to that one
  instant.
- **Overlap** (fall back, e.g. 03:00 -> 02:00): a wall time the clock
  shows twice stands for two instants, the first pass and the repeat;
  the caller picks.

Zones without daylight saving (UTC, ``Etc/GMT+5``) have neither.
Instants here are whole milliseconds; wall times are naive datetimes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)


def wall_of(instant_ms: int, zone: ZoneInfo) -> datetime:
    """The naive wall time of ``instant_ms`` in ``zone``.

    Its ``fold`` is 1 when the instant is the repeat of a wall time in an
    overlap, as :pep:`495` defines it.
    """
    seconds, ms = divmod(instant_ms, 1000)
    local = datetime.fromtimestamp(seconds, zone)
    return local.replace(tzinfo=None, microsecond=ms * 1000)


def instants_of(wall: datetime, zone: ZoneInfo) -> tuple[int, ...]:
    """The instants (epoch ms, ascending) that a naive wall time stands for.

    One instant for an ordinary wall time; the moment the gap ends for a
    wall time in a gap; two (first pass, repeat) in an overlap.
    """
    naive_ms = (wall.replace(fold=0) - _EPOCH) // _ONE_MS
    before = _offset_ms(wall, zone, fold=0)
    after = _offset_ms(wall, zone, fold=1)
    if before == after:
        return (naive_ms - before,)
    if before > after:
        # Fall back: the first pass keeps the larger, earlier offset.
        return (naive_ms - before, naive_ms - after)
    # Spring forward. zoneinfo reads a skipped wall time with the earlier
    # offset for fold=0 (an instant past the change) and the later one
    # for fold=1 (an instant before it): the change lies between them.
    return (_change_ms(zone, naive_ms - after, naive_ms - before),)


def earliest_wall(instant_ms: int, zone: ZoneInfo, repeats: bool) -> datetime:
    """A wall time from which every instant after ``instant_ms`` is found.

    Wall times read forward from ``wall_of(instant_ms)`` find every later
    instant but one kind: when ``instant_ms`` is in the first pass of an
    overlap, the repeats of wall times earlier in that overlap are later
    instants. When the caller keeps repeats (``repeats``), the wall time
    moves back by the overlap's length to cover them.
    """
    wall = wall_of(instant_ms, zone)
    if repeats and wall.fold == 0:
        overlap_ms = _offset_ms(wall, zone, 0) - _offset_ms(wall, zone, 1)
        if overlap_ms > 0:
            wall -= overlap_ms * _ONE_MS
    return wall.replace(fold=0)


def _offset_ms(wall: datetime, zone: ZoneInfo, fold: int) -> int:
    """The UTC offset (ms) of a naive wall time read with ``fold``."""
    offset = wall.replace(tzinfo=zone, fold=fold).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset // _ONE_MS


def _offset_at_ms(instant_ms: int, zone: ZoneInfo) -> int:
    """The UTC offset (ms) in force at ``instant_ms``."""
    offset = datetime.fromtimestamp(instant_ms // 1000, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset // _ONE_MS


def _change_ms(zone: ZoneInfo, before_ms: int, after_ms: int) -> int:
    """The first instant in (before_ms, after_ms] with the later offset.

    The offset at ``before_ms`` differs from the one at ``after_ms`` and
    changes once between them. tzdata changes offsets on whole seconds,
    so a bisection over seconds finds the moment (about 12 steps for a
    one-hour gap).
    """
    offset_before = _offset_at_ms(before_ms, zone)
    low_s, high_s = before_ms // 1000, -(-after_ms // 1000)
    while high_s - low_s > 1:
        middle_s = (low_s + high_s) // 2
        if _offset_at_ms(middle_s * 1000, zone) == offset_before:
            low_s = middle_s
        else:
            high_s = middle_s
    return high_s * 1000
