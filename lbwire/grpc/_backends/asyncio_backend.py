"""asyncio's own means: futures to park calls on, a plaintext socket as an asyncio.Protocol.

anyio's Event, CancelScope and socket stream wrappers each add work to every
wait, read and write, and its stream reads add a pass through the scheduler.
So on asyncio (uvloop included) a call's task parks on a bare future with a
loop timer for its deadline, and a plaintext connection is an
:class:`asyncio.Protocol`: received bytes are handed to the connection from
the loop's callback (no reader task to wake), and writes are synchronous.
TLS on asyncio goes through anyio's stream (:mod:`.stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from typing import List, Optional, Tuple

from .base import Backend, Parking, Transport, TransportSink

__all__ = ["AsyncioBackend", "AsyncioTransport", "connect_asyncio"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # (a cancelled wait leaves a cancelled future)
        future.set_result(None)


class AsyncioParking(Parking):
    """A bare future, and a loop timer for the deadline (no cancel scope)."""

    __slots__ = ("_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: Optional[asyncio.Future[None]] = None

    async def wait(self, deadline: float) -> None:
        future = self._future = self._loop.create_future()
        timer = None if deadline == math.inf else self._loop.call_at(deadline, _resolve, future)
        try:
            await future
        finally:
            self._future = None  # (already, unless the wait was cancelled)
            if timer is not None:
                timer.cancel()

    def wake(self) -> bool:
        future = self._future
        if future is None:
            return False
        self._future = None
        _resolve(future)
        return True


class AsyncioBackend(Backend):
    """The running asyncio loop's clock and futures."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()

    def clock(self) -> float:
        """See :meth:`.base.Backend.clock`."""
        return self._loop.time()

    def parking(self) -> Parking:
        """See :meth:`.base.Backend.parking`."""
        return AsyncioParking(self._loop)


class AsyncioTransport(asyncio.Protocol, Transport):
    """A plaintext connection on asyncio, pushing what it receives to its sink.

    The sink's methods run in the loop's own callbacks. While the transport's
    write buffer is above its high-water mark, reading is paused too, so a
    peer that sends without reading cannot make us queue answers (PING and
    SETTINGS acknowledgements) without bound.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: Optional[asyncio.Transport] = None
        self.writes = 0
        self.backlogged = False
        self._drained: List[asyncio.Future[None]] = []
        self._sink: Optional[TransportSink] = None
        self._ended = self.loop.create_future()
        self._crash: Optional[Exception] = None
        self._flush_scheduled = False
        # What arrived before the sink was attached.
        self._early: List[bytes] = []
        self._early_end: Optional[Tuple[Optional[BaseException]]] = None

    # -- Transport --------------------------------------------------------------

    async def run(self, sink: TransportSink) -> None:
        """See :meth:`.base.Transport.run`."""
        self._sink = sink
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)
        if self._early_end is not None:
            self._end(self._early_end[0])
        try:
            await self._ended
        finally:
            self._sink = None
        if self._crash is not None:
            raise self._crash

    def write_nowait(self, data: bytes) -> int:
        """See :meth:`.base.Transport.write_nowait`."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            self.writes += 1
        # (A closing transport: the connection is gone and learns it from
        # connection_lost; the bytes do not matter.)
        return len(data)

    async def write(self, data: bytes) -> None:
        """See :meth:`.base.Transport.write`."""
        self.write_nowait(data)
        await self.drained()

    async def drained(self) -> None:
        """See :meth:`.base.Transport.drained`."""
        if self.backlogged:
            future = self.loop.create_future()
            self._drained.append(future)
            await future

    def flush_soon(self, sink: TransportSink) -> None:
        """See :meth:`.base.Transport.flush_soon`."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush, sink)

    def _scheduled_flush(self, sink: TransportSink) -> None:
        self._flush_scheduled = False
        sink.flush_nowait()

    async def aclose(self) -> None:
        """See :meth:`.base.Transport.aclose`."""
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """See :meth:`asyncio.BaseProtocol.connection_made`."""
        # (uvloop's transports are not asyncio.Transport instances.)
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        """See :meth:`asyncio.BaseProtocol.data_received`."""
        sink = self._sink
        if sink is None:
            self._early.append(data)
            return
        try:
            sink.data_received(data)
            if sink.has_data_to_send:
                if sink.woke and not sink.finished:
                    # A woken caller often sends next (the next call of a
                    # loop): our answers then go out in its write.
                    self.flush_soon(sink)
                else:
                    sink.flush_nowait()
            if sink.finished:
                self._end(None, lost=False)
        except Exception as exc:
            # A bug here must not vanish into the loop's exception handler
            # with the calls left hanging: the connection's task raises it.
            self._crash = exc
            self._end(None, lost=False)

    def eof_received(self) -> bool:
        """See :meth:`asyncio.BaseProtocol.eof_received`."""
        self._end(None)
        return False  # close the transport

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        """See :meth:`asyncio.BaseProtocol.connection_lost`."""
        self._end(exc)
        self.backlogged = False
        self._wake_drained()

    def _end(self, exc: Optional[BaseException], *, lost: bool = True) -> None:
        sink = self._sink
        if sink is None:
            if self._early_end is None:
                self._early_end = (exc,)
            return
        if self._ended.done():
            return
        if lost:
            # The calls fail now, not once the connection's task got to run.
            sink.connection_lost(exc)
        self._ended.set_result(None)

    def pause_writing(self) -> None:
        """See :meth:`asyncio.BaseProtocol.pause_writing`."""
        self.backlogged = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        """See :meth:`asyncio.BaseProtocol.resume_writing`."""
        self.backlogged = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self._wake_drained()

    def _wake_drained(self) -> None:
        drained, self._drained = self._drained, []
        for future in drained:
            _resolve(future)


async def connect_asyncio(host: str, port: int) -> AsyncioTransport:
    """Open a plaintext TCP connection on the running asyncio loop.

    Raises:
        OSError: the connection could not be made.

    """
    loop = asyncio.get_running_loop()
    connecting = None
    if not _is_ip_address(host):  # an address has no alternative to race
        with contextlib.suppress(TypeError):  # uvloop lacks the option
            # Happy eyeballs for names, as anyio.connect_tcp does.
            connecting = loop.create_connection(
                AsyncioTransport, host, port, happy_eyeballs_delay=0.25
            )
    if connecting is None:
        connecting = loop.create_connection(AsyncioTransport, host, port)
    transport, protocol = await connecting
    # uvloop calls connection_made only after create_connection returned.
    protocol.transport = transport
    return protocol


def _is_ip_address(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False
