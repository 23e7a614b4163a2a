"""Consumer groups when the group's coordinator dies.

The member stops getting answers from the coordinator, reports it after the
coordinator timeout (2 s here), the cluster picks a new coordinator, and the
member keeps consuming: every message is delivered (at least once), the
member's view of the coordinator moves to a live broker, and messages
published after that still arrive.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from cluster_support import FAST_FAILOVER, HANG_GUARD, node_by_id, poll_until

from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset, Consumer
from lbwire.error import LiftbridgeError
from lbwire.testing import LiftbridgeCluster
from lbwire.types import AckPolicy

pytestmark = pytest.mark.anyio

GROUP_TIMEOUTS = {"groups.consumer.timeout": "2s", "groups.coordinator.timeout": "2s"}
PARTITIONS = 2


@pytest.fixture
def group_cluster() -> Iterator[LiftbridgeCluster]:
    with LiftbridgeCluster(size=3, config_overrides={**FAST_FAILOVER, **GROUP_TIMEOUTS}) as c:
        yield c


async def publish_until_acked(client: LiftbridgeClient, stream: str, value: bytes) -> None:
    """Publish to the partition named in `value`, retrying while the cluster fails over.

    A retried publish may be stored twice; the test counts values, not offsets.
    """
    partition = int(value.split(b"-")[0])
    while True:
        try:
            await client.publish(
                value, stream=stream, partition=partition, ack_policy=AckPolicy.ALL
            )
            return
        except LiftbridgeError:
            await anyio.sleep(0.2)


async def consume_until(consumer: Consumer, seen: set[bytes], wanted: set[bytes]) -> None:
    async for message in consumer:
        seen.add(message.value)
        if seen >= wanted:
            return


async def test_member_survives_the_death_of_its_group_coordinator(
    group_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    def values(rounds: range) -> list[bytes]:
        return [b"%d-%d" % (p, i) for i in rounds for p in range(PARTITIONS)]

    async with LiftbridgeClient(group_cluster.brokers) as client:
        await client.create_stream(
            stream_name, partitions=PARTITIONS, replication_factor=3, wait_for_stream=True
        )
        await client.wait_for_cursors()
        for value in values(range(3)):
            await publish_until_acked(client, stream_name, value)
        seen: set[bytes] = set()
        with anyio.fail_after(HANG_GUARD * 3):
            async with client.consumer(
                "g-" + stream_name, [stream_name], auto_offset=AutoOffset.EARLIEST
            ) as consumer:
                await consumer.wait_assigned()
                first_coordinator = consumer.coordinator
                await consume_until(consumer, seen, set(values(range(3))))

                node_by_id(group_cluster, first_coordinator).kill()
                for value in values(range(3, 6)):
                    await publish_until_acked(client, stream_name, value)
                await consume_until(consumer, seen, set(values(range(6))))

                async def coordinator_moved() -> bool:
                    return consumer.coordinator != first_coordinator

                await poll_until(coordinator_moved)
                # The new coordinator serves the member: it still reads both
                # partitions and gets what is published now.
                for value in values(range(6, 8)):
                    await publish_until_acked(client, stream_name, value)
                await consume_until(consumer, seen, set(values(range(8))))
                assignments = consumer.assignments
    assert consumer.coordinator in {n.server_id for n in group_cluster.nodes} - {first_coordinator}
    assert assignments == {stream_name: list(range(PARTITIONS))}
