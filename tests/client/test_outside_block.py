"""Calls made before or after the client's `async with` block, as gufo-liftbridge allows.

gufo's examples call `set_cursor` after the block has closed. Each such call
brings a connection of its own and closes it before it returns; a
subscription owns its connection until it is closed. Nothing is left running.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import Any

import anyio
import pytest
import sniffio
from client_support import HANG_GUARD, collect
from helpers import wait_until

from lbwire._pool import OutsideIteration
from lbwire.client import LiftbridgeClient
from lbwire.reader import in_lists
from lbwire.types import StartPosition, StopPosition

pytestmark = pytest.mark.anyio


def _running_tasks() -> int:
    """Tasks alive in the event loop (the test's own included)."""
    if sniffio.current_async_library() == "asyncio":
        return len(asyncio.all_tasks())
    import trio

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


def _assert_nothing_left(client: LiftbridgeClient, tasks_before: int) -> None:
    assert client.connection_info() == []
    assert _running_tasks() == tasks_before


async def test_calls_after_the_block_work_and_leave_nothing_running(
    broker: str, stream_name: str
) -> None:
    client = LiftbridgeClient([broker])
    async with client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await client.wait_for_cursors()
    tasks = _running_tasks()
    with anyio.fail_after(HANG_GUARD):
        ack = await client.publish(b"after", stream=stream_name)
        assert ack is not None
        _assert_nothing_left(client, tasks)
        await client.set_cursor(stream_name, 0, "gufo", ack.offset)
        _assert_nothing_left(client, tasks)
        assert await client.get_cursor(stream_name, 0, "gufo") == ack.offset + 1
        _assert_nothing_left(client, tasks)
        await client.get_metadata(stream_name)
        _assert_nothing_left(client, tasks)


async def test_calls_before_the_block_work_and_leave_nothing_running(
    broker: str, stream_name: str
) -> None:
    client = LiftbridgeClient([broker])
    tasks = _running_tasks()
    with anyio.fail_after(HANG_GUARD):
        await client.create_stream(stream_name, wait_for_stream=True)
        _assert_nothing_left(client, tasks)
        pending = await client.publish_async(b"early", stream=stream_name)
        _assert_nothing_left(client, tasks)
        ack = await pending
        assert ack is not None
        assert ack.offset == 0
        requests = [client.get_publish_request(b"bulk", stream=stream_name) for _ in range(3)]
        offsets = [r.ack.offset async for r in client.publish_bulk(requests)]
        assert offsets == [1, 2, 3]
        _assert_nothing_left(client, tasks)
    async with client:
        assert await client.publish(b"inside", stream=stream_name) is not None


async def test_a_subscription_after_the_block_owns_its_connection_until_closed(
    broker: str, stream_name: str
) -> None:
    client = LiftbridgeClient([broker])
    async with client:
        await client.create_stream(stream_name, wait_for_stream=True)
        for value in (b"a", b"b"):
            await client.publish(value, stream=stream_name)
    tasks = _running_tasks()
    messages = await collect(
        client.subscribe(
            stream_name,
            start_position=StartPosition.EARLIEST,
            stop_position=StopPosition.STOP_LATEST,
        )
    )
    assert [m.value for m in messages] == [b"a", b"b"]
    _assert_nothing_left(client, tasks)
    # Closed early, at a message.
    first = await collect(
        client.subscribe(stream_name, start_position=StartPosition.EARLIEST), limit=1
    )
    assert [m.value for m in first] == [b"a"]
    _assert_nothing_left(client, tasks)


# -- leaving a subscription mid-loop outside the block (PEP 789) ------------------------------

BREAKS = 1000


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settled_fds(most: int) -> None:
    # The generators left by `break` are closed by the loop's finalizer (asyncio)
    # or when collected: their sockets close soon after, not at once. Without
    # reference counting (PyPy) both wait for a collection, and what a closing
    # releases for the next one: so collect while waiting.
    def settled() -> bool:
        gc.collect()
        return _open_fds() <= most

    await wait_until(settled, f"no more than {most} descriptors are open")


async def _client_after_one_message(
    broker: str, stream_name: str, count: int = 1
) -> LiftbridgeClient:
    """A client whose block ended, of a new stream holding `count` messages "only"."""
    client = LiftbridgeClient([broker])
    async with client:
        await client.create_stream(stream_name, wait_for_stream=True)
        for _ in range(count):
            await client.publish(b"only", stream=stream_name)
    gc.collect()
    return client


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# trio warns about a generator left unexhausted by the user's own `break`
# (gufo-style code without aclose); that warning is the user's to see, and
# what these tests prove is that lbwire logs and raises nothing.
_USER_BREAK_WARNING = pytest.mark.filterwarnings(
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)


@_USER_BREAK_WARNING
@pytest.mark.parametrize("count", [1, 3], ids=["first", "third"])
async def test_a_break_out_of_a_subscription_outside_the_block_ends_it_cleanly(
    broker: str, stream_name: str, caplog: pytest.LogCaptureFixture, count: int
) -> None:
    # gufo-style: no `async with`, no aclose; the loop is left with `break`,
    # at the first message (after a wait) or at the third (usually received
    # with the first, so handed out without a wait).
    client = await _client_after_one_message(broker, stream_name, count)
    caplog.set_level(logging.WARNING)
    fds = _open_fds()
    for _ in range(BREAKS):
        async for message in client.subscribe(stream_name, start_position=StartPosition.EARLIEST):
            assert message.value == b"only"
            if message.offset == count - 1:
                break
    gc.collect()
    await _settled_fds(fds)
    assert client.connection_info() == []
    assert _warnings(caplog) == []


@_USER_BREAK_WARNING
async def test_a_subscription_dropped_without_aclose_is_finalized_cleanly(
    broker: str, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Broken off and kept a while (the client used meanwhile), then dropped:
    # the loop's asyncgen finalizer closes it from a task of its own.
    client = await _client_after_one_message(broker, stream_name)
    caplog.set_level(logging.WARNING)
    fds = _open_fds()
    for _ in range(20):
        messages = client.subscribe(stream_name, start_position=StartPosition.EARLIEST)
        async for message in messages:
            assert message.value == b"only"
            break
        assert await client.get_cursor(stream_name, 0, "never-set") == -1
        del messages
        gc.collect()
    await _settled_fds(fds)
    assert _warnings(caplog) == []


@pytest.mark.parametrize("lists", [False, True], ids=["one_by_one", "in_lists"])
async def test_messages_already_received_are_handed_out_without_a_step(
    broker: str, stream_name: str, monkeypatch: pytest.MonkeyPatch, lists: bool
) -> None:
    # A step (a task group for the connection's tasks) is for a wait only.
    # A subscription takes every message its call holds at once, so read in
    # lists (as the reader and batched() do) it needs a step per list at most.
    count = 200
    client = LiftbridgeClient([broker])
    async with client:
        await client.create_stream(stream_name, wait_for_stream=True)
        for pending in await client.publish_batch([b"m"] * count, stream=stream_name):
            await pending
    steps = 0
    step = OutsideIteration.step

    def counted(self: OutsideIteration) -> Any:
        nonlocal steps
        steps += 1
        return step(self)

    monkeypatch.setattr(OutsideIteration, "step", counted)
    subscription = client.subscribe(
        stream_name,
        start_position=StartPosition.EARLIEST,
        stop_position=StopPosition.STOP_LATEST,
    )
    if lists:
        received = await collect(in_lists(subscription))
        await subscription.aclose()  # type: ignore[attr-defined]
        messages = [message for one in received for message in one]
        print(f"{steps} steps for {len(received)} lists")
        # One step for each list that waited, and one to see the end.
        assert steps <= len(received) + 1
    else:
        messages = await collect(subscription)
    assert [m.offset for m in messages] == list(range(count))
    print(f"{steps} steps for {count} messages")
    assert 1 <= steps < count
