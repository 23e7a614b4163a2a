"""Finding the cluster through seed lists with dead brokers in them."""

from __future__ import annotations

import socket

import anyio
import pytest
from cluster_support import HANG_GUARD, aclosing, partition_leader, wait_until_client_sees_death

from lbwire.client import LiftbridgeClient, RetryPolicy
from lbwire.error import ErrorUnavailable
from lbwire.testing import LiftbridgeCluster, LiftbridgeServer
from lbwire.types import AckPolicy, StartPosition, StopPosition

pytestmark = [pytest.mark.anyio, pytest.mark.server]


async def stream_and_a_node_not_leading_it(
    cluster: LiftbridgeCluster, stream: str
) -> LiftbridgeServer:
    """Create a three-replica stream; return a node that does not lead it.

    Streams are created before a node dies: v1.9.0 picks replicas and leaders
    from the Raft configuration, dead members included.
    """
    async with LiftbridgeClient(cluster.brokers) as admin:
        await admin.create_stream(stream, replication_factor=3, wait_for_stream=True)
        leader = await partition_leader(admin, cluster, stream)
    return next(node for node in cluster.nodes if node is not leader)


async def publish_and_read_back(client: LiftbridgeClient, stream: str) -> None:
    ack = await client.publish(b"hello", stream=stream, ack_policy=AckPolicy.LEADER)
    assert ack is not None
    async with aclosing(
        client.subscribe(
            stream,
            start_position=StartPosition.EARLIEST,
            stop_position=StopPosition.STOP_LATEST,
        )
    ) as subscription:
        assert [m.value async for m in subscription] == [b"hello"]


async def test_a_dead_first_seed_is_skipped(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    dead = await stream_and_a_node_not_leading_it(fresh_cluster, stream_name)
    alive = [node for node in fresh_cluster.nodes if node is not dead]
    await dead.akill()
    async with LiftbridgeClient([dead.broker, *[node.broker for node in alive]]) as client:
        with anyio.fail_after(HANG_GUARD):
            metadata = await client.get_metadata()
            assert {b.id for b in metadata.brokers} >= {node.server_id for node in alive}
            await publish_and_read_back(client, stream_name)


async def test_a_sole_dead_seed_is_reported_with_its_address() -> None:
    # A port nothing listens on is what a client sees of a dead node.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    policy = RetryPolicy(attempts=3, max_time=2.0)
    async with LiftbridgeClient([dead], retry_policy=policy) as client:
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUnavailable) as info:
            await client.get_metadata()
    assert dead in str(info.value)


async def test_the_client_keeps_the_cluster_after_its_only_seed_dies(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    seed = await stream_and_a_node_not_leading_it(fresh_cluster, stream_name)
    async with LiftbridgeClient([seed.broker]) as client:
        await client.get_metadata()  # learns every broker's address
        await seed.akill()
        with anyio.fail_after(HANG_GUARD):
            await wait_until_client_sees_death(client, seed)
            await publish_and_read_back(client, stream_name)
