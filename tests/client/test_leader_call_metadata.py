"""A leader call whose retry finds no leader in fresh metadata looks again on the next one.

A fake HTTP/2 peer stands in for the broker: it must answer FetchMetadata
with a partition that has no leader right after a call to that leader failed.
A real cluster names no leader only within an election, which cannot be
placed between two of the client's tries on demand (and the client keeps the
addresses of brokers an answer leaves out, so a dead leader stays routable).
"""

from __future__ import annotations

import pytest
from helpers.h2peer import raw_server

from lbwire import wire
from lbwire.client import LiftbridgeClient, RetryPolicy

pytestmark = pytest.mark.anyio

METADATA = b"/proto.API/FetchMetadata"
PARTITION_METADATA = b"/proto.API/FetchPartitionMetadata"


async def test_a_leader_call_fetches_metadata_again_after_an_answer_with_no_leader() -> None:
    async with raw_server() as server:
        broker = wire.Broker(id="b", host="127.0.0.1", port=server.port)
        # The leader, then none (an election under way), then the leader again.
        leaders = iter(["b", ""])

        def metadata(_: bytes) -> list[bytes]:
            partition = wire.PartitionMetadata(id=0, leader=next(leaders, "b"))
            stream = wire.StreamMetadata(name="s", subject="s", partitions={0: partition})
            answer = wire.FetchMetadataResponse(brokers=[broker], streamMetadata=[stream])
            return [answer.encode()]

        def partition_metadata(_: bytes) -> list[bytes]:
            partition = wire.PartitionMetadata(id=0, leader="b", newestOffset=3)
            return [wire.FetchPartitionMetadataResponse(metadata=partition).encode()]

        server.replies[METADATA] = metadata
        server.replies[PARTITION_METADATA] = partition_metadata
        # The first call to the leader fails (the server never began it).
        server.refuse_once.add(PARTITION_METADATA)
        policy = RetryPolicy(attempts=6, initial_backoff=0.01, max_backoff=0.02, max_time=10)
        async with LiftbridgeClient([f"127.0.0.1:{server.port}"], retry_policy=policy) as client:
            partition = await client.get_partition_metadata("s", 0)
        assert partition.newest_offset == 3
        fetches = [headers for _, headers in server.requests if headers[b":path"] == METADATA]
        assert len(fetches) == 3
