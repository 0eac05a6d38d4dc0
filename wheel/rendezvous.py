"""Sharing shards between live processes by rendezvous hashing.

Each shard goes to the live member with the highest hash of
``(member, shard)``. When a member joins or leaves, only the shards it
gains or held move: about ``1/T`` of them with ``T`` members, where
``shard % T`` moves almost all. Tickers share leases this way, workers
share the shards they read.
"""

from __future__ import annotations

import functools
import hashlib


def _weight(member: str, shard: int) -> int:
    digest = hashlib.blake2b(
        f"{shard}:{member}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big")


@functools.lru_cache(maxsize=64)
def _assignment(
    live: frozenset[str], shards: int
) -> dict[str, frozenset[int]]:
    ordered = sorted(live)
    owned: dict[str, set[int]] = {member: set() for member in ordered}
    for shard in range(shards):
        # Ties (never seen with 64-bit weights) go to the larger name.
        owner = max(ordered, key=lambda m: (_weight(m, shard), m))
        owned[owner].add(shard)
    return {member: frozenset(s) for member, s in owned.items()}


def assign(me: str, live: list[str] | set[str], shards: int) -> frozenset[int]:
    """The shards ``me`` holds when the ``live`` members share them.

    A member missing from ``live`` (not yet registered) holds nothing.
    The result is cached per membership, so calling it every beat costs
    nothing while the membership is stable.
    """
    members = frozenset(live)
    if me not in members:
        return frozenset()
    return _assignment(members, shards)[me]
