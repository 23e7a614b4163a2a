"""The client's life cycle: structured concurrency, open and close."""

from __future__ import annotations

import asyncio

import anyio
import pytest
import sniffio
from client_support import HANG_GUARD, publish_values

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorNotFound, ErrorUnavailable
from lbwire.types import AckPolicy, StartPosition

pytestmark = pytest.mark.anyio


def running_tasks() -> int:
    """Number of tasks alive in the event loop right now."""
    if sniffio.current_async_library() == "asyncio":
        return len(asyncio.all_tasks())
    import trio

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


async def test_exit_ends_every_background_task(broker: str, stream_name: str) -> None:
    before = running_tasks()
    with anyio.fail_after(HANG_GUARD):
        async with LiftbridgeClient([broker]) as client:
            await client.create_stream(stream_name, wait_for_stream=True)
            await publish_values(client, stream_name, [b"a", b"b"])
            # Open: a PublishAsync session and a subscription, mid-stream.
            await (await client.publish_async(b"c", stream=stream_name))
            subscription = client.subscribe(
                stream_name, start_position=StartPosition.EARLIEST
            )
            assert (await subscription.__anext__()).offset == 0
            assert running_tasks() > before
        assert running_tasks() == before
        await subscription.aclose()
    assert running_tasks() == before


async def test_exit_fails_acks_still_awaited_with_unavailable(
    broker: str, stream_name: str
) -> None:
    async with LiftbridgeClient([broker]) as client:
        # minisr=2 on one node: the AckPolicy.ALL ack never comes.
        await client.create_stream(stream_name, minisr=2, wait_for_stream=True)
        pending = await client.publish_async(
            b"x", stream=stream_name, ack_policy=AckPolicy.ALL, ack_timeout=HANG_GUARD
        )
    with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUnavailable):
        await pending


async def test_error_raised_in_the_block_propagates_unwrapped(
    broker: str, stream_name: str
) -> None:
    # Not an ExceptionGroup: `except ErrorNotFound` around the block works.
    with pytest.raises(ErrorNotFound):
        async with LiftbridgeClient([broker]) as client:
            await client.publish(b"x", stream=stream_name)


async def test_cancelling_the_block_ends_the_client_quietly(broker: str, stream: str) -> None:
    before = running_tasks()
    with anyio.move_on_after(0.2) as scope:
        async with LiftbridgeClient([broker]) as client:
            async for _message in client.subscribe(stream):
                pass
    assert scope.cancelled_caught
    assert running_tasks() == before


async def test_client_cannot_be_reopened(broker: str) -> None:
    client = LiftbridgeClient([broker])
    async with client:
        pass
    with pytest.raises(RuntimeError, match="reopen"):
        async with client:
            pass


async def test_calls_outside_the_block_raise_runtime_error(broker: str, stream: str) -> None:
    client = LiftbridgeClient([broker])
    with pytest.raises(RuntimeError, match="async with"):
        await client.publish(b"x", stream=stream)


async def test_two_clients_work_side_by_side(broker: str, stream: str) -> None:
    async with LiftbridgeClient([broker]) as first, LiftbridgeClient([broker]) as second:
        assert await publish_values(first, stream, [b"a"]) == [0]
        assert await publish_values(second, stream, [b"b"]) == [1]


async def test_calls_after_the_block_raise_runtime_error(broker: str, stream: str) -> None:
    async with LiftbridgeClient([broker]) as client:
        await publish_values(client, stream, [b"a"])
    with pytest.raises(RuntimeError, match="not open"):
        await client.publish(b"x", stream=stream)
    with pytest.raises(RuntimeError, match="not open"):
        await client.publish_async(b"x", stream=stream)


async def test_idle_connection_is_closed_and_reopened_on_the_next_call(broker: str) -> None:
    async with LiftbridgeClient([broker], idle_timeout=0.2) as client:
        await client.get_metadata()
        assert len(client._channels) == 1
        with anyio.fail_after(HANG_GUARD):
            while client._channels:  # noqa: ASYNC110 - closed by the client's own task
                await anyio.sleep(0.05)
        metadata = await client.get_metadata()
        assert metadata.brokers
        assert len(client._channels) == 1


async def test_connection_with_a_call_in_progress_is_not_closed_as_idle(
    broker: str, stream_name: str
) -> None:
    async with LiftbridgeClient([broker], idle_timeout=0.2) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        seen = []
        with anyio.fail_after(HANG_GUARD):
            subscription = client.subscribe(stream_name, start_position=StartPosition.EARLIEST)
            await publish_values(client, stream_name, [b"first"])
            async for msg in subscription:
                seen.append(msg.value)
                if len(seen) == 1:
                    # Well past the idle timeout while only the subscription runs.
                    deadline = anyio.current_time() + 1.0
                    while anyio.current_time() < deadline:  # noqa: ASYNC110
                        await anyio.sleep(0.1)
                    async with LiftbridgeClient([broker]) as other:
                        await other.publish(b"second", stream=stream_name)
                else:
                    break
            await subscription.aclose()
        assert seen == [b"first", b"second"]


async def test_non_positive_idle_timeout_is_refused(broker: str) -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        LiftbridgeClient([broker], idle_timeout=0)
