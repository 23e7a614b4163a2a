"""A consumer-group member's batches: their bound, and the commit of the last one on exit."""

from __future__ import annotations

import anyio
import pytest
from helpers import HANG_GUARD

from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset
from lbwire.types import Message

pytestmark = pytest.mark.anyio


async def test_member_batches_hold_at_most_max_count_and_commit_when_handed_back(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    await client.wait_for_cursors()
    for partition in (0, 1):
        for i in range(4):
            await client.publish(b"%d" % i, stream=stream_name, partition=partition)
    group = "g-" + stream_name
    got: list[Message] = []
    async with client.consumer(
        group, [stream_name], auto_offset=AutoOffset.EARLIEST, auto_checkpoint_interval=None
    ) as member:
        batches = member.batches(3, 0.05)
        with anyio.fail_after(HANG_GUARD):
            while len(got) < 8:
                batch = await batches.__anext__()
                assert 1 <= len(batch) <= 3
                got.extend(batch)
    assert sorted((m.partition, m.offset) for m in got) == [
        (p, o) for p in (0, 1) for o in range(4)
    ]
    # Leaving committed the last batch too (go-liftbridge's convention: the last offset).
    cursor = f"__group:{group}"
    assert [await client.cursor_store.load(stream_name, p, cursor) for p in (0, 1)] == [3, 3]


async def test_member_batches_bad_arguments(client: LiftbridgeClient, stream_name: str) -> None:
    member = client.consumer("g", [stream_name])
    with pytest.raises(ValueError, match="max_count"):
        member.batches(0, 1)
