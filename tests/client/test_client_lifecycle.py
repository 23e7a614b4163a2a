"""The client's life cycle: structured concurrency, open and close."""

from __future__ import annotations

import asyncio
import os

import anyio
import pytest
import sniffio
from client_support import HANG_GUARD, publish_values
from helpers import wait_until

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
            subscription = client.subscribe(stream_name, start_position=StartPosition.EARLIEST)
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


# Calls before and after the block work, as in gufo-liftbridge (issue 10
# item 10): tests/client/test_outside_block.py replaces the two tests that
# expected RuntimeError there.


async def test_two_clients_work_side_by_side(broker: str, stream: str) -> None:
    async with LiftbridgeClient([broker]) as first, LiftbridgeClient([broker]) as second:
        assert await publish_values(first, stream, [b"a"]) == [0]
        assert await publish_values(second, stream, [b"b"]) == [1]


async def test_idle_connection_is_closed_and_reopened_on_the_next_call(broker: str) -> None:
    # 1 s, not less: on a loaded machine a shorter idle timeout could close
    # the reopened connection before the assertion below looks at it.
    async with LiftbridgeClient([broker], idle_timeout=1.0) as client:
        await client.get_metadata()
        assert len(client.connection_info()) == 1
        await wait_until(lambda: not client.connection_info(), "the idle connection is closed")
        metadata = await client.get_metadata()
        assert metadata.brokers
        assert [c.connected for c in client.connection_info()] == [True]


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


def connections_to(port: int) -> int:
    """ESTABLISHED TCP connections from this process to `port` (Linux /proc).

    Counted by the operating system, not by the client's own bookkeeping.
    """
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


async def test_subscriptions_share_a_pool_of_max_conns_per_broker_connections(
    broker: str, stream_name: str
) -> None:
    port = int(broker.rsplit(":", 1)[1])
    # The unary connection must outlive the wait for the subscriptions (a loaded
    # machine took longer than 0.3 s there), and the pooled ones go idle after.
    async with LiftbridgeClient([broker], max_conns_per_broker=2, idle_timeout=2.0) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await publish_values(client, stream_name, [b"a"])
        unary_only = connections_to(port)
        assert unary_only == 1
        subscriptions = [
            client.subscribe(stream_name, start_position=StartPosition.EARLIEST) for _ in range(3)
        ]
        with anyio.fail_after(HANG_GUARD):
            for subscription in subscriptions:
                assert (await subscription.__anext__()).value == b"a"
        # Two pooled connections (the limit) carry the three subscriptions;
        # the other calls keep their own connection.
        assert connections_to(port) == 3
        pooled = [c.subscriptions for c in client.connection_info() if c.for_subscriptions]
        assert sorted(pooled) == [1, 2]
        # The subscriptions still work side by side on shared connections.
        await publish_values(client, stream_name, [b"b"])
        with anyio.fail_after(HANG_GUARD):
            for subscription in subscriptions:
                assert (await subscription.__anext__()).value == b"b"
        for subscription in subscriptions:
            await subscription.aclose()
        # Idle pooled connections are closed like the others.
        await wait_until(lambda: not connections_to(port), "idle connections are closed")
        assert not client.connection_info()


async def test_one_pooled_connection_carries_every_subscription(
    broker: str, stream_name: str
) -> None:
    port = int(broker.rsplit(":", 1)[1])
    async with LiftbridgeClient([broker], max_conns_per_broker=1) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await publish_values(client, stream_name, [b"a"])
        subscriptions = [
            client.subscribe(stream_name, start_position=StartPosition.EARLIEST) for _ in range(4)
        ]
        with anyio.fail_after(HANG_GUARD):
            for subscription in subscriptions:
                assert (await subscription.__anext__()).value == b"a"
        assert connections_to(port) == 2
        for subscription in subscriptions:
            await subscription.aclose()


def test_max_conns_per_broker_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_conns_per_broker must be at least 1, not 0"):
        LiftbridgeClient(["127.0.0.1:1"], max_conns_per_broker=0)
