"""Several throwaway Liftbridge nodes on 127.0.0.1 forming one cluster."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import anyio
import anyio.to_thread

from lbwire.testing._process import Managed, free_ports, release_ports
from lbwire.testing._server import (
    BECAME_LEADER,
    DEFAULT_START_TIMEOUT,
    LiftbridgeServer,
    server_binary,
)

_LOST_LEADERSHIP = "Server lost metadata leadership"


def claims_leadership(node: LiftbridgeServer) -> bool:
    """Whether the running node's log says it is metadata leader now."""
    if not node.running:
        return False
    log = node.log_text(current_run=True)
    return log.rfind(BECAME_LEADER) > log.rfind(_LOST_LEADERSHIP)


@dataclass
class _Member:
    """How a node belongs to a LiftbridgeCluster (a ``Membership``)."""

    cluster: LiftbridgeCluster
    server_id: str
    nats_cluster_port: int
    nats_routes: list[int]
    peers: list[str]
    #: Log sizes of every node when this node was last launched: only what
    #: the leader logged after that counts as replicating to it.
    marks: dict[int, int] = field(default_factory=dict)

    def node_launched(self, node: LiftbridgeServer) -> None:
        self.marks = {i: len(other.log_bytes()) for i, other in enumerate(self.cluster.nodes)}

    def not_joined_reason(self, node: LiftbridgeServer) -> Optional[str]:
        leader = self.cluster.metadata_leader()
        if leader is None:
            return "no metadata leader among the running nodes"
        if leader is node:
            return None
        leader_index = self.cluster.nodes.index(leader)
        since = max(leader.run_log_offset, self.marks.get(leader_index, 0))
        log = leader.log_bytes(since)
        # Only what the leader logged in its current term counts.
        log = log[max(0, log.rfind(b"raft: entering leader state")) :]
        # hashicorp/raft logs: pipelining replication: peer="{Voter <id> <addr>}"
        joined = re.compile(
            rb"pipelining replication: peer=\W*\{\w+ " + re.escape(self.server_id.encode()) + rb" "
        )
        if not joined.search(log):
            return f"metadata leader {leader.server_id} does not replicate to it yet"
        return None


class LiftbridgeCluster(Managed):
    """``size`` Liftbridge nodes on 127.0.0.1 forming one cluster.

    Each node embeds its own NATS server; the NATS servers are joined by
    routes, so killing one node leaves NATS working for the others. The
    metadata Raft group is bootstrapped with every node's server id
    (``clustering.raft.bootstrap.peers``), so nodes may start in any order.

    The cluster is ready when one running node is metadata leader and its Raft
    log shows it replicating to every other running node. ``nodes[i]`` has
    ``stop``/``kill``/``restart``; a restarted node waits until the leader
    replicates to it again. Other arguments (``version`` too) are as for
    :class:`LiftbridgeServer` and apply to every node.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        binary: Optional[str] = None,
        version: Optional[str] = None,
        cursors_partitions: int = 1,
        config_overrides: Optional[Mapping[str, Any]] = None,
        log_level: str = "info",
        start_timeout: float = DEFAULT_START_TIMEOUT,
        keep_files: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.size = size
        self._binary = binary
        self._version = version
        self._start_timeout = start_timeout
        self._node_options: dict[str, Any] = {
            "cursors_partitions": cursors_partitions,
            "config_overrides": config_overrides,
            "log_level": log_level,
            "start_timeout": start_timeout,
            "keep_files": keep_files,
        }
        self.nodes: list[LiftbridgeServer] = []
        self._route_ports: list[int] = []  # reserved by start(), given back by close()

    @property
    def brokers(self) -> list[str]:
        """Every node's ``"127.0.0.1:<port>"``, in node order."""
        return [node.broker for node in self.nodes]

    def start(self) -> None:
        """Start every node and wait until the cluster is ready.

        Raises:
            LiftbridgeNotFound: no binary (see :func:`find_liftbridge`).
            LiftbridgeStartError: a node exited or the cluster was not ready in
                time; the message names the node's log.

        """
        if not self.nodes:
            binary = self._binary or server_binary(self._version)
            ports = free_ports(3 * self.size)
            grpc_ports = ports[0::3]
            nats_ports = ports[1::3]
            route_ports = self._route_ports = ports[2::3]
            ids = [f"lbwire-node{i}" for i in range(self.size)]
            for i in range(self.size):
                member = _Member(
                    cluster=self,
                    server_id=ids[i],
                    nats_cluster_port=route_ports[i],
                    nats_routes=[p for j, p in enumerate(route_ports) if j != i],
                    peers=ids,
                )
                self.nodes.append(
                    LiftbridgeServer(
                        binary=binary,
                        _membership=member,
                        _ports=(grpc_ports[i], nats_ports[i]),
                        **self._node_options,
                    )
                )
        deadline = time.monotonic() + self._start_timeout
        for node in self.nodes:
            if not node.running:
                node.launch()
        for node in self.nodes:
            node.wait_ready(deadline - time.monotonic())

    def metadata_leader(self) -> Optional[LiftbridgeServer]:
        """Return the running node whose log says it is metadata leader, if one."""
        leaders = [node for node in self.nodes if claims_leadership(node)]
        return leaders[0] if len(leaders) == 1 else None

    def wait_ready(self, timeout: Optional[float] = None) -> LiftbridgeServer:
        """Wait until a leader replicates to every running node; return the leader.

        Raises:
            LiftbridgeStartError: not ready within ``timeout`` (default: the
                cluster's start timeout).

        """
        deadline = time.monotonic() + (timeout or self._start_timeout)
        while True:
            for node in self.nodes:
                if node.running:
                    node.wait_ready(deadline - time.monotonic())
            leader = self.metadata_leader()
            if leader is not None:
                return leader
            # Leadership moved while we checked the others: check again.

    async def await_ready(self) -> LiftbridgeServer:
        """Async :meth:`wait_ready` (bounded by the cluster's start timeout)."""
        return await anyio.to_thread.run_sync(self.wait_ready)

    def stop(self) -> None:
        """Stop every node gracefully (data kept)."""
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        """Stop every node and delete their data."""
        try:
            for node in self.nodes:
                node.close()  # gives back its gRPC and NATS ports
        finally:
            release_ports(*self._route_ports)

    def keep_logs(self) -> None:
        """Keep every node's log and config files on :meth:`close`."""
        for node in self.nodes:
            node.keep_logs()

    def __repr__(self) -> str:
        return f"<LiftbridgeCluster {self.brokers}>"
