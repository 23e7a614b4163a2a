"""Metadata calls through the loss of the metadata leader, or of any member."""

from __future__ import annotations

import anyio
import pytest
from cluster_support import HANG_GUARD, Subscriber
from helpers import wait_until
from helpers.servers import by_generation

from lbwire import wire
from lbwire.client import LiftbridgeClient, RetryPolicy
from lbwire.error import ErrorDeadlineExceeded, ErrorNoMetadataLeader
from lbwire.grpc import Channel, GRPCError
from lbwire.testing import LiftbridgeCluster, LiftbridgeServer
from lbwire.types import AckPolicy, StartPosition, StopPosition

pytestmark = [pytest.mark.anyio, pytest.mark.server]


async def test_create_stream_retries_until_a_new_metadata_leader_is_elected(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    leader = fresh_cluster.metadata_leader()
    assert leader is not None
    async with LiftbridgeClient(fresh_cluster.brokers) as client:
        await client.get_metadata()
        await leader.akill()
        # Right after the kill the other brokers still forward CreateStream to
        # the dead leader (NATS: "no responders"), then see no leader until
        # the election ends: both are retried.
        killed = anyio.current_time()
        with anyio.fail_after(HANG_GUARD):
            await client.create_stream(stream_name, replication_factor=2)
            created = anyio.current_time()
            metadata = await client.get_metadata(stream_name)
            answered = anyio.current_time()
    assert [s.name for s in metadata.metadata] == [stream_name]
    assert fresh_cluster.metadata_leader() not in (None, leader)
    print(
        f"metadata leader {leader.server_id} killed: stream created after "
        f"{created - killed:.2f} s, metadata in {answered - created:.2f} s"
    )


async def test_metadata_comes_before_the_deadline_while_a_member_is_down(
    fresh_cluster: LiftbridgeCluster,
) -> None:
    # A broker with no broker list cached asks every Raft member for its
    # address and waits for the dead one until the call's deadline (3 s
    # without one): the client must not send its own deadline and then give
    # up at that very moment.
    rpc_timeout = 5.0
    victim = fresh_cluster.nodes[0]
    await victim.akill()
    async with LiftbridgeClient(
        [node.broker for node in fresh_cluster.nodes[1:]], rpc_timeout=rpc_timeout
    ) as client:
        started = anyio.current_time()
        metadata = await client.get_metadata()
        elapsed = anyio.current_time() - started
    assert elapsed < rpc_timeout
    # The answer lists the members that replied (and the broker caches that
    # partial list for metadata.cache.max.age, 2 minutes).
    assert {b.id for b in metadata.brokers} == {n.server_id for n in fresh_cluster.nodes[1:]}
    print(f"metadata with {victim.server_id} down in {elapsed:.2f} s")


async def test_create_stream_without_a_majority_fails_within_the_retry_bounds(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    leader = fresh_cluster.metadata_leader()
    other = next(node for node in fresh_cluster.nodes if node is not leader)
    assert leader is not None
    # The survivor waits for a leader until the call's deadline and then
    # answers "no known metadata leader" just as the client gives up: either
    # error may come first.
    async with LiftbridgeClient(
        fresh_cluster.brokers,
        rpc_timeout=2.0,
        retry_policy=RetryPolicy(max_time=3.0),
        metadata_leader_timeout=0.5,
        metadata_leader_dev=0.1,
    ) as client:
        await client.get_metadata()
        await leader.akill()
        await other.akill()
        started = anyio.current_time()
        with anyio.fail_after(HANG_GUARD):
            with pytest.raises((ErrorNoMetadataLeader, ErrorDeadlineExceeded)) as info:
                await client.create_stream(stream_name)
        elapsed = anyio.current_time() - started
    print(f"no majority: {type(info.value).__name__} after {elapsed:.2f} s: {info.value}")


async def test_a_restarted_broker_missing_from_metadata_is_still_reached(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    # A broker that answers FetchMetadata while a member is down lists only
    # the members that answered its survey, and keeps that list for
    # metadata.cache.max.age (2 minutes), also after the member is back. A
    # client that knew the member's address must keep routing to it.
    first = fresh_cluster.nodes[0]
    # Set up with calls that leave the brokers' broker lists uncached.
    async with Channel.open(first.host, first.port) as channel:
        await channel.unary_unary(
            "/proto.API/CreateStream",
            wire.CreateStreamRequest(
                name=stream_name, subject=stream_name, replicationFactor=1, partitions=1
            ).encode(),
            timeout=10.0,
        )
    with anyio.fail_after(HANG_GUARD):
        leader = await the_only_replica(fresh_cluster, stream_name)

    async with LiftbridgeClient([leader.broker]) as client:
        await client.get_metadata()  # from the leader: every broker's address
        await leader.akill()
        # From a survivor that has to ask every member, then from its cache.
        during = await client.get_metadata()
        await leader.astart()
        after = await client.get_metadata()
        assert leader.server_id not in {b.id for b in during.brokers}
        assert leader.server_id not in {b.id for b in after.brokers}

        with anyio.fail_after(HANG_GUARD):
            # Answered only by the partition's leader: the member missing from
            # the metadata the client was given.
            partition = await client.get_partition_metadata(stream_name, 0)
            assert partition.leader == leader.server_id
            if by_generation(fresh_cluster, v1_9_0=False, newest=True):
                # The newest may bring the killed node's partition back without
                # serving it (no acks, nothing delivered: server behaviour,
                # tests/test_server_generations.py); routing is proven above.
                return
            ack = await client.publish(b"back", stream=stream_name, ack_policy=AckPolicy.LEADER)
            assert ack is not None
            log = Subscriber()
            await log.consume(
                client.subscribe(
                    stream_name,
                    start_position=StartPosition.EARLIEST,
                    stop_position=StopPosition.STOP_LATEST,
                )
            )
    assert [m.value for m in log.messages] == [b"back"]


async def the_only_replica(cluster: LiftbridgeCluster, stream: str) -> LiftbridgeServer:
    """The leader of a one-replica stream, found without FetchMetadata.

    FetchPartitionMetadata is answered by the partition leader only, and
    fills no broker list cache.
    """
    request = wire.FetchPartitionMetadataRequest(stream=stream, partition=0).encode()
    while True:
        for node in cluster.nodes:
            async with Channel.open(node.host, node.port) as channel:
                try:
                    await channel.unary_unary(
                        "/proto.API/FetchPartitionMetadata", request, timeout=10.0
                    )
                except GRPCError:
                    continue
            return node
        await anyio.sleep(0.05)


async def test_create_stream_without_a_metadata_leader_is_bounded_by_default(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    # Two of three members gone: no quorum, so no metadata leader. gufo
    # retries "no metadata leader" forever; lbwire within the retry policy.
    # (The long rpc_timeout lets the survivor wait for a leader within one
    # call, as it does once Raft has noticed the loss, without ending it.)
    # The survivor a follower: a lone metadata leader may still take the
    # request and fail it otherwise ("leadership lost while committing").
    leader = fresh_cluster.metadata_leader()
    survivor, *others = sorted(fresh_cluster.nodes, key=lambda node: node is leader)
    for node in others:
        await node.akill()
    async with LiftbridgeClient(
        [survivor.broker],
        retry_policy=RetryPolicy(max_time=3.0),
        rpc_timeout=HANG_GUARD * 2,
        metadata_leader_timeout=0.2,
        metadata_leader_dev=0.1,
    ) as client:
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorDeadlineExceeded, match=r"3\.0 s"):
            await client.create_stream(stream_name)


async def test_create_stream_with_timeout_none_waits_for_a_metadata_leader(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    leader = fresh_cluster.metadata_leader()
    survivor, returning, gone = sorted(fresh_cluster.nodes, key=lambda node: node is leader)
    await returning.akill()
    await gone.akill()
    max_time = 1.0
    async with LiftbridgeClient(
        [survivor.broker],
        retry_policy=RetryPolicy(max_time=max_time),
        rpc_timeout=HANG_GUARD * 2,
        metadata_leader_timeout=0.2,
        metadata_leader_dev=0.1,
    ) as client:
        created = anyio.Event()

        async def create() -> None:
            await client.create_stream(stream_name, timeout=None)
            created.set()

        with anyio.fail_after(HANG_GUARD * 2):
            async with anyio.create_task_group() as tg:
                started = anyio.current_time()
                tg.start_soon(create)
                # Still waiting well past the retry policy's max_time.
                await wait_until(
                    lambda: anyio.current_time() - started > 3 * max_time,
                    "three times the retry policy's max_time have passed",
                )
                assert not created.is_set()
                await returning.astart()
        metadata = await client.get_metadata(stream_name)
    assert [s.name for s in metadata.metadata] == [stream_name]
