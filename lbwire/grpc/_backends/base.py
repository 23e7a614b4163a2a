"""The one interface between a connection and the bytes it moves, and the waiting of calls.

A :class:`Transport` is one byte connection to the server. It pushes what it
receives into a :class:`TransportSink` (the connection), and takes the bytes
the connection queues, by the cheapest means its backend has. The connection
knows nothing else about it: each backend is one implementation of this
interface (:mod:`.asyncio_backend`, :mod:`.stream`), and the in-memory one
(:mod:`.memory`) lets the channel run without sockets.

A :class:`Backend` is what the running event loop offers a call's task to
wait with (:class:`Parking`) and its clock; it depends on the loop, not on
the transport (TLS on asyncio still parks on asyncio futures).
"""

from __future__ import annotations

import abc
from typing import Optional

import anyio

__all__ = ["Backend", "Parking", "Transport", "TransportSink"]


class TransportSink(abc.ABC):
    """What a transport delivers to: the connection."""

    #: Whether handling the last received bytes woke a call's task (then
    #: answers owed to the peer may wait for that task's next write).
    woke: bool

    @abc.abstractmethod
    def data_received(self, data: bytes) -> None:
        """Bytes arrived from the peer."""

    @abc.abstractmethod
    def connection_lost(self, exc: Optional[BaseException]) -> None:
        """The peer closed the connection (``None``) or it broke (``exc``)."""

    @property
    @abc.abstractmethod
    def has_data_to_send(self) -> bool:
        """Whether bytes are queued for the peer."""

    @property
    @abc.abstractmethod
    def finished(self) -> bool:
        """Whether the connection is over (failed, or drained after GOAWAY): stop reading."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Send everything queued, waiting as needed."""

    @abc.abstractmethod
    def flush_nowait(self) -> None:
        """Hand everything queued to the transport without waiting."""


class Transport(abc.ABC):
    """One byte connection to the server.

    Attributes:
        tls: whether the bytes go through TLS.
        writes: how many writes were handed to the operating system (or to
            the byte stream); for tests and diagnostics.

    """

    tls: bool = False
    writes: int = 0
    #: Whether taken bytes wait in a full buffer (see :meth:`drained`); an
    #: attribute, not a property: it is read for every streamed message.
    backlogged: bool = False

    @abc.abstractmethod
    async def run(self, sink: TransportSink) -> None:
        """Deliver received bytes to ``sink`` until the connection ends.

        Returns once the peer closed the connection or it broke (after
        telling the sink), or once ``sink.finished``. Answers the sink owes
        the peer after a read are sent from here (after the tasks the read
        woke had their turn, when it woke one). Cancel to stop early.

        Raises:
            Exception: a bug in the sink's handling (never swallowed).

        """

    @abc.abstractmethod
    def write_nowait(self, data: bytes) -> int:
        """Send what can go without waiting; return how many bytes were taken."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the peer does not read.

        Raises:
            OSError, anyio.BrokenResourceError, ...: the connection broke.

        """

    async def drained(self) -> None:  # noqa: B027 (only buffering transports wait)
        """Wait until the buffer of taken bytes is below its low-water mark."""

    @abc.abstractmethod
    def flush_soon(self, sink: TransportSink) -> None:
        """Have ``sink.flush()`` run once the running task yields.

        Writes requested meanwhile (by other tasks, or by this one in a loop)
        go out together.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the connection now (nothing queued is waited for)."""


class Parking:
    """Where one call's task waits for its call's next event; the connection wakes it.

    This base works on any anyio backend (an anyio Event per wait).
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: Optional[anyio.Event] = None

    async def wait(self, deadline: float) -> None:
        """Wait until woken or ``deadline`` passed; cancellation propagates."""
        event = self._event = anyio.Event()
        try:
            with anyio.CancelScope(deadline=deadline):
                await event.wait()
        finally:
            self._event = None

    def wake(self) -> bool:
        """Wake the waiting task, if any; return whether there was one."""
        event = self._event
        if event is None:
            return False
        self._event = None
        event.set()
        return True


class Backend:
    """The running event loop's clock and parking (this base: any anyio backend)."""

    __slots__ = ()

    def clock(self) -> float:
        """The current time on the clock deadlines are measured with."""
        return anyio.current_time()

    def parking(self) -> Parking:
        """A new place for one call's task to wait."""
        return Parking()
