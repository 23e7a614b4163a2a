"""Calls abandoned while the server streams to them leave the connection as it was.

grpclib and others leaked the flow-control credit of data that arrived for a
call nobody reads any more (grpclib issues 14, 67, 217): after enough abandoned
calls the connection window is gone and every call on the connection stalls.
"""

from __future__ import annotations

import anyio
import pytest
from peer import PeerServer, path

from lbwire.grpc import Channel, ChannelConfig, GRPCError, Status

pytestmark = pytest.mark.anyio

# A server stream that outlasts every test, 1 KiB messages as fast as grpcio
# makes them: each call has many in flight when it is abandoned. (Larger
# messages only make the test slower: what could leak is per frame.)
ENDLESS = b"1000000000:1024"
CONFIG = ChannelConfig()


def connection_state(channel: Channel) -> tuple[int, int, int]:
    """(calls the channel tracks, calls the protocol tracks, credit missing)."""
    connection = channel.connection
    assert connection is not None
    protocol = connection.protocol
    missing = CONFIG.connection_window_size - (
        protocol.inbound_window + protocol.unacknowledged_credit
    )
    return len(connection.calls), protocol.active_calls, missing


async def abandon_by_leaving(channel: Channel) -> None:
    async with channel.unary_stream(path("Stream"), ENDLESS) as stream:
        assert len(await stream.receive()) == 1024
    assert stream.status is Status.CANCELLED


async def abandon_by_task_cancellation(channel: Channel) -> None:
    with anyio.CancelScope() as scope:
        async with channel.unary_stream(path("Stream"), ENDLESS) as stream:
            await stream.receive()
            scope.cancel()
            await stream.receive()  # cancelled here, or at the next wait
            await anyio.sleep_forever()
    assert scope.cancelled_caught


async def abandon_by_deadline(channel: Channel) -> None:
    # The server streams faster than we read: the deadline passes while
    # messages are still arriving, and must end the call even so.
    with pytest.raises(GRPCError) as caught:  # noqa: PT012
        async with channel.unary_stream(path("Stream"), ENDLESS, timeout=0.002) as stream:
            async for _ in stream:
                pass
    assert caught.value.status is Status.DEADLINE_EXCEEDED


@pytest.mark.slow
async def test_10000_abandoned_streaming_calls_leave_the_connection_as_it_was(
    peer: PeerServer,
) -> None:
    ways = [abandon_by_leaving, abandon_by_task_cancellation, abandon_by_deadline]
    async with Channel.open("127.0.0.1", peer.port, config=CONFIG) as channel:
        assert await channel.unary_unary(path("Echo"), b"first") == b"first"
        connection = channel.connection
        with anyio.fail_after(120):
            for i in range(10_000):
                await ways[i % 3](channel)
            assert channel.connection is connection, "the connection was replaced"
            # Data the server sent before it saw the last resets may still be
            # on its way; a round trip or two later it has all arrived, and
            # must all have been credited back.
            for _ in range(100):
                if connection_state(channel) == (0, 0, 0):
                    break
                assert await channel.unary_unary(path("Echo"), b"sync") == b"sync"
            calls, streams, missing = connection_state(channel)
            assert (calls, streams) == (0, 0), "calls were left behind"
            assert missing == 0, f"{missing} bytes of connection window leaked"
        # A normal call works, and so does a stream that moves more than the
        # whole connection window (it would stall if any credit had leaked).
        assert await channel.unary_unary(path("Echo"), b"after") == b"after"
        total = 400 * 65536
        assert total > CONFIG.connection_window_size
        async with channel.unary_stream(path("Stream"), b"400:65536") as stream:
            assert sum([len(m) async for m in stream]) == total
        assert channel.connection is connection
        assert connection_state(channel) == (0, 0, 0)
