"""publish_batch, and fire-and-forget publishing (AckPolicy.NONE) whose refusals are reported."""

from __future__ import annotations

import anyio
import pytest
from client_support import HANG_GUARD, partition_of, read_all
from helpers import wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorNotFound, PublishAsyncError
from lbwire.partitioning import RoundRobinPartitioner
from lbwire.sync import LiftbridgeClient as BlockingClient
from lbwire.testing import LiftbridgeServer
from lbwire.types import AckPolicy

pytestmark = pytest.mark.anyio


async def test_publish_batch_stores_every_message_in_order_beyond_the_bound(
    broker: str, stream_name: str
) -> None:
    values = [b"%d" % i for i in range(2500)]
    # Three times the bound: the batch goes out as room comes back.
    async with LiftbridgeClient([broker], publish_async_max_pending=1000) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        with anyio.fail_after(HANG_GUARD):
            pending = await client.publish_batch(values, stream=stream_name, key=b"k")
            acks = [await item for item in pending]
        assert [ack.offset for ack in acks] == list(range(2500))
        assert [ack.correlationId for ack in acks] == [p.correlation_id for p in pending]
        messages = await read_all(client, stream_name)
        assert [m.value for m in messages] == values
        assert {m.key for m in messages} == {b"k"}
        assert client.publish_in_flight == (0, 0)


async def test_publish_batch_sends_requests_as_they_are_among_values(
    client: LiftbridgeClient, stream: str
) -> None:
    batch = [
        b"v0",
        client.get_publish_request(b"r1", stream=stream, key=b"own", headers={"h": b"1"}),
        b"v2",
    ]
    with anyio.fail_after(HANG_GUARD):
        acks = [await item for item in await client.publish_batch(batch, stream=stream)]
    assert [ack.offset for ack in acks] == [0, 1, 2]
    messages = await read_all(client, stream)
    assert [(m.value, m.key) for m in messages] == [(b"v0", b""), (b"r1", b"own"), (b"v2", b"")]
    assert messages[1].headers["h"] == b"1"


async def test_publish_batch_with_a_partitioner_keeps_each_partitions_order(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    values = [b"%d" % i for i in range(10)]
    with anyio.fail_after(HANG_GUARD):
        pending = await client.publish_batch(
            values, stream=stream_name, partitioner=RoundRobinPartitioner()
        )
        acks = [await item for item in pending]
    partitions = [partition_of(ack, stream_name) for ack in acks]
    assert sorted(set(partitions)) == [0, 1]
    for partition in (0, 1):
        mine = [v for v, p in zip(values, partitions) if p == partition]
        assert [m.value for m in await read_all(client, stream_name, partition)] == mine


async def test_publish_batch_refuses_bad_input_before_sending_anything(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="stream"):
        await client.publish_batch([b"no stream"])
    with pytest.raises(TypeError, match="bytes"):
        await client.publish_batch([b"ok", "text"], stream=stream)  # type: ignore[list-item]
    assert client.publish_in_flight == (0, 0)
    assert (await client.get_partition_metadata(stream, 0)).newest_offset == -1


async def test_fire_and_forget_refusals_reach_the_callback_and_are_counted(
    broker: str, stream_name: str
) -> None:
    refused: list[PublishAsyncError] = []
    missing = f"{stream_name}-missing"
    async with LiftbridgeClient([broker], on_publish_error=refused.append) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        # A first acked reply (see test_client_pipelined: the server may drop
        # one of two first replies sent at once).
        await (await client.publish_async(b"first", stream=stream_name))
        with anyio.fail_after(HANG_GUARD):
            single = await client.publish_async(b"lost", stream=missing, ack_policy=AckPolicy.NONE)
            assert single.done  # returned once queued: nothing to wait for
            assert await single is None
            batch = await client.publish_batch(
                [b"a", b"b"], stream=missing, ack_policy=AckPolicy.NONE
            )
            assert [await item for item in batch] == [None, None]
            stored = await client.publish_batch(
                [b"c", b"d"], stream=stream_name, ack_policy=AckPolicy.NONE
            )
            await wait_until(lambda: client.publish_errors == 3, "three refusals reported")
        assert {error.correlation_id for error in refused} == {
            item.correlation_id for item in [single, *batch]
        }
        assert all(isinstance(error, ErrorNotFound) for error in refused)
        # The unacked messages to the stream that exists are stored.
        await client.publish(b"e", stream=stream_name)
        assert [m.value for m in await read_all(client, stream_name)] == [
            b"first",
            b"c",
            b"d",
            b"e",
        ]
        assert [item.correlation_id for item in stored]
        # gufo-liftbridge's behaviour: publish with NONE waits for the server's reply.
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorNotFound):
            await client.publish(b"raises", stream=missing, ack_policy=AckPolicy.NONE)
        assert client.publish_errors == 3


async def test_a_callback_that_raises_breaks_nothing_and_refusals_are_still_counted(
    broker: str, stream_name: str
) -> None:
    calls = []

    def broken(error: PublishAsyncError) -> None:
        calls.append(error)
        raise RuntimeError("observer bug")

    async with LiftbridgeClient([broker], on_publish_error=broken) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await (await client.publish_async(b"first", stream=stream_name))
        with anyio.fail_after(HANG_GUARD):
            for _ in range(3):
                await client.publish_async(
                    b"x", stream=f"{stream_name}-missing", ack_policy=AckPolicy.NONE
                )
            await wait_until(lambda: client.publish_errors == 3, "three refusals counted")
            # The stream still carries acked publishes.
            ack = await (await client.publish_async(b"after", stream=stream_name))
        assert ack.offset == 1
        assert len(calls) == 3


async def test_publish_batch_outside_the_block_returns_settled_acks(
    broker: str, stream_name: str
) -> None:
    async with LiftbridgeClient([broker]) as admin:
        await admin.create_stream(stream_name, wait_for_stream=True)
    client = LiftbridgeClient([broker])
    with anyio.fail_after(HANG_GUARD):
        pending = await client.publish_batch([b"a", b"b"], stream=stream_name)
    assert all(item.done for item in pending)
    assert [(await item).offset for item in pending] == [0, 1]


def test_the_blocking_client_publishes_a_batch_as_futures(
    liftbridge_server: LiftbridgeServer, stream_name: str
) -> None:
    with BlockingClient([liftbridge_server.broker]) as client:
        client.create_stream(stream_name, wait_for_stream=True)
        futures = client.publish_batch([b"a", b"b", b"c"], stream=stream_name)
        assert [f.result(HANG_GUARD).offset for f in futures] == [0, 1, 2]
        client.flush(timeout=HANG_GUARD)
        assert client.publish_in_flight == (0, 0)
