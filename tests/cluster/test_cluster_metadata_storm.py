"""A leader's death costs the same FetchMetadata calls with one subscription or fifty.

Fifty subscriptions read the partitions one node leads; that node is
SIGKILLed. The client's FetchMetadata calls are counted at the transport
(every try, to any broker), and each subscription must resume on the new
leaders without gap or duplicate.
"""

from __future__ import annotations

import anyio
import pytest
from cluster_support import HANG_GUARD, Subscriber, node_by_id
from helpers import CallCounter

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.error import LiftbridgeError
from lbwire.grpc import Channel
from lbwire.testing import LiftbridgeCluster, LiftbridgeServer
from lbwire.types import AckPolicy, StartPosition

pytestmark = [pytest.mark.anyio, pytest.mark.server]

SUBSCRIPTIONS = 50
PARTITIONS = 6
#: The issue's bound: FetchMetadata calls in any 1-s window of the outage.
MAX_CALLS_PER_SECOND = 30
#: How soon after its partition's new leader is elected each subscription
#: has resumed (delivers a message the new leader committed).
RESUME_BOUND = 5.0


async def leads(node: LiftbridgeServer, stream: str, partition: int) -> bool:
    """Whether `node` serves the partition as its leader (asked on a channel of its own).

    FetchPartitionMetadata, which only the leader answers: the FetchMetadata
    calls counted are the client's alone.
    """
    request = wire.FetchPartitionMetadataRequest(stream=stream, partition=partition).encode()
    try:
        async with Channel.open(node.host, node.port) as channel:
            await channel.unary_unary("/proto.API/FetchPartitionMetadata", request, timeout=1.0)
    except Exception:
        return False
    return True


async def publish_until_acked(client: LiftbridgeClient, stream: str, partition: int) -> float:
    """Publish one message to the partition until one is acked; when it was."""
    while True:
        try:
            await client.publish(
                b"after", stream=stream, partition=partition, ack_policy=AckPolicy.ALL
            )
        except LiftbridgeError:
            continue
        return anyio.current_time()


def busiest_second(starts: list[float], start: float, end: float) -> int:
    """The most calls that started within one second, in [start, end)."""
    inside = sorted(t for t in starts if start <= t < end)
    return max((sum(1 for u in inside if t <= u < t + 1.0) for t in inside), default=0)


async def test_a_dead_leader_under_fifty_subscriptions_costs_a_bounded_metadata_rate(
    fresh_cluster: LiftbridgeCluster, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with LiftbridgeClient(fresh_cluster.brokers) as client:
        await client.create_stream(
            stream_name, partitions=PARTITIONS, replication_factor=3, wait_for_stream=True
        )
        (meta,) = (await client.get_metadata(stream_name)).metadata
        victim = node_by_id(fresh_cluster, meta.partitions[0].leader)
        led = [
            p for p, partition in meta.partitions.items() if partition.leader == victim.server_id
        ]
        survivors = [node for node in fresh_cluster.nodes if node is not victim]
        before = {p: 0 for p in led}
        for p in led:
            for _ in range(3):
                await client.publish(
                    b"before", stream=stream_name, partition=p, ack_policy=AckPolicy.ALL
                )
                before[p] += 1
        subscribers = [(led[i % len(led)], Subscriber()) for i in range(SUBSCRIPTIONS)]
        counter = CallCounter("FetchMetadata").install(monkeypatch)
        elected: dict[int, float] = {}
        acked: dict[int, float] = {}

        async def watch_election(partition: int) -> None:
            while True:
                for node in survivors:
                    if await leads(node, stream_name, partition):
                        elected[partition] = anyio.current_time()
                        acked[partition] = await publish_until_acked(client, stream_name, partition)
                        return
                await anyio.sleep(0.05)

        with anyio.fail_after(HANG_GUARD * 2):
            async with anyio.create_task_group() as tg:
                for partition, subscriber in subscribers:
                    tg.start_soon(
                        subscriber.consume,
                        client.subscribe(
                            stream_name, partition=partition, start_position=StartPosition.EARLIEST
                        ),
                    )
                for partition, subscriber in subscribers:
                    await subscriber.wait_for_offset(before[partition] - 1)

                killed = anyio.current_time()
                await victim.akill()
                async with anyio.create_task_group() as watchers:
                    for partition in led:
                        watchers.start_soon(watch_election, partition)
                for partition, subscriber in subscribers:
                    await subscriber.wait_for_offset(before[partition])
                resumed = anyio.current_time()
                tg.cancel_scope.cancel()

    outage = resumed - killed
    calls = counter.between(killed, resumed)
    peak = busiest_second(counter.starts, killed, resumed)
    print(
        f"leader {victim.server_id} of partitions {led} killed: {len(calls)} FetchMetadata "
        f"calls in {outage:.1f} s ({len(calls) / outage:.0f}/s, peak {peak} in one second); "
        f"elected after {max(elected.values()) - killed:.1f} s"
    )
    for partition, subscriber in subscribers:
        # No gap, no duplicate: offsets 0..N once each, through the failover.
        assert subscriber.offsets == list(range(len(subscriber.messages)))
        assert len(subscriber.messages) > before[partition]
        arrival = subscriber.arrivals[before[partition]]
        assert arrival - max(elected[partition], acked[partition]) <= RESUME_BOUND
    assert peak <= MAX_CALLS_PER_SECOND
