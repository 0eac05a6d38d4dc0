"""Cluster key slots, slot ranges, and the spread of shard hash tags."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from redis.crc import key_slot as redis_key_slot

from wheel.storage.slots import SLOTS, key_slot, range_of, spread_tags

SPREAD_COUNTS = [*range(1, 65), 256, 1024, 16384]


def _masters(count: int) -> list[range]:
    """The slot ranges ``redis-cli --cluster create`` gives masters."""
    # Its float-cursor split: 3 masters own 0-5460, 5461-10922 and
    # 10923-16383, one slot off the equal ranges of range_of().
    per = SLOTS / count
    first, cursor, ranges = 0, 0.0, []
    for i in range(count):
        last = round(cursor + per - 1)
        if last > SLOTS - 1 or i == count - 1:
            last = SLOTS - 1
        ranges.append(range(first, last + 1))
        first, cursor = last + 1, cursor + per
    return ranges


def _per_master(shards: int, masters: int) -> list[int]:
    """How many of the shards' tags each master holds."""
    ranges = _masters(masters)
    held = Counter(
        next(i for i, r in enumerate(ranges) if key_slot(tag.encode()) in r)
        for tag in spread_tags("tw", shards)
    )
    return [held[i] for i in range(masters)]


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        (b"", b""),
        (b"a", b"a"),
        (b"foo", b"foo"),
        (b"123456789", b"123456789"),
        (b"{}", b"{}"),
        (b"{}a", b"{}a"),
        (b"a{}", b"a{}"),
        (b"foo{}{bar}", b"foo{}{bar}"),
        (b"{a}", b"a"),
        (b"{a}{b}", b"a"),
        (b"x{y}z", b"y"),
        (b"{user1000}.following", b"user1000"),
        (b"{user1000}.followers", b"user1000"),
        (b"foo{{bar}}zap", b"{bar"),
        (b"foo{bar}{zap}", b"bar"),
        (b"{", b"{"),
        (b"}", b"}"),
        (b"a{b", b"a{b"),
        (b"}{a}", b"a"),
        (b"}a{", b"}a{"),
        (b"{tw#0}:idx", b"tw#0"),
        (b"\xff{\x00\xfe}\x01", b"\x00\xfe"),
    ],
)
def test_key_slot(key: bytes, hashed: bytes) -> None:
    """A key's slot is redis-py's, from its first non-empty hash tag."""
    assert key_slot(key) == redis_key_slot(key)
    assert key_slot(key) == redis_key_slot(hashed)
    assert 0 <= key_slot(key) < SLOTS


def test_key_slot_known_values() -> None:
    """CRC16/XMODEM of "123456789" is 0x31C3 (the cluster spec's check)."""
    assert key_slot(b"123456789") == 0x31C3
    assert key_slot(b"foo") == 12182
    assert key_slot(b"{foo}bar") == 12182


def test_key_slot_matches_redis_py_on_random_keys() -> None:
    """Random keys full of braces get redis-py's slot."""
    rng = random.Random(4)
    alphabet = b"ab{}{}"
    for _ in range(5000):
        key = bytes(rng.choice(alphabet) for _ in range(rng.randrange(9)))
        assert key_slot(key) == redis_key_slot(key), key


@pytest.mark.parametrize(
    ("slot", "shards", "index"),
    [
        (0, 1, 0),
        (16383, 1, 0),
        (0, 2, 0),
        (8191, 2, 0),
        (8192, 2, 1),
        (16383, 2, 1),
        (5461, 3, 0),
        (5462, 3, 1),
        (10922, 3, 1),
        (10923, 3, 2),
        (1023, 16, 0),
        (1024, 16, 1),
        (16383, 16, 15),
        (0, 16384, 0),
        (12345, 16384, 12345),
        (16383, 16384, 16383),
    ],
)
def test_range_of(slot: int, shards: int, index: int) -> None:
    """A slot falls in the equal range ``slot * shards // 16384``."""
    assert range_of(slot, shards) == index


@pytest.mark.parametrize("shards", [1, 3, 7, 16, 100, 16384])
def test_ranges_cover_every_slot_in_order(shards: int) -> None:
    """Ranges are contiguous, ordered, and each has a slot."""
    indexes = [range_of(slot, shards) for slot in range(SLOTS)]
    assert indexes == sorted(indexes)
    assert set(indexes) == set(range(shards))


@pytest.mark.parametrize("shards", SPREAD_COUNTS)
def test_spread_tag_k_hashes_into_range_k(shards: int) -> None:
    """Every shard's tag is distinct, well formed and in its own range."""
    tags = spread_tags("tw", shards)
    assert len(tags) == shards
    assert len(set(tags)) == shards
    for k, tag in enumerate(tags):
        assert re.fullmatch(r"\{tw#[0-9a-z]+\}", tag), tag
        assert range_of(key_slot(tag.encode()), shards) == k
        assert key_slot(f"{tag}:t:anything".encode()) == key_slot(tag.encode())


@pytest.mark.parametrize(
    ("shards", "tags"),
    [
        (1, ("{tw#0}",)),
        (4, ("{tw#3}", "{tw#2}", "{tw#1}", "{tw#0}")),
        (
            16,
            (
                "{tw#3}",
                "{tw#2a}",
                "{tw#b}",
                "{tw#20}",
                "{tw#2}",
                "{tw#2d}",
                "{tw#c}",
                "{tw#21}",
                "{tw#1}",
                "{tw#2c}",
                "{tw#d}",
                "{tw#22}",
                "{tw#0}",
                "{tw#2b}",
                "{tw#a}",
                "{tw#23}",
            ),
        ),
    ],
)
def test_spread_tags_are_fixed(shards: int, tags: tuple[str, ...]) -> None:
    """The walk is deterministic: every process (and release) agrees."""
    assert spread_tags("tw", shards) == tags
    spread_tags.cache_clear()
    assert spread_tags("tw", shards) == tags


def test_spread_tags_depend_on_the_prefix() -> None:
    """Another prefix gives other tags, each still in its range."""
    tags = spread_tags("other", 16)
    assert tags != spread_tags("tw", 16)
    assert all(tag.startswith("{other#") for tag in tags)
    for k, tag in enumerate(tags):
        assert range_of(key_slot(tag.encode()), 16) == k


def test_plain_tags_would_be_lopsided() -> None:
    """Without spreading, {tw:k} puts 16 shards 5/8/3 on 3 masters."""
    ranges = _masters(3)
    held = Counter(
        next(
            i
            for i, r in enumerate(ranges)
            if key_slot(f"{{tw:{k}}}".encode()) in r
        )
        for k in range(16)
    )
    assert sorted(held.values()) == [3, 5, 8]


@pytest.mark.parametrize(
    ("masters", "ranges"),
    [
        (1, [range(0, 16384)]),
        (
            3,
            [range(0, 5461), range(5461, 10923), range(10923, 16384)],
        ),
    ],
)
def test_master_split_helper(masters: int, ranges: list[range]) -> None:
    """The test's model of redis-cli's slot split is the known one."""
    assert _masters(masters) == ranges


def test_48_shards_on_3_masters_are_16_each() -> None:
    """48 shards on 3 equal masters: 16 each, within 25% of the mean."""
    held = _per_master(48, 3)
    assert held == [16, 16, 16]
    assert all(abs(n - 16) <= 0.25 * 16 for n in held)


def test_16_shards_on_3_masters_are_5_5_6() -> None:
    """16 shards on 3 equal masters split 5/5/6 (not CRC16's 3/5/8)."""
    assert sorted(_per_master(16, 3)) == [5, 5, 6]


@pytest.mark.parametrize("shards", range(3, 65))
def test_3_masters_hold_a_third_each(shards: int) -> None:
    """On 3 masters each holds a third of the shards, give or take one."""
    held = _per_master(shards, 3)
    assert sum(held) == shards
    assert all(abs(n - shards / 3) <= 1 for n in held), held


@pytest.mark.parametrize("shards", [*range(6, 65), 256, 1024])
def test_no_master_of_6_is_empty(shards: int) -> None:
    """With at least 6 shards, every one of 6 masters holds some."""
    held = _per_master(shards, 6)
    assert min(held) >= 1, held
    assert max(held) - min(held) <= 2, held
