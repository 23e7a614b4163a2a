"""`publish_async` moves its PublishAsync stream to another broker when its own dies.

A real three-node cluster: the client's stream is on a broker that leads
nothing, which is then killed; the next `publish_async` opens the stream on
another broker, and the partition's (living) leader acks it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest
from helpers import HANG_GUARD

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorUnavailable
from lbwire.testing import LiftbridgeCluster

pytestmark = pytest.mark.anyio


@pytest.fixture
def fresh_cluster() -> Iterator[LiftbridgeCluster]:
    """A three-node cluster of the test's own (it kills a node)."""
    with LiftbridgeCluster(size=3) as cluster:
        yield cluster


async def test_publish_async_opens_its_stream_on_another_broker_when_its_own_dies(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    async with LiftbridgeClient(fresh_cluster.brokers) as admin:
        await admin.create_stream(stream_name, wait_for_stream=True)
        leader = admin.cached_metadata.leader(stream_name, 0)
    assert leader is not None
    leader_broker = f"{leader[0]}:{leader[1]}"
    doomed = next(node for node in fresh_cluster.nodes if node.broker != leader_broker)

    async with LiftbridgeClient([doomed.broker]) as client:
        await client.get_metadata()  # learns the other brokers
        with anyio.fail_after(HANG_GUARD):
            assert await (await client.publish_async(b"before", stream=stream_name)) is not None
            assert [c.broker for c in client.connection_info() if c.connected] == [doomed.broker]
            await doomed.akill()
            ack = None
            while ack is None:
                # The first try may meet the broken stream before its reader
                # noticed it; any other failure than that ends the test.
                with contextlib.suppress(ErrorUnavailable):
                    ack = await (await client.publish_async(b"after", stream=stream_name))
                # Lets the hang guard fire should a failure come without a checkpoint.
                await anyio.lowlevel.checkpoint()
        assert ack.offset == 1
