"""A subscription outlives the broker it reads from: no gap, no duplicate."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from cluster_support import (
    HANG_GUARD,
    Publisher,
    Subscriber,
    address,
    partition_leader,
)

from lbwire.client import LiftbridgeClient
from lbwire.testing import LiftbridgeCluster
from lbwire.types import AckPolicy, StartPosition

pytestmark = [pytest.mark.anyio, pytest.mark.server]

BEFORE_KILL = 10
AFTER_KILL = 10


def assert_exactly_the_log(subscriber: Subscriber, publisher: Publisher) -> None:
    """Offsets 0..N-1 once each, and every acked offset holds the acked value."""
    assert subscriber.offsets == list(range(len(subscriber.messages)))
    received = {m.offset: m.value for m in subscriber.messages}
    for offset, value in publisher.acked.items():
        assert received[offset] == value
    # A publish that timed out may or may not have been written, but once.
    values = [m.value for m in subscriber.messages]
    assert len(values) == len(set(values))


@pytest.mark.parametrize("outside", [False, True], ids=["in-block", "outside-block"])
async def test_subscription_moves_to_the_new_leader_without_gap_or_duplicate(
    fresh_cluster: LiftbridgeCluster, stream_name: str, outside: bool
) -> None:
    # outside: the subscription's client is never entered (gufo style), so
    # its waits run in steps of their own (lbwire._pool.OutsideIteration).
    async with LiftbridgeClient(fresh_cluster.brokers) as client:
        await client.create_stream(stream_name, replication_factor=3, wait_for_stream=True)
        leader = await partition_leader(client, fresh_cluster, stream_name)
        publisher = Publisher(client, stream_name)
        subscriber = Subscriber()
        reader = LiftbridgeClient(fresh_cluster.brokers) if outside else client
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    subscriber.consume,
                    reader.subscribe(stream_name, start_position=StartPosition.EARLIEST),
                )
                await publisher.publish(BEFORE_KILL)
                await subscriber.wait_for_offset(max(publisher.acked))

                killed = anyio.current_time()
                await leader.akill()
                await publisher.publish(AFTER_KILL)
                await subscriber.wait_for_offset(max(publisher.acked))
                tg.cancel_scope.cancel()

    assert_exactly_the_log(subscriber, publisher)
    assert reader.connection_info() == []  # closed with the subscription
    print(
        f"leader {leader.server_id} killed: next message after "
        f"{subscriber.first_arrival_after(killed) - killed:.2f} s; "
        f"{len(publisher.failed)} publishes failed"
    )


async def test_subscription_to_a_replica_resumes_when_that_replica_dies(
    fresh_cluster: LiftbridgeCluster, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection drops but the partition keeps its leader: the
    # subscription resumes on another in-sync replica.
    async with LiftbridgeClient(fresh_cluster.brokers) as client:
        await client.create_stream(stream_name, replication_factor=3, wait_for_stream=True)
        leader = await partition_leader(client, fresh_cluster, stream_name)
        follower = next(node for node in fresh_cluster.nodes if node is not leader)
        # The client picks a random in-sync replica: make the first pick the follower.
        real_random_isr = client.cached_metadata.random_isr
        picks: list[Any] = []

        def first_the_follower(stream: str, partition: int) -> Any:
            picks.append(real_random_isr(stream, partition) if picks else address(follower))
            return picks[-1]

        monkeypatch.setattr(client.cached_metadata, "random_isr", first_the_follower)

        # LEADER acks: with ALL, publishing would wait for the dead replica to
        # leave the ISR (replica.max.lag.time).
        publisher = Publisher(client, stream_name, ack_policy=AckPolicy.LEADER)
        subscriber = Subscriber()
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    subscriber.consume,
                    client.subscribe(
                        stream_name, start_position=StartPosition.EARLIEST, allow_isr=True
                    ),
                )
                await publisher.publish(BEFORE_KILL)
                await subscriber.wait_for_offset(max(publisher.acked))
                assert picks == [address(follower)]

                killed = anyio.current_time()
                await follower.akill()
                await publisher.publish(AFTER_KILL)
                await subscriber.wait_for_offset(max(publisher.acked))
                tg.cancel_scope.cancel()

        assert (await partition_leader(client, fresh_cluster, stream_name)) is leader
    assert len(picks) > 1
    assert_exactly_the_log(subscriber, publisher)
    print(
        f"replica {follower.server_id} killed: next message after "
        f"{subscriber.first_arrival_after(killed) - killed:.2f} s"
    )
