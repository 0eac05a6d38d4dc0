"""Timer ids: UUIDv8 carrying the expected due time, and their shards.

An id is an RFC 9562 UUID version 8 laid out like a UUIDv7: the first 48
bits hold the due time the API expected when it chose the id (epoch ms of
its clock estimate), the remaining 74 free bits are random. The due time
in the id only groups finished records into hourly retention buckets
(``finished_hour``), so a ``GET`` finds a fired timer's record without an
index; nothing else trusts it. Any UUID (a v4 id of an earlier version,
say) still works: its "due time" is then noise, but the same noise every
time it is read.

Random bits come from ``os.urandom`` in blocks, one system call per
:data:`_BLOCK_IDS` ids instead of one per id.
"""

from __future__ import annotations

import os
import uuid

_BLOCK_IDS = 512
_RANDOM_BYTES = 10  # 80 bits drawn; 74 are used
_TIME_MASK = (1 << 48) - 1
_RAND_A_MASK = (1 << 12) - 1
_RAND_B_MASK = (1 << 62) - 1
_VERSION_8 = 8 << 76
_VARIANT_RFC = 0b10 << 62
HOUR_MS = 3_600_000


class IdSource:
    """Makes timer ids from a buffer of kernel randomness."""

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0

    def _draw(self) -> int:
        if self._offset >= len(self._buffer):
            self._buffer = os.urandom(_RANDOM_BYTES * _BLOCK_IDS)
            self._offset = 0
        start = self._offset
        self._offset += _RANDOM_BYTES
        return int.from_bytes(self._buffer[start : self._offset], "big")

    def new(self, due_ms: int, shards: int = 1, shard: int = 0) -> bytes:
        """A fresh id (16 bytes) expected due at ``due_ms``.

        With ``shards`` > 1 the id is drawn so that :func:`shard_of` maps
        it to ``shard`` (an idempotent create picks the shard from its
        key before the id exists).
        """
        while True:
            bits = self._draw()
            number = (
                (due_ms & _TIME_MASK) << 80
                | _VERSION_8
                | (bits >> 62 & _RAND_A_MASK) << 64
                | _VARIANT_RFC
                | bits & _RAND_B_MASK
            )
            if shards > 1:
                low = number & _RAND_B_MASK
                low += shard - number % shards
                # Moving the low bits to the wanted residue must stay
                # inside the random field; otherwise draw again.
                if not 0 <= low <= _RAND_B_MASK:
                    continue
                number = number & ~_RAND_B_MASK | low
            return number.to_bytes(16, "big")


def shard_of(timer_id: bytes, shards: int) -> int:
    """The shard that owns ``timer_id``; stable for a given shard count."""
    return int.from_bytes(timer_id, "big") % shards


def finished_hour(timer_id: bytes) -> int:
    """The retention bucket (epoch hour) of the id's finished record."""
    return (int.from_bytes(timer_id[:6], "big")) // HOUR_MS


def to_text(timer_id: bytes) -> str:
    """The canonical lower-case UUID string of a 16-byte id."""
    h = timer_id.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse(text: str) -> bytes | None:
    """The 16-byte id of a UUID string, or None when it is not one.

    Only the hyphenated 36-character form is accepted (in either case).
    """
    if len(text) != 36 or text[8] + text[13] + text[18] + text[23] != "----":
        return None
    try:
        raw = bytes.fromhex(text.replace("-", ""))
    except ValueError:
        return None
    # fromhex skips whitespace: "12 34..." would decode short.
    return raw if len(raw) == 16 else None


def from_uuid(value: uuid.UUID) -> bytes:
    """The 16-byte id of a :class:`uuid.UUID`."""
    return value.bytes
