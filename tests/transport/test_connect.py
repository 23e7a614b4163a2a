"""Opening a connection: the connect timeout covers the HTTP/2 preface; non-HTTP/2 peers are named.

The peers here are fake on purpose: a plain TCP listener that accepts and never
answers, and one that answers as an HTTP/1.1 server would. No real gRPC server
behaves like either, and those are the cases under test.
"""

from __future__ import annotations

import contextlib
import os
from typing import AsyncIterator, Awaitable, Callable, Optional

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute
from helpers import HANG_GUARD, wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import LiftbridgeError
from lbwire.grpc import Channel, ChannelConfig, GRPCError, Status

pytestmark = pytest.mark.anyio


class SilentPeer:
    """A fake peer: it accepts TCP, reads everything and never writes (no real server does)."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        #: Connections the client has not closed yet.
        self.open = 0

    async def serve(self, stream: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        self.open += 1
        try:
            async with stream:
                while True:
                    await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
        finally:
            self.open -= 1


@contextlib.asynccontextmanager
async def silent_peer() -> AsyncIterator[SilentPeer]:
    peer = SilentPeer()
    async with listening(peer.serve) as peer.port:
        yield peer


@contextlib.asynccontextmanager
async def listening(
    serve: Callable[[anyio.abc.SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    """Serve each connection to a new loopback port with `serve`; yield the port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tasks:  # closes the listening socket
        tasks.start_soon(listener.serve, serve)
        try:
            yield listener.extra(SocketAttribute.local_port)
        finally:
            tasks.cancel_scope.cancel()


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

    async with listening(serve) as port:
        yield port


def open_fds() -> dict[str, str]:
    """This process's open descriptors, each with what it is (``socket:[inode]``, a path)."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (the directory listing's own fd is gone)
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return fds


async def wait_closed_since(before: dict[str, str]) -> None:
    """Wait until no descriptor opened since `before` is open, naming those left.

    A client closes what a call gave up on in its own time (asyncio closes a
    transport's socket on the loop's next pass, a shared metadata fetch runs
    on in the client's task group), so the test waits rather than looks once.
    """

    def new() -> dict[str, str]:
        return {fd: what for fd, what in open_fds().items() if before.get(fd) != what}

    with contextlib.suppress(AssertionError):
        await wait_until(lambda: not new(), "every descriptor opened since was closed", timeout=10)
    assert not new(), f"left open: {new()}"


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


# -- set-ups cut short: a connection whose set-up did not finish is closed ---------------------

CALLS = 100


async def test_calls_whose_deadline_ends_the_connect_leave_no_socket_open() -> None:
    # The call's deadline ends its wait for the server's SETTINGS before the
    # connect timeout does: the half-made connection must be closed with it.
    config = ChannelConfig(connect_timeout=30)
    async with silent_peer() as peer, Channel.open("127.0.0.1", peer.port, config=config) as chan:
        fds = open_fds()
        for _ in range(CALLS):
            with anyio.fail_after(5), pytest.raises(GRPCError) as caught:
                await chan.unary_unary("/t/Echo", b"", timeout=0.02)
            assert caught.value.status is Status.DEADLINE_EXCEEDED
            assert chan.connection is None
        await wait_until(lambda: peer.open == 0, "the peer saw every connection closed")
        # (A call may end before the TCP connect even did, on a busy machine.)
        assert peer.accepted > CALLS // 2
        await wait_closed_since(fds)


async def test_client_calls_the_user_cancels_while_connecting_leave_no_socket_open() -> None:
    async with (
        silent_peer() as peer,
        LiftbridgeClient([f"127.0.0.1:{peer.port}"], connect_timeout=30) as client,
    ):
        fds = open_fds()
        for _ in range(CALLS):
            # A call of its own (a metadata refresh is shared, and runs on
            # when the caller that started it is cancelled).
            with anyio.move_on_after(0.1) as scope:
                await client.fetch_consumer_group_metadata("g")
            assert scope.cancelled_caught
            assert not any(info.connected for info in client.connection_info())
        await wait_until(lambda: peer.open == 0, "the peer saw every connection closed")
        assert peer.accepted > CALLS // 2
        await wait_closed_since(fds)


async def test_client_calls_timed_out_by_rpc_timeout_leave_no_socket_open() -> None:
    async with (
        silent_peer() as peer,
        LiftbridgeClient(
            [f"127.0.0.1:{peer.port}"], connect_timeout=30, rpc_timeout=0.02
        ) as client,
    ):
        fds = open_fds()
        for _ in range(CALLS // 10):
            with anyio.fail_after(10), pytest.raises(LiftbridgeError):
                await client.get_metadata()
        await wait_until(lambda: peer.open == 0, "the peer saw every connection closed")
        await wait_closed_since(fds)
