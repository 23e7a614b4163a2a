"""Leader routing: partition calls go to the partition's leader, found in metadata."""

from __future__ import annotations

import anyio
import pytest
from cluster_support import (
    HANG_GUARD,
    Subscriber,
    address,
    node_by_id,
    partition_leader,
    wait_until_client_sees_death,
)

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.grpc import Channel, GRPCError, Status
from lbwire.testing import LiftbridgeCluster
from lbwire.types import AckPolicy, StartPosition, StopPosition

pytestmark = [pytest.mark.anyio, pytest.mark.server]

PARTITIONS = 3


async def read_partition(client: LiftbridgeClient, stream: str, partition: int) -> list[bytes]:
    log = Subscriber()
    await log.consume(
        client.subscribe(
            stream,
            partition=partition,
            start_position=StartPosition.EARLIEST,
            stop_position=StopPosition.STOP_LATEST,
        )
    )
    return [m.value for m in log.messages]


async def test_a_partition_follower_refuses_subscriptions(
    shared_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    # Why routing matters: only the leader serves a subscription.
    async with LiftbridgeClient(shared_cluster.brokers) as client:
        await client.create_stream(stream_name, replication_factor=3, wait_for_stream=True)
        leader = await partition_leader(client, shared_cluster, stream_name)
    follower = next(node for node in shared_cluster.nodes if node is not leader)
    request = wire.SubscribeRequest(stream=stream_name, partition=0).encode()
    with anyio.fail_after(HANG_GUARD):
        async with Channel.open(follower.host, follower.port) as channel:
            while True:
                with pytest.raises(GRPCError) as info:
                    async with channel.unary_stream("/proto.API/Subscribe", request) as call:
                        await call.receive()
                # A loaded follower may not have applied the new stream yet.
                if info.value.status != Status.NOT_FOUND:
                    break
                await anyio.sleep(0.05)
    assert info.value.status == Status.FAILED_PRECONDITION


async def test_each_partition_is_read_from_its_leader(
    shared_cluster: LiftbridgeCluster, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with LiftbridgeClient(shared_cluster.brokers) as client:
        await client.create_stream(
            stream_name, replication_factor=3, partitions=PARTITIONS, wait_for_stream=True
        )
        for partition in range(PARTITIONS):
            await client.publish(
                b"to %d" % partition,
                stream=stream_name,
                partition=partition,
                ack_policy=AckPolicy.ALL,
            )
        (metadata,) = (await client.get_metadata(stream_name)).metadata

        # Every broker the client talks to from here on, in order.
        contacted: list[tuple[str, int]] = []

        def record(broker: str) -> None:
            host, port = broker.rsplit(":", 1)
            contacted.append((host, int(port)))

        client.add_connection_listener(record)
        with anyio.fail_after(HANG_GUARD):
            for partition in range(PARTITIONS):
                leader = address(node_by_id(shared_cluster, metadata.partitions[partition].leader))
                contacted.clear()
                assert await read_partition(client, stream_name, partition) == [
                    b"to %d" % partition
                ]
                assert contacted == [leader]

                contacted.clear()
                high_watermark = (
                    await client.get_partition_metadata(stream_name, partition)
                ).high_watermark
                assert contacted == [leader]
                assert high_watermark == 0


async def test_losing_a_broker_that_leads_no_partition_changes_nothing(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    async with LiftbridgeClient(fresh_cluster.brokers) as client:
        # Two partitions on three brokers: at least one broker leads neither.
        await client.create_stream(
            stream_name, replication_factor=3, partitions=2, wait_for_stream=True
        )
        (metadata,) = (await client.get_metadata(stream_name)).metadata
        leaders = {p.leader for p in metadata.partitions.values()}
        bystander = next(n for n in fresh_cluster.nodes if n.server_id not in leaders)
        await bystander.akill()

        with anyio.fail_after(HANG_GUARD):
            await wait_until_client_sees_death(client, bystander)
            for partition in range(2):
                # LEADER acks: ALL would wait for the dead replica to leave the ISR.
                ack = await client.publish(
                    b"to %d" % partition,
                    stream=stream_name,
                    partition=partition,
                    ack_policy=AckPolicy.LEADER,
                )
                assert ack is not None
                assert await read_partition(client, stream_name, partition) == [
                    b"to %d" % partition
                ]
            (after,) = (await client.get_metadata(stream_name)).metadata
    assert {p.leader for p in after.partitions.values()} == leaders
