"""The whole-stream reader across a leader's death: its partitions resume, the others go on."""

from __future__ import annotations

import anyio
import pytest
from cluster_support import HANG_GUARD, node_by_id
from helpers import wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import LiftbridgeError
from lbwire.testing import LiftbridgeCluster
from lbwire.types import AckPolicy, Message

pytestmark = [pytest.mark.anyio, pytest.mark.server]

PARTITIONS = 6


async def publish_acked(
    client: LiftbridgeClient, stream: str, partition: int, value: bytes
) -> None:
    """Publish until acked by every in-sync replica (through the leader's failover)."""
    while True:
        try:
            await client.publish(
                value, stream=stream, partition=partition, ack_policy=AckPolicy.ALL, ack_timeout=3
            )
            return
        except LiftbridgeError:
            await anyio.sleep(0.1)  # no leader yet: ask again


async def test_reader_outlives_a_partition_leader(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    received: list[Message] = []
    async with LiftbridgeClient(fresh_cluster.brokers) as client:
        await client.create_stream(
            stream_name, partitions=PARTITIONS, replication_factor=3, wait_for_stream=True
        )
        (metadata,) = (await client.get_metadata(stream_name)).metadata
        victim = node_by_id(fresh_cluster, metadata.partitions[0].leader)
        theirs = [p for p, m in metadata.partitions.items() if m.leader == victim.server_id]
        others = [p for p in range(PARTITIONS) if p not in theirs]

        def count(partitions: list[int]) -> int:
            return sum(m.partition in partitions for m in received)

        with anyio.fail_after(HANG_GUARD * 2):
            async with client.reader(stream_name) as reader, anyio.create_task_group() as tg:

                async def read() -> None:
                    async for msg in reader:
                        received.append(msg)

                tg.start_soon(read)
                for partition in range(PARTITIONS):
                    await publish_acked(client, stream_name, partition, b"before")
                await wait_until(lambda: len(received) == PARTITIONS, "the first round arrived")

                await victim.akill()
                # The partitions other brokers lead are read on while the
                # victim's partitions wait for a new leader.
                for partition in others:
                    await publish_acked(client, stream_name, partition, b"after")
                await wait_until(
                    lambda: count(others) == 2 * len(others), "the others' messages arrived"
                )
                for partition in theirs:
                    await publish_acked(client, stream_name, partition, b"after")
                await wait_until(
                    lambda: len(received) == 2 * PARTITIONS, "the failed-over partitions resumed"
                )
                tg.cancel_scope.cancel()

    for partition in range(PARTITIONS):
        mine = [m for m in received if m.partition == partition]
        assert [(m.offset, m.value) for m in mine] == [(0, b"before"), (1, b"after")]
