"""Opening a connection: the connect timeout covers the HTTP/2 preface; non-HTTP/2 peers are named.

The peers here are fake on purpose: a plain TCP listener that accepts and never
answers, and one that answers as an HTTP/1.1 server would. No real gRPC server
behaves like either, and those are the cases under test.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Optional

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute
from helpers import HANG_GUARD

from lbwire.grpc import Channel, ChannelConfig, GRPCError, Status

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def tcp_server(answer: Optional[bytes]) -> AsyncIterator[int]:
    """A loopback TCP server: it sends ``answer`` once it has read something, or never anything."""

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            if answer is None:
                await anyio.sleep_forever()
            await stream.send(answer)
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tasks:  # closes the listening socket
        tasks.start_soon(listener.serve, serve)
        try:
            yield listener.extra(SocketAttribute.local_port)
        finally:
            tasks.cancel_scope.cancel()


async def test_a_peer_that_never_answers_fails_within_the_connect_timeout() -> None:
    config = ChannelConfig(connect_timeout=0.3)
    async with tcp_server(None) as port, Channel.open("127.0.0.1", port, config=config) as channel:
        started = anyio.current_time()
        with anyio.fail_after(HANG_GUARD), pytest.raises(GRPCError) as caught:
            await channel.unary_unary("/t/Echo", b"", timeout=60)
        elapsed = anyio.current_time() - started
    assert caught.value.status is Status.UNAVAILABLE
    assert "SETTINGS" in caught.value.message
    # The connect timeout (with room for a loaded machine), not the call's 60 s.
    assert elapsed < 0.3 + 10


async def test_an_http1_server_fails_at_once_with_a_clear_message() -> None:
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    config = ChannelConfig(connect_timeout=30)
    async with tcp_server(answer) as port, Channel.open("127.0.0.1", port, config=config) as chan:
        with anyio.fail_after(10), pytest.raises(GRPCError) as caught:  # < connect_timeout
            await chan.unary_unary("/t/Echo", b"")
    assert caught.value.status is Status.UNAVAILABLE
    assert "not an HTTP/2 (gRPC) server" in caught.value.message
    assert "HTTP/1.1 400 Bad Request" in caught.value.message
    assert "frame of" not in caught.value.message
