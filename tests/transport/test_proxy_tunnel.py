"""The CONNECT handshake against proxies that misbehave.

The proxies here are fake on purpose: tinyproxy (tests/client/test_proxy.py)
never closes in the middle of its reply, answers in something other than
HTTP, sends an endless reply head, stays silent, or sends the broker's first
bytes in the same segment as its reply. The last one relays to the real
Liftbridge server.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Awaitable, Callable, List

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

from lbwire.client import LiftbridgeClient
from lbwire.grpc import Channel, ChannelConfig, GRPCError, Status
from lbwire.grpc._backends.tunnel import MAX_REPLY_HEAD
from lbwire.grpc.proxy import HttpProxy
from lbwire.testing import LiftbridgeServer

pytestmark = pytest.mark.anyio

#: A guard against hangs, never a speed expectation.
HANG_GUARD = 10.0

Handler = Callable[[anyio.abc.SocketStream, bytes], Awaitable[None]]


class FakeProxy:
    def __init__(self) -> None:
        self.port = 0
        self.requests: List[bytes] = []
        self.closed_by_client = anyio.Event()


@contextlib.asynccontextmanager
async def fake_proxy(handler: Handler) -> AsyncIterator[FakeProxy]:
    """A loopback listener that reads a request head and hands the stream to ``handler``."""
    proxy = FakeProxy()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            head = b""
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
            proxy.requests.append(head)
            await handler(stream, head)
            # Whatever the handler left: wait for the client to close.
            with contextlib.suppress(
                anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                while await stream.receive():
                    pass
            proxy.closed_by_client.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        proxy.port = listener.extra(SocketAttribute.local_port)
        try:
            yield proxy
        finally:
            tasks.cancel_scope.cancel()


def answering(*chunks: bytes, close: bool = False) -> Handler:
    async def handler(stream: anyio.abc.SocketStream, head: bytes) -> None:
        for chunk in chunks:
            await stream.send(chunk)
        if close:
            await stream.aclose()

    return handler


async def call_error(proxy: FakeProxy, *, host: str = "127.0.0.1", **config: object) -> GRPCError:
    """The error a call through ``proxy`` to ``host``:9 raises."""
    http_proxy = HttpProxy("127.0.0.1", proxy.port, username="u", password="s3cret")
    channel_config = ChannelConfig(proxy=http_proxy, **config)  # type: ignore[arg-type]
    async with Channel.open(host, 9, config=channel_config) as channel:
        with anyio.fail_after(HANG_GUARD), pytest.raises(GRPCError) as caught:
            await channel.unary_unary("/t/Echo", b"")
    assert "s3cret" not in caught.value.message
    return caught.value


async def test_the_request_names_the_target_and_carries_the_credentials() -> None:
    async with fake_proxy(answering(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")) as p:
        error = await call_error(p, host="::1")
    assert p.requests == [
        b"CONNECT [::1]:9 HTTP/1.1\r\nHost: [::1]:9\r\n"
        b"Proxy-Authorization: Basic dTpzM2NyZXQ=\r\n\r\n"
    ]
    assert error.status is Status.UNAUTHENTICATED
    assert error.message == (
        f"failed to connect to [::1]:9 through the HTTP proxy http://127.0.0.1:{p.port}: "
        "the proxy refused CONNECT [::1]:9: HTTP/1.1 407 Proxy Authentication Required "
        "(it did not accept the credentials in the proxy URL)"
    )


@pytest.mark.parametrize(
    ("reply", "status", "why"),
    [
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", Status.PERMISSION_DENIED, "403 Forbidden"),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", Status.UNAVAILABLE, "502 Bad Gateway"),
        (b"HTTP/1.1 405 Method Not Allowed\r\n\r\n", Status.UNAVAILABLE, "405"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", Status.UNAVAILABLE, "not HTTP/1.x: 'SSH-2.0"),
        (b"HTTP/2 200\r\n\r\n", Status.UNAVAILABLE, "not HTTP/1.x"),
        (b"HTTP/1.1 200 OK\r\nX: y\r\n", Status.UNAVAILABLE, "closed the connection in its reply"),
        (b"", Status.UNAVAILABLE, "closed the connection before it answered CONNECT 127.0.0.1:9"),
    ],
)
async def test_refusals_and_broken_replies(reply: bytes, status: Status, why: str) -> None:
    async with fake_proxy(answering(reply, close=True)) as proxy:
        error = await call_error(proxy)
    assert error.status is status
    assert why in error.message
    assert f"through the HTTP proxy http://127.0.0.1:{proxy.port}" in error.message


async def test_an_endless_reply_head_is_cut_off() -> None:
    endless = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"a" * 1000 + b"\r\n"

    async def handler(stream: anyio.abc.SocketStream, head: bytes) -> None:
        with contextlib.suppress(anyio.BrokenResourceError):
            while True:
                await stream.send(endless)

    async with fake_proxy(handler) as proxy:
        error = await call_error(proxy, connect_timeout=HANG_GUARD)
        with anyio.fail_after(HANG_GUARD):
            await proxy.closed_by_client.wait()
    assert error.status is Status.UNAVAILABLE
    assert f"longer than {MAX_REPLY_HEAD} bytes" in error.message


async def test_a_silent_proxy_times_out_and_its_connection_is_closed() -> None:
    async with fake_proxy(answering()) as proxy:
        error = await call_error(proxy, connect_timeout=0.5)
        # The client gave up and closed its socket: nothing is left open.
        with anyio.fail_after(HANG_GUARD):
            await proxy.closed_by_client.wait()
    assert error.status is Status.UNAVAILABLE
    assert error.message.startswith(
        f"timed out connecting to 127.0.0.1:9 through the HTTP proxy http://127.0.0.1:{proxy.port}"
    )


async def test_broker_bytes_in_the_same_segment_as_the_reply(
    liftbridge_server: LiftbridgeServer,
) -> None:
    """The proxy sends the server's first bytes (grpc-go's SETTINGS) with its reply."""
    relayed = anyio.Event()

    async def relay(stream: anyio.abc.SocketStream, head: bytes) -> None:
        target = head.split(b" ")[1].decode()
        host, _, port = target.rpartition(":")
        async with await anyio.connect_tcp(host, int(port)) as upstream:
            with anyio.fail_after(HANG_GUARD):
                first = await upstream.receive()  # grpc-go sends SETTINGS at once
            # A bare LF ends the lines too.
            await stream.send(b"HTTP/1.0 200 Connection established\n\n" + first)
            relayed.set()

            async def pump(a: anyio.abc.ByteStream, b: anyio.abc.ByteStream) -> None:
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    while True:
                        await b.send(await a.receive())
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await b.send_eof()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(pump, stream, upstream)
                await pump(upstream, stream)
                tasks.cancel_scope.cancel()

    async with fake_proxy(relay) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        async with LiftbridgeClient([liftbridge_server.broker], proxy=url) as client:
            with anyio.fail_after(HANG_GUARD):
                metadata = await client.get_metadata()
    assert relayed.is_set()
    assert metadata.brokers
