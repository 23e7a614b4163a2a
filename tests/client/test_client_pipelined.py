"""Pipelined publishing: publish_bulk and publish_async on one PublishAsync stream."""

from __future__ import annotations

import os
import signal

import anyio
import pytest
from client_support import HANG_GUARD, collect, read_all
from helpers import wait_until
from helpers.frozen import frozen

from lbwire import wire
from lbwire._publish import new_correlation_id
from lbwire.client import LiftbridgeClient
from lbwire.error import (
    ErrorAckTimeout,
    ErrorIncorrectOffset,
    ErrorMessageSizeExceeded,
    ErrorNotFound,
    ErrorReadonly,
    PublishAsyncError,
)
from lbwire.publish import PublishSession
from lbwire.testing import LiftbridgeServer
from lbwire.types import AckPolicy, StartPosition

pytestmark = pytest.mark.anyio


async def test_publish_bulk_yields_a_response_with_an_ack_for_every_request(
    client: LiftbridgeClient, stream: str
) -> None:
    requests = [client.get_publish_request(b"%d" % i, stream=stream) for i in range(50)]
    with anyio.fail_after(HANG_GUARD):
        responses = [r async for r in client.publish_bulk(requests)]
    # gufo-liftbridge's shape: PublishResponse items, the Ack in .ack.
    acks = [r.ack for r in responses]
    assert sorted(ack.offset for ack in acks) == list(range(50))
    assert [r.correlationId for r in responses] == [r.correlationId for r in requests]
    assert {ack.correlationId for ack in acks} == {r.correlationId for r in requests}
    assert [m.value for m in await read_all(client, stream)] == [b"%d" % i for i in range(50)]


async def test_publish_bulk_without_wait_still_yields_the_acks_and_stores_everything(
    client: LiftbridgeClient, stream: str
) -> None:
    requests = [client.get_publish_request(b"%d" % i, stream=stream) for i in range(10)]
    with anyio.fail_after(HANG_GUARD):
        responses = [r async for r in client.publish_bulk(requests, wait=False)]
    assert sorted(r.ack.offset for r in responses) == list(range(10))

    async def all_stored() -> bool:
        return (await client.get_partition_metadata(stream, 0)).newest_offset == 9

    await wait_until(all_stored, "all ten messages were stored")


async def test_publish_bulk_skips_acks_of_ack_policy_none(
    client: LiftbridgeClient, stream: str
) -> None:
    requests = [
        client.get_publish_request(b"acked", stream=stream),
        client.get_publish_request(b"unacked", stream=stream, ack_policy=AckPolicy.NONE),
    ]
    with anyio.fail_after(HANG_GUARD):
        responses = [r async for r in client.publish_bulk(requests)]
    assert [r.ack.correlationId for r in responses] == [requests[0].correlationId]


async def test_publish_bulk_raises_publish_async_error_for_a_refused_request(
    client: LiftbridgeClient, stream: str, stream_name: str
) -> None:
    missing = f"{stream_name}-missing"
    # The PublishAsync stream's first reply sent before this test's requests:
    # on a fresh stream Liftbridge sends an ack and a refusal from two
    # goroutines, and grpc-go then sometimes fails the stream with
    # "transport: SendHeader called multiple times" (a server-side race).
    await (await client.publish_async(b"first", stream=stream))
    requests = [
        client.get_publish_request(b"ok", stream=stream),
        client.get_publish_request(b"refused", stream=missing),
    ]
    with anyio.fail_after(HANG_GUARD), pytest.raises(PublishAsyncError, match=missing) as caught:
        async for _ack in client.publish_bulk(requests):
            pass
    assert caught.value.code == wire.PublishAsyncErrorCode.NOT_FOUND
    assert caught.value.correlation_id == requests[1].correlationId


async def test_publish_bulk_refuses_oversize_request_before_sending(
    broker: str, stream: str
) -> None:
    async with LiftbridgeClient([broker], max_publish_size=1000) as client:
        request = client.get_publish_request(b"x" * 1000, stream=stream)
        with pytest.raises(ErrorMessageSizeExceeded):
            async for _ack in client.publish_bulk([request]):
                pass
        assert await client.publish(b"small", stream=stream) is not None


async def test_publish_async_thousand_in_flight_are_each_acked_by_correlation_id(
    client: LiftbridgeClient, stream: str
) -> None:
    count = 1000
    with anyio.fail_after(HANG_GUARD):
        pending = [
            await client.publish_async(b"%d" % i, stream=stream, correlation_id=f"c{i}")
            for i in range(count)
        ]
        acks = [await item for item in pending]
    assert [ack.correlationId for ack in acks] == [f"c{i}" for i in range(count)]
    assert sorted(ack.offset for ack in acks) == list(range(count))
    partition = await client.get_partition_metadata(stream, 0)
    assert partition.newest_offset == count - 1


async def test_concurrent_publish_async_of_messages_larger_than_the_window_stay_whole(
    client: LiftbridgeClient, stream: str
) -> None:
    # 200 KiB each, beyond HTTP/2's initial 64 KiB window: every message goes
    # out in parts while other tasks are sending.
    values = [bytes([i]) * (200 * 1024) for i in range(6)]
    acks: list[wire.Ack | None] = []

    async def send(value: bytes) -> None:
        acks.append(await (await client.publish_async(value, stream=stream)))

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            for value in values:
                tg.start_soon(send, value)
    assert len(acks) == len(values)
    stored = [m.value for m in await read_all(client, stream)]
    assert sorted(stored) == sorted(values)


async def test_publish_async_generates_a_correlation_id_when_none_is_given(
    client: LiftbridgeClient, stream: str
) -> None:
    first = await client.publish_async(b"a", stream=stream)
    second = await client.publish_async(b"b", stream=stream)
    ack_a, ack_b = await first, await second
    assert ack_a.correlationId
    assert ack_a.correlationId != ack_b.correlationId
    assert len(ack_a.correlationId) == 32
    assert int(ack_a.correlationId, 16) >= 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_correlation_ids_of_its_own() -> None:
    # The ids come from a generator in the process's memory: a child forked
    # without reseeding it would make the ids its parent makes next.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.write(write, new_correlation_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != new_correlation_id()


async def test_publish_async_error_fails_only_its_own_awaiter(
    client: LiftbridgeClient, stream: str, stream_name: str
) -> None:
    missing = f"{stream_name}-missing"
    with anyio.fail_after(HANG_GUARD):
        before = await client.publish_async(b"before", stream=stream, correlation_id="before")
        refused = await client.publish_async(b"x", stream=missing, correlation_id="refused")
        after = await client.publish_async(b"after", stream=stream, correlation_id="after")
        with pytest.raises(PublishAsyncError, match=missing) as caught:
            await refused
        assert (await before).offset == 0
        assert (await after).offset == 1
    assert caught.value.code == wire.PublishAsyncErrorCode.NOT_FOUND
    assert caught.value.correlation_id == "refused"
    # Also the class a unary publish refused for the same reason raises.
    assert isinstance(caught.value, ErrorNotFound)


async def test_publish_async_to_readonly_partition_raises_publish_async_error(
    client: LiftbridgeClient, stream: str
) -> None:
    await client.set_stream_readonly(stream)
    pending = await client.publish_async(b"x", stream=stream)
    with anyio.fail_after(HANG_GUARD), pytest.raises(PublishAsyncError, match="readonly") as caught:
        await pending
    assert caught.value.code == wire.PublishAsyncErrorCode.READONLY
    assert isinstance(caught.value, ErrorReadonly)


async def test_publish_async_wrong_expected_offset_raises_publish_async_error(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(
        stream_name, optimistic_concurrency_control=True, wait_for_stream=True
    )
    pending = await client.publish_async(b"x", stream=stream_name, expected_offset=3)
    with anyio.fail_after(HANG_GUARD), pytest.raises(PublishAsyncError) as caught:
        await pending
    assert caught.value.code == wire.PublishAsyncErrorCode.INCORRECT_OFFSET
    assert isinstance(caught.value, ErrorIncorrectOffset)
    ok = await client.publish_async(b"y", stream=stream_name, expected_offset=0)
    assert (await ok).offset == 0


async def test_publish_async_with_ack_policy_none_resolves_to_none(
    client: LiftbridgeClient, stream: str
) -> None:
    pending = await client.publish_async(b"x", stream=stream, ack_policy=AckPolicy.NONE)
    assert await pending is None


async def test_publish_async_with_ack_policy_none_is_all_stored_after_the_client_closes(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    # Nothing comes back for these, so nothing tells the publisher whether the
    # server read them: closing the client must not reset the stream before it
    # did (Liftbridge drops the requests it had not read). The server is
    # frozen while the client closes, so it finds every request and the
    # stream's end (reset or half-close) waiting at once.
    pid = fresh_server.pid
    assert pid is not None
    values = [b"%d" % i for i in range(20)]
    closed = anyio.Event()

    async def resume(session: PublishSession) -> None:
        # Once the stream's end is written: a reset (the client closed) or a
        # half-close (the client waits for the server).
        await wait_until(
            lambda: closed.is_set() or getattr(session, "draining", False), "the stream ends"
        )
        os.kill(pid, signal.SIGCONT)

    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        try:
            with anyio.fail_after(HANG_GUARD):
                async with anyio.create_task_group() as tg:
                    async with LiftbridgeClient([fresh_server.broker]) as publisher:
                        await publisher.publish(b"opens the stream", stream=stream_name)
                        session = publisher._publisher._session  # noqa: SLF001 (its state is the condition)
                        assert session is not None
                        os.kill(pid, signal.SIGSTOP)
                        for value in values:
                            await publisher.publish_async(
                                value, stream=stream_name, ack_policy=AckPolicy.NONE
                            )
                        tg.start_soon(resume, session)
                    closed.set()
        finally:
            os.kill(pid, signal.SIGCONT)
        messages = await collect(
            client.subscribe(stream_name, start_position=StartPosition.EARLIEST), 21
        )
    assert [m.value for m in messages] == [b"opens the stream", *values]


async def test_publish_async_ack_timeout_raises_error_ack_timeout(
    client: LiftbridgeClient, stream_name: str
) -> None:
    # minisr=2 on a one-node cluster: AckPolicy.ALL acks never come.
    await client.create_stream(stream_name, minisr=2, wait_for_stream=True)
    pending = await client.publish_async(
        b"x", stream=stream_name, ack_policy=AckPolicy.ALL, ack_timeout=0.3
    )
    with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorAckTimeout, match=pending.correlation_id):
        await pending
    # The stream stays usable for the next publishes.
    leader_acked = await client.publish_async(b"y", stream=stream_name)
    with anyio.fail_after(HANG_GUARD):
        assert (await leader_acked).offset == 1


async def test_publish_async_unknown_ack_policy_raises_value_error(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="ack policy"):
        await client.publish_async(b"x", stream=stream, ack_policy=9)  # type: ignore[arg-type]


async def test_an_ack_that_never_comes_is_swept_at_its_timeout_unawaited(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    # The broker freezes (SIGSTOP) after the stream answered once: the ack of
    # the next publish never comes, and nobody awaits it. The sweeper fails it
    # at its ack timeout; then the idle reaper can close the stream.
    idle = 0.5
    async with LiftbridgeClient([fresh_server.broker], idle_timeout=idle) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await (await client.publish_async(b"first", stream=stream_name))
        async with frozen(fresh_server):
            pending = await client.publish_async(b"lost", stream=stream_name, ack_timeout=0.2)
            await wait_until(lambda: pending.done, "the unawaited ack is swept")
        with pytest.raises(ErrorAckTimeout):
            await pending
        await wait_until(lambda: client.connection_info() == [], "the idle stream is closed")
