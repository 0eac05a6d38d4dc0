"""A Redis Cluster of real ``redis-server`` processes on 127.0.0.1.

Flags, beyond ``--cluster-enabled yes --cluster-config-file nodes.conf
--cluster-node-timeout N`` (2 s by default: a dead master is failed over
in a few seconds, not the 15 s a production default would take):

- ``--cluster-announce-ip 127.0.0.1``: every node gives clients the same
  address from the first MEET on, whichever node was asked.
- ``--repl-diskless-sync yes --repl-diskless-sync-delay 0``: a replica's
  full sync streams at once (7.0's default delay is 5 s) and writes no
  RDB file into the node's folder.
- ``--repl-ping-replica-period 1``: Redis 7 leaves a replica whose
  replication offset is still 0 out of CLUSTER SLOTS, and an idle
  master moves the offset only with this ping (10 s by default).
- ``--cluster-replica-validity-factor`` keeps its default (10): a replica
  cut off from its master for long may not be promoted, as in
  production. With the short node timeout that still lets a replica that
  was in sync a moment ago win the election; 0 would let a stale replica
  win and hide data loss from the tests.
- ``--cluster-require-full-coverage no``, as the README recommends for
  production: while a failed master's replica is being promoted the
  other masters go on serving their slots (with the default, every node
  answers ``CLUSTERDOWN`` for that second or two, stalling every shard).
  Replica migration keeps its default.

Ports: each node needs its port and the cluster bus port (port + 10000;
Redis 6.2 has no ``--cluster-port``). Both are drawn at random below the
kernel's ephemeral range, so no outgoing connection nor ``bind(0)`` of
another process takes a bus port between the check and Redis binding it.
A restart on the same folder reuses the ports its ``nodes.conf`` names,
since every node dials the others at the addresses it remembers.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from wheel.embedded.server import RedisServer, RedisServerError

CLUSTER_SLOTS = 16384
BUS_PORT_OFFSET = 10000
ADDSLOTS_CHUNK = 1000
FORM_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 5.0
NODES_CONF = "nodes.conf"
_POLL_S = 0.05

Check = Callable[[], str | None]
"""A readiness probe: None when done, else why not yet."""


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` slots of each master: equal shares."""
    bounds = [index * CLUSTER_SLOTS // masters for index in range(masters)]
    bounds.append(CLUSTER_SLOTS)
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        # Redis binds with SO_REUSEADDR; a TIME_WAIT leftover is no bar.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def cluster_ports(count: int) -> list[int]:
    """``count`` ports free right now whose bus ports are free too."""
    candidates = range(10000, _ephemeral_low() - BUS_PORT_OFFSET)
    if len(candidates) < 100 * count:
        # A machine with a wide ephemeral range: take any pair.
        candidates = range(1024, 65536 - BUS_PORT_OFFSET)
    chosen: list[int] = []
    taken: set[int] = set()
    for port in random.sample(candidates, min(len(candidates), 2000)):
        pair = {port, port + BUS_PORT_OFFSET}
        if taken & pair or not all(map(_bindable, pair)):
            continue
        chosen.append(port)
        taken |= pair
        if len(chosen) == count:
            return chosen
    raise RedisServerError(f"found no {count} free port pairs for a cluster")


def _address_port(address: str) -> int:
    # ip:port@cport, with ",hostname" appended by Redis 7.
    return int(address.split("@")[0].rsplit(":", 1)[-1] or 0)


def conf_port(conf: Path) -> int:
    """The port a node's ``nodes.conf`` says the node itself listens on."""
    for line in conf.read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and "myself" in fields[2].split(","):
            return _address_port(fields[1])
    raise RedisServerError(f"{conf} names no 'myself' node")


def conf_node_count(conf: Path) -> int:
    """How many nodes a ``nodes.conf`` lists."""
    lines = conf.read_text().splitlines()
    return sum(1 for line in lines if line and not line.startswith("vars"))


class _NodeLine:
    """One line of CLUSTER NODES."""

    def __init__(self, line: str) -> None:
        fields = line.split()
        self.id = fields[0]
        self.port = _address_port(fields[1])
        self.flags = set(fields[2].split(","))
        self.master_id = fields[3]
        self.slots = [slot for slot in fields[8:] if slot[0] != "["]

    @property
    def first_slot(self) -> int:
        return min(int(slot.split("-")[0]) for slot in self.slots)


def _parse_nodes(text: str) -> list[_NodeLine]:
    return [_NodeLine(line) for line in text.splitlines() if line.strip()]


def _slot_map(reply: list[Any]) -> list[tuple[Any, ...]]:
    """CLUSTER SLOTS, ordered, replicas sorted, for comparing views."""
    return sorted(
        (first, last, tuple(owner), sorted(map(tuple, replicas)))
        for first, last, owner, *replicas in reply
    )


@contextmanager
def _client(node: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(
        host="127.0.0.1",
        port=node.port,
        decode_responses=True,
        socket_timeout=CLIENT_TIMEOUT_S,
        socket_connect_timeout=CLIENT_TIMEOUT_S,
        single_connection_client=True,
    )
    try:
        yield client
    finally:
        client.close()


def _cmd(node: RedisServer, *args: str | int) -> Any:
    with _client(node) as client:
        return client.execute_command(*args)


class EmbeddedCluster:
    """A Redis Cluster of ``masters * (1 + replicas)`` local nodes.

    Node ``i`` keeps its data in ``data_dir/node-<i>``. Nodes
    ``0..masters-1`` start as masters; replica ``j`` of master ``i`` is
    node ``masters + i * replicas + j``. Roles change with failovers:
    ask :meth:`masters` and :meth:`replicas`.
    """

    def __init__(
        self,
        data_dir: Path,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        binary: str | None = None,
        ports: Sequence[int] | None = None,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs a master and replicas >= 0")
        self.data_dir = Path(data_dir)
        self.master_count = masters
        self.replicas_per_master = replicas
        size = masters * (1 + replicas)
        if ports is not None and len(ports) != size:
            raise ValueError(f"{size} nodes need {size} ports, not {ports}")
        confs = [self._conf(index) for index in range(size)]
        remembered = [conf_port(conf) for conf in confs if conf.exists()]
        if remembered and ports is not None and list(ports) != remembered:
            raise RedisServerError(
                f"{self.data_dir} holds a cluster on ports {remembered}"
            )
        if len(remembered) == size:
            ports = remembered
        self._flags = (
            f"--cluster-enabled yes --cluster-config-file {NODES_CONF} "
            f"--cluster-node-timeout {node_timeout_ms} "
            "--cluster-announce-ip 127.0.0.1 "
            "--repl-diskless-sync yes --repl-diskless-sync-delay 0 "
            "--repl-ping-replica-period 1 "
            "--cluster-require-full-coverage no"
        ).split()
        self._node_options: dict[str, Any] = {
            "appendonly": appendonly,
            "appendfsync": appendfsync,
            "binary": binary,
        }
        self.nodes = [
            self._make_node(self.data_dir / f"node-{index}", port)
            for index, port in enumerate(ports or cluster_ports(size))
        ]

    def _make_node(self, folder: Path, port: int) -> RedisServer:
        return RedisServer(
            folder, port=port, extra_args=self._flags, **self._node_options
        )

    def spare_node(self, folder: Path) -> RedisServer:
        """A node with this cluster's flags on free ports, not started and
        not part of the cluster (``redis-cli --cluster add-node`` joins
        it)."""
        return self._make_node(folder, cluster_ports(1)[0])

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[RedisServer]:
        return iter(self.nodes)

    def _conf(self, index: int) -> Path:
        return self.data_dir / f"node-{index}" / NODES_CONF

    @property
    def seed_url(self) -> str:
        """The ``redis://`` URL of node 0, to seed a cluster client."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        """The ``redis://`` URL of every node, by index."""
        return [node.url for node in self.nodes]

    def start(self) -> None:
        """Start every node; form the cluster, or rejoin a formed one."""
        confs = [self._conf(index) for index in range(len(self))]
        formed = all(conf.exists() for conf in confs)
        if formed:
            counts = [conf_node_count(conf) for conf in confs]
            if counts != [len(self)] * len(self):
                raise RedisServerError(
                    f"{self.data_dir}: the nodes.conf files list {counts} "
                    f"nodes, not {len(self)}"
                )
        elif any(conf.exists() for conf in confs):
            raise RedisServerError(
                f"{self.data_dir}: only some nodes have a {NODES_CONF}; "
                "remove the folder to form a new cluster"
            )
        try:
            for node in self.nodes:
                node.spawn()
            for node in self.nodes:
                node.wait_ready()
            if formed:
                self.wait_ok()
            else:
                self._form()
            self._wait(self._replicas_linked, "every replica to sync")
        except BaseException:
            self.stop()
            if not formed:
                # A half-formed folder must not pass for a formed one.
                for conf in confs:
                    conf.unlink(missing_ok=True)
            raise

    def _form(self) -> None:
        for index, node in enumerate(self.nodes):
            # Distinct epochs up front, as redis-cli does, so no
            # epoch-collision round is needed after the MEETs.
            _cmd(node, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        masters = self.nodes[: self.master_count]
        ranges = slot_ranges(self.master_count)
        for node, (first, last) in zip(masters, ranges, strict=True):
            # Redis 6.2 has no ADDSLOTSRANGE: bounded ADDSLOTS chunks.
            for start in range(first, last + 1, ADDSLOTS_CHUNK):
                stop = min(start + ADDSLOTS_CHUNK, last + 1)
                _cmd(node, "CLUSTER", "ADDSLOTS", *range(start, stop))
        for node in self.nodes[1:]:
            _cmd(self.nodes[0], "CLUSTER", "MEET", "127.0.0.1", node.port)
        self._wait(self._knows_all, "every node to know every other")
        ids = [_cmd(node, "CLUSTER", "MYID") for node in masters]
        for index in range(self.master_count, len(self)):
            master = (index - self.master_count) // self.replicas_per_master
            _cmd(self.nodes[index], "CLUSTER", "REPLICATE", ids[master])
        self._wait(self._state_ok, "cluster_state:ok on every node")
        self._wait(self._slots_agreed, "one CLUSTER SLOTS on every node")

    def stop(self) -> None:
        """Stop every node: SIGTERM to all at once, then wait for each."""
        for node in self.nodes:
            if node.process is not None and node.running:
                node.process.terminate()
        for node in self.nodes:
            node.stop()

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``."""
        self.nodes[index].stop(kill=True)

    def restart_node(self, index: int) -> None:
        """Stop node ``index`` if it runs and start it again (same port)."""
        self.nodes[index].restart()

    def wait_ok(self, timeout_s: float = FORM_TIMEOUT_S) -> None:
        """Wait until live nodes are ok and agree on a live master a slot."""
        self._wait(self._serving, "every slot served", timeout_s)

    def masters(self) -> list[RedisServer]:
        """Live nodes serving slots now, by first slot."""
        lines = [line for line in self._view() if line.slots]
        lines.sort(key=lambda line: line.first_slot)
        return self._live(lines)

    def replicas(self) -> list[RedisServer]:
        """Live nodes that are replicas now, by index."""
        lines = [line for line in self._view() if "slave" in line.flags]
        return sorted(self._live(lines), key=self.nodes.index)

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """Live replicas of ``master`` now, by index."""
        view = self._view()
        ids = {line.id for line in view if line.port == master.port}
        lines = [line for line in view if line.master_id in ids]
        return sorted(self._live(lines), key=self.nodes.index)

    def master_for_slot(self, slot: int) -> RedisServer:
        """The node that serves ``slot`` now, as a live node sees it."""
        for first, last, owner, *_ in self._ask_live("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return self._by_port(int(owner[1]))
        raise RedisServerError(f"no node serves slot {slot}")

    def _by_port(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise RedisServerError(f"no node of this cluster on port {port}")

    def _live(self, lines: list[_NodeLine]) -> list[RedisServer]:
        found = [self._by_port(line.port) for line in lines]
        return [node for node in found if node.running]

    def live_nodes(self) -> list[RedisServer]:
        """The nodes whose process runs, by index."""
        return [node for node in self.nodes if node.running]

    def _ask_live(self, *args: str | int) -> Any:
        # The lowest live index: after a kill, a survivor's view.
        for node in self.live_nodes():
            return _cmd(node, *args)
        raise RedisServerError("no node of the cluster is running")

    def _view(self) -> list[_NodeLine]:
        return _parse_nodes(self._ask_live("CLUSTER", "NODES"))

    def _wait(
        self, check: Check, what: str, timeout_s: float = FORM_TIMEOUT_S
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                why = check()
            except redis.RedisError as exc:
                why = f"{type(exc).__name__}: {exc}"
            if why is None:
                return
            if time.monotonic() > deadline:
                ports = [node.port for node in self.nodes]
                raise RedisServerError(
                    f"cluster on ports {ports}: {what} did not happen "
                    f"within {timeout_s}s (last: {why})"
                )
            time.sleep(_POLL_S)

    def _knows_all(self) -> str | None:
        for node in self.live_nodes():
            lines = _parse_nodes(_cmd(node, "CLUSTER", "NODES"))
            if len(lines) != len(self):
                return f"{node.port} knows {len(lines)} nodes"
            for line in lines:
                if line.flags & {"handshake", "noaddr"}:
                    return f"{node.port} sees {line.port} as {line.flags}"
        return None

    def _replicas_linked(self) -> str | None:
        replicas = self.replicas()
        expected = self.master_count * self.replicas_per_master
        if len(replicas) != expected:
            return f"{len(replicas)} replicas, not {expected}"
        for node in replicas:
            with _client(node) as client:
                link = client.info("replication").get("master_link_status")
            if link != "up":
                return f"{node.port}: master_link_status:{link}"
        return None

    def _state_ok(self) -> str | None:
        for node in self.live_nodes():
            info = _cmd(node, "CLUSTER", "INFO")
            if "cluster_state:ok" not in info:
                return f"{node.port}: {info.split()[0]}"
        return None

    def _slots_agreed(self) -> str | None:
        maps = [_slot_map(_cmd(node, "CLUSTER", "SLOTS")) for node in self]
        if any(view != maps[0] for view in maps):
            return "the nodes' CLUSTER SLOTS differ"
        shape = [(entry[0], entry[1], len(entry[3])) for entry in maps[0]]
        expected = [
            (first, last, self.replicas_per_master)
            for first, last in slot_ranges(self.master_count)
        ]
        if shape != expected:
            return f"CLUSTER SLOTS has (first, last, replicas) {shape}"
        return None

    def _serving(self) -> str | None:
        views: set[tuple[tuple[int, int, int], ...]] = set()
        for node in self.live_nodes():
            info = _cmd(node, "CLUSTER", "INFO")
            if "cluster_state:ok" not in info:
                return f"{node.port}: {info.split()[0]}"
            if f"cluster_slots_ok:{CLUSTER_SLOTS}\r" not in info:
                return f"{node.port}: not every slot ok"
            reply = sorted(_cmd(node, "CLUSTER", "SLOTS"))
            view = tuple((row[0], row[1], int(row[2][1])) for row in reply)
            dead = [
                row[2] for row in view if not self._by_port(row[2]).running
            ]
            if dead:
                return f"{node.port} sees dead {dead} serving slots"
            views.add(view)
        if len(views) > 1:
            return "the live nodes disagree on who serves which slots"
        return None
