"""Timer ids: UUIDv8 layout, shard steering, text forms."""

from __future__ import annotations

import random
import uuid

import pytest

from wheel.core.ids import (
    HOUR_MS,
    IdSource,
    finished_hour,
    from_uuid,
    parse,
    shard_of,
    to_text,
)

SAMPLE = "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6b"
SHARD_COUNTS = [1, 2, 3, 7, 16, 256, 16384]


def _shards_to_try(shards: int) -> list[int]:
    rng = random.Random(shards)
    picks = {0, 1 % shards, shards // 2, shards - 1}
    picks.update(rng.randrange(shards) for _ in range(4))
    return sorted(picks)


@pytest.mark.parametrize(
    "due_ms", [0, 1, 1_700_000_000_000, 1_764_590_000_123, 2**48 - 1]
)
@pytest.mark.parametrize(("shards", "shard"), [(1, 0), (16, 5), (16384, 99)])
def test_new_is_a_version_8_rfc_uuid_led_by_the_due_ms(
    due_ms: int, shards: int, shard: int
) -> None:
    """An id is a UUIDv8 (RFC variant) whose first 48 bits are the due ms."""
    source = IdSource()
    for _ in range(50):
        timer_id = source.new(due_ms, shards, shard)
        value = uuid.UUID(bytes=timer_id)
        assert len(timer_id) == 16
        assert value.variant == uuid.RFC_4122
        assert value.version == 8
        assert int.from_bytes(timer_id[:6], "big") == due_ms


@pytest.mark.parametrize("shards", SHARD_COUNTS)
def test_new_lands_on_the_requested_shard(shards: int) -> None:
    """An id drawn for a shard maps back to that shard by shard_of."""
    source = IdSource()
    for shard in _shards_to_try(shards):
        for _ in range(50):
            timer_id = source.new(1_700_000_000_000, shards, shard)
            assert shard_of(timer_id, shards) == shard
            assert uuid.UUID(bytes=timer_id).version == 8


def test_ids_are_unique() -> None:
    """A hundred thousand ids for the same due ms never repeat."""
    source = IdSource()
    ids = {source.new(1_700_000_000_000) for _ in range(100_000)}
    assert len(ids) == 100_000


def test_ids_steered_to_one_shard_are_unique() -> None:
    """Steering ids to one shard keeps them distinct."""
    source = IdSource()
    ids = {source.new(1_700_000_000_000, 16, 3) for _ in range(20_000)}
    assert len(ids) == 20_000


def test_every_random_bit_varies() -> None:
    """Each of the 74 random bits takes both values over many ids."""
    source = IdSource()
    numbers = [
        int.from_bytes(source.new(1_700_000_000_000), "big")
        for _ in range(2000)
    ]
    random_bits = [*range(62), *range(64, 76)]
    for bit in random_bits:
        seen = {number >> bit & 1 for number in numbers}
        assert seen == {0, 1}, bit


def test_separate_sources_do_not_repeat_each_other() -> None:
    """Two sources (two processes, say) draw different ids."""
    first = {IdSource().new(0) for _ in range(1000)}
    second = {IdSource().new(0) for _ in range(1000)}
    assert not first & second


@pytest.mark.parametrize(
    ("number", "shards", "shard"),
    [
        (0, 1, 0),
        (12345, 1, 0),
        (0, 4, 0),
        (5, 4, 1),
        (7, 4, 3),
        (2**128 - 1, 16, 15),
        (2**127 + 3, 10, (2**127 + 3) % 10),
        (16384 * 5 + 77, 16384, 77),
    ],
)
def test_shard_of(number: int, shards: int, shard: int) -> None:
    """A shard is the id's 128-bit integer modulo the shard count."""
    assert shard_of(number.to_bytes(16, "big"), shards) == shard


def test_shard_of_a_v4_uuid_is_stable() -> None:
    """Any UUID (a v4 of an older release) has one stable shard."""
    rng = random.Random(7)
    for _ in range(500):
        timer_id = uuid.UUID(int=rng.getrandbits(128), version=4).bytes
        shard = shard_of(timer_id, 16)
        assert 0 <= shard < 16
        assert shard_of(bytes(timer_id), 16) == shard


@pytest.mark.parametrize(
    ("due_ms", "hour"),
    [
        (0, 0),
        (HOUR_MS - 1, 0),
        (HOUR_MS, 1),
        (1_700_000_000_000, 472_222),
        (1_700_002_799_999, 472_222),
        (1_700_002_800_000, 472_223),
        (2**48 - 1, (2**48 - 1) // HOUR_MS),
    ],
)
def test_finished_hour(due_ms: int, hour: int) -> None:
    """A finished record's hour is the epoch hour of the id's due ms."""
    assert finished_hour(IdSource().new(due_ms, 16, 9)) == hour
    assert finished_hour(due_ms.to_bytes(6, "big") + b"\xff" * 10) == hour


def test_to_text_is_the_canonical_uuid_string() -> None:
    """to_text writes what str(uuid.UUID(bytes=...)) writes."""
    source = IdSource()
    rng = random.Random(5)
    ids = [source.new(rng.randrange(2**48)) for _ in range(500)]
    ids += [bytes(16), b"\xff" * 16, uuid.UUID(SAMPLE).bytes]
    for timer_id in ids:
        assert to_text(timer_id) == str(uuid.UUID(bytes=timer_id))


@pytest.mark.parametrize(
    "text",
    [
        SAMPLE,
        SAMPLE.upper(),
        "0190A3B2-7c4d-8E5F-9a6b-1C2D3E4F5A6B",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
    ],
)
def test_parse_accepts_the_hyphenated_form(text: str) -> None:
    """The 36-character hyphenated form parses (either case) to 16 bytes."""
    raw = parse(text)
    assert raw == uuid.UUID(text).bytes
    assert raw is not None and len(raw) == 16


@pytest.mark.parametrize(
    "text",
    [
        "",
        SAMPLE[:-1],
        SAMPLE + "0",
        SAMPLE.replace("-", ""),
        "{" + SAMPLE + "}",
        "urn:uuid:" + SAMPLE,
        SAMPLE[:8] + SAMPLE[9:13] + "-" + SAMPLE[13:] + "0",
        "0190a3b-27c4d-8e5f-9a6b-1c2d3e4f5a6b",
        "0190a3b2-7c4d8-e5f-9a6b-1c2d3e4f5a6b",
        "0190a3b2-7c4d-8e5f9-a6b-1c2d3e4f5a6b",
        "0190a3b2-7c4d-8e5f-9a6b1-c2d3e4f5a6b",
        "0190a3b2_7c4d_8e5f_9a6b_1c2d3e4f5a6b",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6-",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5--b",
        "0190a3g2-7c4d-8e5f-9a6b-1c2d3e4f5a6b",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6z",
        "+190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6b",
        "0x90a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6b",
        " 190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6b",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6 ",
        "0190a3b2-7c 4-8e5f-9a6b-1c2d3e4f5a6b",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a\n6",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f\t5a6",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d 3e4f5a6",
        " " + SAMPLE,
        SAMPLE + "\n",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a\u0666b",
        "0190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a\uff16b",
        "\u00e9190a3b2-7c4d-8e5f-9a6b-1c2d3e4f5a6b",
    ],
)
def test_parse_refuses_anything_else(text: str) -> None:
    """Wrong length, misplaced hyphens, non-hex or spaces give None."""
    assert parse(text) is None


def test_round_trips() -> None:
    """Bytes -> text -> bytes and text -> bytes -> text are identities."""
    source = IdSource()
    for shards in SHARD_COUNTS:
        timer_id = source.new(1_700_000_000_000, shards, shards - 1)
        assert parse(to_text(timer_id)) == timer_id
    assert to_text(parse(SAMPLE.upper()) or b"") == SAMPLE
    value = uuid.UUID(SAMPLE)
    assert from_uuid(value) == value.bytes == parse(SAMPLE)
