"""Subscriptions across server faults: a SIGKILLed server restarted on its data, a frozen one.

Right after a restart the server answers before it has loaded its streams, so
for a moment it reports a stream it held as missing: a subscription that was
set up resumes through that; a stream really deleted still ends it.
A SIGSTOPped (frozen) leader keeps its sockets open and answers nothing: a
subscription's set-up must still end within its bound. Each test starts its
own server (``fresh_server``), as it kills or freezes it.
"""

from __future__ import annotations

import anyio
import pytest
from client_support import HANG_GUARD, collect, publish_values, read_all
from helpers import aclosing, wait_until
from helpers.frozen import frozen
from helpers.restarts import publish_after_restart

from lbwire.client import LiftbridgeClient
from lbwire.error import (
    ErrorDeadlineExceeded,
    ErrorNotFound,
    LiftbridgeError,
)
from lbwire.reader import batched
from lbwire.retry import RetryPolicy
from lbwire.testing import LiftbridgeServer
from lbwire.types import Message, StartPosition

pytestmark = pytest.mark.anyio


async def kill_and_restart(server: LiftbridgeServer) -> float:
    """SIGKILL the server, start it on the same port and data; when it was ready."""
    await server.akill()
    await server.astart()
    return anyio.current_time()


@pytest.mark.parametrize("in_batches", [False, True], ids=["one-by-one", "batched"])
async def test_subscription_resumes_at_the_next_offset_after_a_server_restart(
    fresh_server: LiftbridgeServer, stream_name: str, in_batches: bool
) -> None:
    # Batched, the subscription hands out lists (lbwire._subscribe.IN_LISTS):
    # those before the kill are delivered whole, the resumed call starts
    # after the last of them.
    received: list[Message] = []
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await publish_values(client, stream_name, [b"a0", b"a1", b"a2"])

        async def consume() -> None:
            subscription = client.subscribe(stream_name, start_position=StartPosition.EARLIEST)
            if in_batches:
                async with batched(subscription, 100, 0) as batches:
                    async for batch in batches:
                        received.extend(batch)
                        if len(received) >= 6:
                            return
                return
            async with aclosing(subscription) as messages:
                async for message in messages:
                    received.append(message)
                    if len(received) == 6:
                        return

        with anyio.fail_after(3 * HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await wait_until(lambda: len(received) == 3, "the first messages arrive")
                ready_at = await kill_and_restart(fresh_server)
                for value in (b"a3", b"a4", b"a5"):
                    await publish_after_restart(client, stream_name, value)
                await wait_until(lambda: len(received) >= 6, "the subscription resumes")
                stall = anyio.current_time() - ready_at
    assert [m.offset for m in received] == [0, 1, 2, 3, 4, 5]
    assert [m.value for m in received] == [b"a0", b"a1", b"a2", b"a3", b"a4", b"a5"]
    print(f"subscription resumed {stall:.2f} s after the restarted server was ready")


async def test_readme_cursor_loop_survives_a_server_restart_without_gap_or_duplicate(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    """The README's loop: RESUME from a cursor, set_cursor after each message."""
    cursor_id = "readme-loop"
    received: list[int] = []
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await publish_values(client, stream_name, [b"b0", b"b1"])

        async def consume() -> None:
            subscription = client.subscribe(
                stream_name, partition=0, start_position=StartPosition.RESUME, cursor_id=cursor_id
            )
            async with aclosing(subscription) as messages:
                async for msg in messages:
                    received.append(msg.offset)
                    await client.set_cursor(
                        stream_name, partition=0, cursor_id=cursor_id, offset=msg.offset
                    )
                    if len(received) == 4:
                        return

        with anyio.fail_after(3 * HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await wait_until(lambda: len(received) == 2, "the first messages arrive")
                await kill_and_restart(fresh_server)
                for value in (b"b2", b"b3"):
                    await publish_after_restart(client, stream_name, value)
        assert received == [0, 1, 2, 3]
        assert await client.get_cursor(stream_name, 0, cursor_id) == 4


async def test_an_idle_subscription_resumes_through_a_second_restart_after_its_window(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    # Resumed after one restart, the subscription receives nothing for longer
    # than resubscribe_wait_time; the next restart is a new outage with a
    # window of its own (lbwire 0.2 kept the first outage's deadline until a
    # message arrived, and gave up at once).
    window = 10.0  # longer than a restart takes, relaunches included
    received: list[Message] = []
    async with LiftbridgeClient([fresh_server.broker], resubscribe_wait_time=window) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await publish_values(client, stream_name, [b"d0"])

        async def consume() -> None:
            subscription = client.subscribe(stream_name, start_position=StartPosition.EARLIEST)
            async with aclosing(subscription) as messages:
                async for message in messages:
                    received.append(message)

        async def served() -> bool:
            try:
                await client.get_partition_metadata(stream_name, 0)
            except LiftbridgeError:
                return False
            return True

        with anyio.fail_after(3 * HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await wait_until(lambda: len(received) == 1, "the first message arrives")
                await kill_and_restart(fresh_server)
                await wait_until(served, "the restarted server serves the partition")
                # Idle past the window, and past the longest pause before the
                # subscription's next try (the policy's max_backoff).
                idle_from = anyio.current_time()
                await wait_until(
                    lambda: (
                        anyio.current_time() - idle_from > window + 2 * RetryPolicy().max_backoff
                    ),
                    "the subscription has been idle for longer than its window",
                )
                await kill_and_restart(fresh_server)
                await publish_after_restart(client, stream_name, b"d1")
                await wait_until(lambda: len(received) == 2, "the subscription resumes")
                tg.cancel_scope.cancel()
    assert [m.value for m in received] == [b"d0", b"d1"]


async def test_stream_deleted_after_a_restart_still_ends_the_subscription_at_once(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    received: list[Message] = []
    failure: list[LiftbridgeError] = []
    async with LiftbridgeClient([fresh_server.broker], resubscribe_wait_time=60) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await publish_values(client, stream_name, [b"c0"])

        async def consume() -> None:
            subscription = client.subscribe(stream_name, start_position=StartPosition.EARLIEST)
            try:
                async with aclosing(subscription) as messages:
                    async for message in messages:
                        received.append(message)
            except LiftbridgeError as exc:
                failure.append(exc)

        with anyio.fail_after(3 * HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await wait_until(lambda: len(received) == 1, "the first message arrives")
                await kill_and_restart(fresh_server)
                await publish_after_restart(client, stream_name, b"c1")
                await wait_until(lambda: len(received) == 2, "the subscription resumes")
                await client.delete_stream(stream_name)
                deleted_at = anyio.current_time()
                # Far less than resubscribe_wait_time: the deletion is not
                # mistaken for the restart's transient state.
                with anyio.fail_after(10):
                    await wait_until(lambda: bool(failure), "the subscription ends")
                took = anyio.current_time() - deleted_at
    assert isinstance(failure[0], ErrorNotFound), failure
    print(f"deleted stream ended the subscription after {took:.2f} s")


async def test_subscribing_to_a_never_existing_stream_raises_not_found_at_once(
    fresh_server: LiftbridgeServer,
) -> None:
    async def read() -> None:
        async with aclosing(client.subscribe("no-such-stream")) as messages:
            async for _message in messages:
                pass

    async with LiftbridgeClient([fresh_server.broker]) as client:
        with anyio.fail_after(5), pytest.raises(ErrorNotFound):
            await read()


async def test_subscribe_to_a_frozen_leader_fails_within_the_retry_policys_bound(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    bound = 3.0
    policy = RetryPolicy(max_time=bound)
    async with LiftbridgeClient([fresh_server.broker], retry_policy=policy) as client:
        # A client that has used the server: its connections are open.
        await client.create_stream(stream_name, wait_for_stream=True)
        await publish_values(client, stream_name, [b"d0"])
        await read_all(client, stream_name)
        async with frozen(fresh_server):
            started = anyio.current_time()
            with anyio.fail_after(bound + HANG_GUARD), pytest.raises(ErrorDeadlineExceeded):
                await collect(client.subscribe(stream_name, start_position=StartPosition.EARLIEST))
            took = anyio.current_time() - started
        assert took < bound + 2, took
        # Thawed, the same client subscribes again.
        assert [m.value for m in await read_all(client, stream_name)] == [b"d0"]
    print(f"subscribe to a frozen leader failed after {took:.2f} s (policy max_time {bound} s)")


async def test_subscribe_timeout_bounds_the_set_up_on_a_frozen_leader(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await read_all(client, stream_name)
        async with frozen(fresh_server):
            started = anyio.current_time()
            with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorDeadlineExceeded):
                await collect(client.subscribe(stream_name, timeout=1))
            took = anyio.current_time() - started
    assert took < 1 + 5, took  # the timeout, with room for a loaded machine


async def test_a_subscription_outage_refreshes_the_metadata_of_its_own_stream_only(
    fresh_server: LiftbridgeServer, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refresh of all streams replaces the whole cache: a restarted server
    # that has not loaded some stream yet would make it vanish for every
    # caller, though only this subscription's stream was in question.
    from lbwire import wire
    from lbwire.grpc import Channel

    asked: list[list[str]] = []
    real = Channel.unary_unary

    async def recording(channel: Channel, path: str, request: bytes, **kwargs: object) -> bytes:
        if path == "/proto.API/FetchMetadata":
            asked.append(wire.FetchMetadataRequest.decode(request).streams)
        return await real(channel, path, request, **kwargs)  # type: ignore[arg-type]

    other = f"{stream_name}-other"
    received: list[Message] = []
    async with LiftbridgeClient([fresh_server.broker]) as client:
        for name in (stream_name, other):
            await client.create_stream(name, wait_for_stream=True)

        async def consume() -> None:
            subscription = client.subscribe(stream_name, start_position=StartPosition.EARLIEST)
            async with aclosing(subscription) as messages:
                async for message in messages:
                    received.append(message)
                    if len(received) == 2:
                        return

        with anyio.fail_after(3 * HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await publish_values(client, stream_name, [b"a0"])
                await wait_until(lambda: len(received) == 1, "the first message arrives")
                monkeypatch.setattr(Channel, "unary_unary", recording)
                await kill_and_restart(fresh_server)
                await publish_after_restart(client, stream_name, b"a1")
                await wait_until(lambda: len(received) == 2, "the subscription resumes")
    assert asked, "the outage refreshed no metadata"
    assert all(streams == [stream_name] for streams in asked), asked
