"""The asyncio transport on uvloop, whose transports differ from asyncio's in small ways.

(uvloop calls ``connection_made`` only after ``create_connection`` returned,
and its transports are not ``asyncio.Transport`` instances: both once broke
the asyncio fast path on uvloop alone.)
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Tuple

import anyio
import pytest
from helpers import HANG_GUARD
from helpers.h2peer import raw_server

from lbwire.grpc import Channel, GRPCError, Status

pytest.importorskip("uvloop", reason="uvloop is not installed (CPython only)")
peer_module = pytest.importorskip("peer")
path = peer_module.path
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Tuple[str, Dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})


async def test_calls_of_every_shape(channel: Channel) -> None:
    with anyio.fail_after(10):
        assert await channel.unary_unary(path("Echo"), b"uv") == b"uv"
    async with channel.unary_stream(path("Stream"), b"500:100") as stream:
        assert [m async for m in stream] == [bytes([i % 256]) * 100 for i in range(500)]
    async with channel.stream_stream(path("Bidi")) as call:
        await call.send_message(b"ping")
        assert await call.receive() == b"ping"
        await call.end()
        assert [m async for m in call] == []


async def test_large_messages_both_ways(channel: Channel) -> None:
    big = bytes(range(256)) * 12_000  # 3 MiB, beyond one write buffer
    with anyio.fail_after(10):
        assert await channel.unary_unary(path("Echo"), big) == big


async def test_deadline_and_cancellation(peer: Any, channel: Channel) -> None:
    request = uuid.uuid4().hex
    with anyio.fail_after(10), pytest.raises(GRPCError) as caught:
        await channel.unary_unary(path("Hang"), request.encode(), timeout=0.2)
    assert caught.value.status is Status.DEADLINE_EXCEEDED
    async with channel.unary_stream(path("Forever"), b"uv") as stream:
        assert await stream.receive() == b"tick"
    assert await channel.unary_unary(path("Echo"), b"after") == b"after"


async def test_a_closed_connection_fails_the_call_and_the_next_reconnects() -> None:
    async with raw_server() as server, Channel.open("127.0.0.1", server.port) as channel:
        with anyio.fail_after(HANG_GUARD), pytest.raises(GRPCError) as caught:
            await channel.unary_unary("/t/Close", b"")
        assert caught.value.status is Status.UNAVAILABLE
        assert await channel.unary_unary("/t/Echo", b"back") == b"back"
