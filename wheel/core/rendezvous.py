"""Sharing shards between live processes by rendezvous hashing with
bounded loads.

Each shard goes to the live member with the highest hash of
``(member, shard)`` that has fewer than ``ceil(S / T)`` shards already
(shards taken in order). Plain rendezvous hashing leaves the load to
chance (48 shards over 4 members came out 6/10/15/17, and the busiest
worker then sets the pace of a burst); the bound keeps every member
within one shard of the mean. When a member joins or leaves, about
``1/T`` of the shards move (with ``T`` members), nearly all of them to
or from that member, where ``shard % T`` moves almost all. Tickers
share leases this way, workers share the shards they read.
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
    cap = -(-shards // len(ordered))
    owned: dict[str, set[int]] = {member: set() for member in ordered}
    for shard in range(shards):
        # Ties (never seen with 64-bit weights) go to the larger name.
        for member in sorted(
            ordered, key=lambda m: (_weight(m, shard), m), reverse=True
        ):
            if len(owned[member]) < cap:
                owned[member].add(shard)
                break
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
