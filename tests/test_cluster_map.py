"""Reading the cluster's answers: slot maps, redirects, replica health
(pure: the replies as Redis sends them)."""

from __future__ import annotations

from redis.exceptions import AskError, MovedError

from wheel.storage.connection import redirect_name, slot_map
from wheel.storage.replies import healthy_replicas


def test_a_slot_map_names_every_slots_master() -> None:
    """Each slot maps to its master's host:port."""
    reply = [
        [0, 8191, [b"10.0.0.1", 6379, b"id1"], [b"10.0.0.4", 6379, b"r"]],
        [8192, 16383, [b"10.0.0.2", 6380, b"id2"]],
    ]
    slots = slot_map(reply, "10.0.0.9")
    assert slots is not None
    assert (slots[0], slots[8191]) == ("10.0.0.1:6379", "10.0.0.1:6379")
    assert (slots[8192], slots[16383]) == ("10.0.0.2:6380", "10.0.0.2:6380")


def test_an_empty_or_null_host_is_the_node_asked() -> None:
    """Redis 7 with an unknown endpoint type sends "" (or NULL) as host:
    it means the host of the node that answered."""
    reply = [
        [0, 8191, [b"", 7001, b"id1"]],
        [8192, 16383, [None, 7002, b"id2"]],
    ]
    slots = slot_map(reply, "10.0.0.9")
    assert slots is not None
    assert (slots[0], slots[16383]) == ("10.0.0.9:7001", "10.0.0.9:7002")


def test_a_slot_map_with_a_hole_is_none() -> None:
    """A slot no master serves (a cluster failing over) gives no map."""
    assert slot_map([[0, 100, [b"h", 1, b"id"]]], "h") is None


def test_a_redirect_names_its_node_or_the_one_asked() -> None:
    """MOVED and ASK name a node; an empty host is the asked node's."""
    assert redirect_name(MovedError("3999 10.0.0.2:6381"), "x:1") == (
        "10.0.0.2:6381"
    )
    assert redirect_name(AskError("3999 :6381"), "10.0.0.9:6379") == (
        "10.0.0.9:6381"
    )


def test_healthy_replicas_are_online_and_caught_up() -> None:
    """A replica counts when online with a lag of 2 s at most: a stopped
    one stays connected but its lag grows."""
    info = (
        b"# Replication\r\nrole:master\r\nconnected_slaves:3\r\n"
        b"slave0:ip=127.0.0.1,port=7001,state=online,offset=9,lag=0\r\n"
        b"slave1:ip=127.0.0.1,port=7002,state=online,offset=5,lag=9\r\n"
        b"slave2:ip=127.0.0.1,port=7003,state=wait_bgsave,offset=0,lag=0"
        b"\r\nmaster_repl_offset:9\r\n"
    )
    assert healthy_replicas(info) == 1
    assert healthy_replicas(b"role:master\r\nconnected_slaves:0\r\n") == 0
