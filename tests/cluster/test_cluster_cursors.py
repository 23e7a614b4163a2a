"""Cursors on a cluster: the __cursors stream is replicated and survives its leader."""

from __future__ import annotations

import anyio
import pytest
from cluster_support import HANG_GUARD, high_watermark_at, partition_leader, poll_until

from lbwire.client import CURSOR_STREAM, LiftbridgeClient, RetryPolicy
from lbwire.testing import LiftbridgeCluster, LiftbridgeServer

pytestmark = [pytest.mark.anyio, pytest.mark.server]


async def test_cursors_stream_is_replicated_to_every_broker(
    shared_cluster: LiftbridgeCluster,
) -> None:
    # cursors.stream.replication.factor is -1 (all brokers) by default in v1.9.0.
    async with LiftbridgeClient(shared_cluster.brokers) as client:
        await client.wait_for_cursors(timeout=HANG_GUARD)
        metadata = await client.get_metadata(CURSOR_STREAM)
    (cursors,) = metadata.metadata
    everyone = {node.server_id for node in shared_cluster.nodes}
    for partition in cursors.partitions.values():
        assert set(partition.replicas) == everyone
        assert set(partition.isr) == everyone


async def test_cursors_survive_the_loss_of_their_partition_leader(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    # Cursor calls go to the partition leader and are retried while it is
    # unreachable, within the retry policy. The default one (10 tries) gives up
    # after 5 to 9 s, less than a partition failover here (5 to 6 s, the
    # metadata leader's election included) can take on a busy machine, and
    # far less than with v1.9.0's defaults (15 s and more).
    policy = RetryPolicy(attempts=30, max_time=30.0)
    async with LiftbridgeClient(fresh_cluster.brokers, retry_policy=policy) as client:
        await client.wait_for_cursors(timeout=HANG_GUARD)
        await client.create_stream(stream_name, replication_factor=3, wait_for_stream=True)
        await client.set_cursor(stream_name, 0, "reader", 41)
        leader = await partition_leader(client, fresh_cluster, CURSOR_STREAM)
        # v1.9.0's new cursors leader reads cursors only up to its own high
        # watermark, which trails the old leader's by a replication round; a
        # FetchCursor before it caught up answers -1 (and caches that). Wait
        # until every replica knows the cursor write is committed.
        written = (await client.get_partition_metadata(CURSOR_STREAM, 0)).newest_offset
        for node in fresh_cluster.nodes:

            async def caught_up(node: LiftbridgeServer = node) -> bool:
                return await high_watermark_at(node, CURSOR_STREAM) >= written

            with anyio.fail_after(HANG_GUARD):
                await poll_until(caught_up)

        await leader.akill()
        killed = anyio.current_time()
        with anyio.fail_after(HANG_GUARD):
            stored = await client.get_cursor(stream_name, 0, "reader")
            read = anyio.current_time()
            await client.set_cursor(stream_name, 0, "reader", 42)
            assert await client.get_cursor(stream_name, 0, "reader") == 43
        assert (await partition_leader(client, fresh_cluster, CURSOR_STREAM)) is not leader
    # gufo-liftbridge's convention (the default): the cursor holds offset + 1.
    assert stored == 42
    print(f"cursors leader {leader.server_id} killed: cursor read after {read - killed:.2f} s")
