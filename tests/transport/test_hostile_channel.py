"""Broken servers seen through the channel: a clear error, soon, for the right calls.

The sans-IO side of this is test_hostile.py; here the same guarantees are
checked end to end over a socket, and the Liftbridge message decoders get
arbitrary bytes that arrived through a real call.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Type

import anyio
import pytest
from helpers import HANG_GUARD
from helpers.h2peer import raw_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbwire import wire
from lbwire.grpc import Channel, GRPCError, Status

pytestmark = pytest.mark.anyio


async def test_garbage_fails_every_call_on_the_connection_and_the_channel_recovers() -> None:
    async with raw_server() as server, Channel.open("127.0.0.1", server.port) as channel:
        failures: Dict[str, GRPCError] = {}

        async def call(path: str) -> None:
            with pytest.raises(GRPCError) as caught:
                await channel.unary_unary(path, b"")
            failures[path] = caught.value

        held = anyio.Event()

        async def on_hold(connection: object) -> None:
            held.set()

        server.on_hold = on_hold
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call, "/t/Hold")
                await held.wait()
                tasks.start_soon(call, "/t/Garbage")
        assert failures["/t/Hold"].status is Status.UNAVAILABLE
        assert failures["/t/Garbage"].status is Status.UNAVAILABLE
        assert "protocol error" in failures["/t/Garbage"].message
        assert await channel.unary_unary("/t/Echo", b"again") == b"again"
        assert len(server.connections) == 2


async def test_a_broken_call_fails_alone() -> None:
    async with raw_server() as server, Channel.open("127.0.0.1", server.port) as channel:
        held = anyio.Event()

        async def on_hold(connection: object) -> None:
            held.set()

        server.on_hold = on_hold
        result: List[bytes] = []

        async def held_call() -> None:
            result.append(await channel.unary_unary("/t/Hold", b"survivor"))

        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(held_call)
                await held.wait()
                with pytest.raises(GRPCError) as caught:
                    await channel.unary_unary("/t/BadTrailers", b"")
                assert caught.value.status is Status.INTERNAL
                assert "END_STREAM" in caught.value.message
                server.connections[0].release_held()
                await server.connections[0].flush()
        assert result == [b"survivor"]
        assert len(server.connections) == 1


# -- Liftbridge messages from arbitrary bytes ---------------------------------------------

API = "/proto.API/"
# Every response message of the Liftbridge API, by the method that returns it.
UNARY_RESPONSES: Dict[str, Type[wire.WireMessage]] = {
    "CreateStream": wire.CreateStreamResponse,
    "DeleteStream": wire.DeleteStreamResponse,
    "PauseStream": wire.PauseStreamResponse,
    "SetStreamReadonly": wire.SetStreamReadonlyResponse,
    "FetchMetadata": wire.FetchMetadataResponse,
    "FetchPartitionMetadata": wire.FetchPartitionMetadataResponse,
    "Publish": wire.PublishResponse,
    "PublishToSubject": wire.PublishToSubjectResponse,
    "SetCursor": wire.SetCursorResponse,
    "FetchCursor": wire.FetchCursorResponse,
    "JoinConsumerGroup": wire.JoinConsumerGroupResponse,
    "LeaveConsumerGroup": wire.LeaveConsumerGroupResponse,
    "FetchConsumerGroupAssignments": wire.FetchConsumerGroupAssignmentsResponse,
    "ReportConsumerGroupCoordinator": wire.ReportConsumerGroupCoordinatorResponse,
}


def decode(cls: Type[wire.WireMessage], data: bytes) -> Optional[wire.WireMessage]:
    """The message, or None if the bytes are not one; any other error fails the test."""
    try:
        message = cls.decode(data)
    except wire.DecodeError:
        return None
    assert isinstance(message, cls)
    return message


async def decode_through_calls(replies: List[bytes], cuts: List[int]) -> None:
    async with raw_server() as server, Channel.open("127.0.0.1", server.port) as channel:
        server.cuts = cuts
        for method, reply in zip(UNARY_RESPONSES, replies):
            server.replies[(API + method).encode()] = lambda _, reply=reply: [reply]
        subscribe = (API + "Subscribe").encode()
        # The handshake's empty Message, then whatever the server sends.
        server.replies[subscribe] = lambda _: [b"", *replies]
        server.open_ended.add(subscribe)
        with anyio.fail_after(10):
            for (method, cls), reply in zip(UNARY_RESPONSES.items(), replies):
                data = await channel.unary_unary(API + method, b"")
                assert data == reply  # what the server sent, however it was framed
                decode(cls, data)
            async with channel.unary_stream(API + "Subscribe", b"") as stream:
                assert decode(wire.Message, await stream.receive()) == wire.Message()
                for reply in replies:
                    data = await stream.receive()
                    assert data == reply
                    decode(wire.Message, data)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    replies=st.lists(
        st.binary(max_size=300), min_size=len(UNARY_RESPONSES), max_size=len(UNARY_RESPONSES)
    ),
    cuts=st.lists(st.integers(1, 4000), max_size=12),
)
def test_every_message_decoder_on_arbitrary_bytes_from_a_call(
    backend: str, replies: List[bytes], cuts: List[int]
) -> None:
    anyio.run(decode_through_calls, replies, cuts, backend=backend)
