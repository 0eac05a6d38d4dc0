"""Redis Cluster key slots, and hash tags that spread shards evenly.

Shard ``k`` of ``N`` must live in the ``k``-th of ``N`` equal ranges of
the 16384 slots, so that however a cluster splits its slots between
masters, each master holds its share of shards. A plain tag ``{tw:k}``
lands where CRC16 puts it (16 shards fall 3/5/8 on 3 masters).
:func:`spread_tags` walks short candidate tags ``{tw#0}``, ``{tw#1}``,
... (base 36) and gives each range the first candidate that lands in it.
The walk is deterministic, so every process computes the same tags.
"""

from __future__ import annotations

import binascii
import functools

SLOTS = 16384
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def key_slot(key: bytes) -> int:
    """The cluster slot of ``key`` (CRC16 of its hash tag, mod 16384)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS


def range_of(slot: int, shards: int) -> int:
    """Which of ``shards`` equal slot ranges ``slot`` falls in."""
    return slot * shards // SLOTS


def _base36(number: int) -> str:
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = _DIGITS[digit] + text
        if not number:
            return text


@functools.lru_cache(maxsize=8)
def spread_tags(prefix: str, shards: int) -> tuple[str, ...]:
    """The hash tag of every shard, ``{<prefix>#<base36>}``, in order.

    Tag ``k`` hashes into range ``k`` (:func:`range_of`). Finding all
    ranges takes about ``shards * ln(shards)`` candidates (a coupon
    collector): 170,000 CRCs at the maximum of 16384 shards.
    """
    tags: list[str | None] = [None] * shards
    missing = shards
    candidate = 0
    while missing:
        inner = f"{prefix}#{_base36(candidate)}"
        shard = range_of(binascii.crc_hqx(inner.encode(), 0) % SLOTS, shards)
        if tags[shard] is None:
            tags[shard] = "{" + inner + "}"
            missing -= 1
        candidate += 1
    return tuple(tag for tag in tags if tag is not None)
