"""An in-memory connection: the channel's tests run on it without sockets.

:func:`memory_transport` returns a client transport and the server's end, an
anyio byte stream a test's HTTP/2 peer reads and writes (as httpcore's mock
backend and grpclib's ``ChannelFor`` let tests do without a network).
"""

from __future__ import annotations

from typing import Tuple

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .stream import StreamTransport

__all__ = ["MemoryByteStream", "memory_pipe", "memory_transport"]

# Chunks in flight each way before a sender waits (backpressure, as a socket's buffer).
_CHUNKS = 64


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory byte pipe."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._rest = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` received bytes (EndOfStream once the peer closed)."""
        data = self._rest
        if not data:
            data = await self._receive.receive()  # (EndOfStream once the peer closed)
        self._rest = data[max_bytes:]
        return data[:max_bytes]

    async def send(self, item: bytes) -> None:
        """Send bytes to the other end."""
        if item:
            await self._send.send(bytes(item))

    async def send_eof(self) -> None:
        """Close the sending direction."""
        await self._send.aclose()

    async def aclose(self) -> None:
        """Close both directions."""
        await self._send.aclose()
        await self._receive.aclose()


def memory_pipe() -> Tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected in-memory byte streams."""
    to_server, from_client = anyio.create_memory_object_stream[bytes](_CHUNKS)
    to_client, from_server = anyio.create_memory_object_stream[bytes](_CHUNKS)
    return MemoryByteStream(to_server, from_server), MemoryByteStream(to_client, from_client)


def memory_transport() -> Tuple[StreamTransport, MemoryByteStream]:
    """A client transport, and the server's end of its connection."""
    client, server = memory_pipe()
    return StreamTransport(client), server
