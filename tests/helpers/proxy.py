"""A loopback TCP proxy that can play a dead peer: stall (forward nothing, close nothing) or cut."""

from __future__ import annotations

import contextlib
import socket
from typing import AsyncIterator, List

import anyio
import anyio.abc
from anyio.abc import SocketAttribute


class Proxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``, both ways."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections = 0
        self._stalled = anyio.Event()
        self._scopes: List[anyio.CancelScope] = []
        self._streams: List[anyio.abc.SocketStream] = []

    def stall(self) -> None:
        """Stop forwarding on the connections open now, closing nothing: a peer
        that died with the connection up, or a path that drops every packet.
        Connections made later work."""
        self._stalled.set()
        self._stalled = anyio.Event()

    async def cut(self) -> None:
        """Close the connections open now, on both sides."""
        for scope in self._scopes:
            scope.cancel()
        for stream in self._streams:
            await anyio.aclose_forcefully(stream)

    async def _pump(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        stalled: anyio.Event,
    ) -> None:
        with contextlib.suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            while True:
                data = await source.receive()
                if stalled.is_set():
                    await anyio.sleep_forever()  # (no more reads: the buffers fill)
                await sink.send(data)

    async def serve(self, client: anyio.abc.SocketStream) -> None:
        self.connections += 1
        stalled = self._stalled
        upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
        self._streams += [client, upstream]
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._pump, client, upstream, stalled)
                tasks.start_soon(self._pump, upstream, client, stalled)
        await anyio.aclose_forcefully(client)
        await anyio.aclose_forcefully(upstream)


@contextlib.asynccontextmanager
async def tcp_proxy(upstream_port: int, *, receive_buffer: int = 0) -> AsyncIterator[Proxy]:
    """A `Proxy`; `receive_buffer`: the kernel's receive buffer of the client side
    (SO_RCVBUF; 0 leaves the default, which grows to megabytes): small, a stall
    soon stops the client's writes."""
    proxy = Proxy(upstream_port)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    if receive_buffer:
        # Accepted sockets inherit it (and the window scale it implies).
        raw = listener.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    proxy.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tasks:  # closes the listening socket
        tasks.start_soon(listener.serve, proxy.serve)
        try:
            yield proxy
        finally:
            tasks.cancel_scope.cancel()
