"""Helpers shared by the failover tests (imported as ``cluster_support``)."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Callable, Optional

import anyio
from helpers import aclosing, wait_until

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.error import LiftbridgeError
from lbwire.grpc import Channel
from lbwire.testing import LiftbridgeCluster, LiftbridgeServer
from lbwire.types import AckPolicy, Message

#: Upper bound on anything that waits for the cluster: a guard against hangs,
#: never a speed expectation.
HANG_GUARD = 45.0

#: Server settings for quick failure detection (v1.9.0 defaults: 10 s, 3 s,
#: 15 s, 15 s). Followers of a caught-up partition ask their leader for data
#: every `replica.max.idle.wait` minus up to 2 s of jitter, each request
#: failing after `replica.fetch.timeout`. After `replica.max.leader.timeout`
#: without an answer they report the leader; two reports of a three-replica
#: partition elect a new one. The dead leader stays in the ISR until the new
#: leader's `replica.max.lag.time` runs out, and until then nothing new is
#: committed, so readers wait for it too.
#:
#: The leader timeout must stay well above idle wait + fetch timeout: a
#: follower's first requests to a new leader can fail for a round (epoch
#: mismatch while Raft applies the change), and v1.9.0 never forgets the
#: witnesses of a partition's failover, so one spurious report moves the
#: leadership again at once, possibly to the dead broker still in the ISR. A
#: follower that could not ask the new leader where to truncate cuts its log
#: to its own high watermark, which trails; made leader by such a second
#: failover, it loses acked messages (seen with a 2 s leader timeout).
FAST_FAILOVER = {
    "clustering.replica.max.idle.wait": "1500ms",
    "clustering.replica.fetch.timeout": "1s",
    "clustering.replica.max.leader.timeout": "4s",
    "clustering.replica.max.lag.time": "3s",
}


async def high_watermark_at(node: LiftbridgeServer, stream: str, partition: int = 0) -> int:
    """The partition's high watermark as `node` knows it (its own log's).

    Asked with a channel of its own, so the answer comes from that node.
    """
    request = wire.FetchMetadataRequest(streams=[stream]).encode()
    async with Channel.open(node.host, node.port) as channel:
        data = await channel.unary_unary("/proto.API/FetchMetadata", request, timeout=10.0)
    (stream_metadata,) = wire.FetchMetadataResponse.decode(data).streamMetadata
    return stream_metadata.partitions[partition].highWatermark


def node_by_id(cluster: LiftbridgeCluster, server_id: str) -> LiftbridgeServer:
    """The cluster node with this Liftbridge server id."""
    return next(node for node in cluster.nodes if node.server_id == server_id)


def address(node: LiftbridgeServer) -> tuple[str, int]:
    """The (host, port) the client uses for this node."""
    return (node.host, node.port)


async def partition_leader(
    client: LiftbridgeClient, cluster: LiftbridgeCluster, stream: str, partition: int = 0
) -> LiftbridgeServer:
    """The node that fresh metadata names as the partition's leader."""
    metadata = await client.get_metadata(stream)
    (stream_metadata,) = metadata.metadata
    return node_by_id(cluster, stream_metadata.partitions[partition].leader)


async def wait_until_client_sees_death(client: LiftbridgeClient, node: LiftbridgeServer) -> None:
    """Wait until the client has read the end of its connection to a killed node.

    A publish sent on a connection whose end the client has not read yet
    fails with ErrorUnavailable rather than being sent again elsewhere: the
    client cannot tell it from a publish the broker forwarded before dying.
    """
    broker = f"{node.host}:{node.port}"

    async def closed() -> bool:
        return not any(
            c.connected
            for c in client.connection_info()
            if c.broker == broker and not c.for_subscriptions
        )

    await wait_until(closed, f"the client sees {node.broker} closed", timeout=HANG_GUARD)


async def poll_until(
    check: Callable[[], Awaitable[bool]], what: str = "the cluster reaches the state"
) -> None:
    """Ask the cluster until `check` holds (for state the server announces nowhere).

    `helpers.wait_until` with the cluster's hang guard; new tests call that.
    """
    await wait_until(check, what, timeout=HANG_GUARD, interval=0.05)


class Subscriber:
    """Collects a subscription's messages with their arrival times.

    Run `consume` in a task group; wait with `wait_for_offset`.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrivals: list[float] = []
        self._arrived = anyio.Event()

    async def consume(self, subscription: Any) -> None:
        async with aclosing(subscription):
            async for message in subscription:
                self.messages.append(message)
                self.arrivals.append(anyio.current_time())
                self._arrived.set()
                self._arrived = anyio.Event()

    async def wait_for_offset(self, offset: int) -> None:
        """Wait until a message at `offset` or later has arrived."""
        while not self.messages or self.messages[-1].offset < offset:
            await self._arrived.wait()

    @property
    def offsets(self) -> list[int]:
        return [message.offset for message in self.messages]

    def first_arrival_after(self, moment: float) -> float:
        return next(t for t in self.arrivals if t > moment)


@dataclass
class Publication:
    """The outcome of one `publish`: an offset, or the exception it raised."""

    value: bytes
    started: float
    latency: float
    offset: Optional[int] = None
    error: Optional[LiftbridgeError] = None


class Publisher:
    """Publishes numbered values one after the other, recording every outcome."""

    def __init__(
        self,
        client: LiftbridgeClient,
        stream: str,
        *,
        ack_timeout: float = 3.0,
        ack_policy: AckPolicy = AckPolicy.ALL,
        label: str = "value",
    ) -> None:
        self.client = client
        self.stream = stream
        self.ack_timeout = ack_timeout
        self.ack_policy = ack_policy
        self.label = label
        self.publications: list[Publication] = []
        self._published = anyio.Event()

    async def publish(self, count: int) -> None:
        """Publish until `count` more publishes were acked."""
        goal = len(self.acked) + count
        while len(self.acked) < goal:
            await self.publish_one()

    async def publish_forever(self) -> None:
        """Publish until cancelled."""
        while True:
            await self.publish_one()

    async def wait_for_acks_started_after(self, moment: float, count: int) -> None:
        """Wait until `count` publishes started after `moment` were acked."""
        while sum(p.offset is not None and p.started > moment for p in self.publications) < count:
            await self._published.wait()

    async def publish_one(self) -> Publication:
        value = f"{self.label}-{len(self.publications)}".encode()
        started = anyio.current_time()
        publication = Publication(value, started, 0.0)
        try:
            ack = await self.client.publish(
                value,
                stream=self.stream,
                ack_policy=self.ack_policy,
                ack_timeout=self.ack_timeout,
            )
            assert ack is not None
            publication.offset = ack.offset
        except LiftbridgeError as exc:
            publication.error = exc
        publication.latency = anyio.current_time() - started
        self.publications.append(publication)
        self._published.set()
        self._published = anyio.Event()
        return publication

    @property
    def acked(self) -> dict[int, bytes]:
        """Acked values by offset."""
        return {p.offset: p.value for p in self.publications if p.offset is not None}

    @property
    def failed(self) -> list[Publication]:
        return [p for p in self.publications if p.error is not None]
