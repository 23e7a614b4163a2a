"""Test-facing hooks of the gRPC layer: channels without sockets.

``Channel(..., connect_transport=...)`` takes a function that opens each
connection's transport; :func:`memory_transport` gives one whose server end
is an anyio byte stream the test's own HTTP/2 peer serves::

    async def connect() -> Transport:
        transport, server_end = memory_transport()
        task_group.start_soon(my_h2_peer, server_end)
        return transport

    async with Channel.open("test", 0, connect_transport=connect) as channel: ...
"""

from __future__ import annotations

from ._backends import Transport
from ._backends.memory import MemoryByteStream, memory_pipe, memory_transport

__all__ = ["MemoryByteStream", "Transport", "memory_pipe", "memory_transport"]
