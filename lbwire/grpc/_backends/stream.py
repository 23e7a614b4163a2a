"""A connection over an anyio byte stream: TLS on any backend, plaintext on trio, in memory.

A reader task pushes what it receives to the sink; a writer task sends what
:meth:`StreamTransport.flush_soon` asked for, a batch at a time. On trio
without TLS, writes go to the socket directly while it takes them (an anyio
send costs a pass through the scheduler each time).
"""

from __future__ import annotations

import socket
from typing import Optional

import anyio
import anyio.abc
import anyio.lowlevel

from .._failures import CONNECTION_ERRORS
from ..status import GRPCError
from .base import Transport, TransportSink

__all__ = ["StreamTransport"]

# Read size: large enough that a burst of small streamed messages is handled
# in one receive_data() call (one pass of the core, one wake-up of the consumer).
_READ_SIZE = 256 * 1024


class StreamTransport(Transport):
    """A connection over an anyio byte stream.

    Args:
        stream: the connected stream.
        tls: whether it is a TLS stream.
        raw_socket: the plaintext socket under ``stream``, to write to
            directly while it takes the bytes without waiting (trio).

    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        tls: bool = False,
        raw_socket: Optional[socket.socket] = None,
    ) -> None:
        self.stream = stream
        self.tls = tls
        self.writes = 0
        self._raw_socket = raw_socket
        # Set when queued data waits for the writer task.
        self._write_wanted = anyio.Event()

    async def run(self, sink: TransportSink) -> None:
        """See :meth:`.base.Transport.run`."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._write_loop, sink)
            try:
                await self._read_loop(sink)
            finally:
                tasks.cancel_scope.cancel()

    async def _read_loop(self, sink: TransportSink) -> None:
        receive = self.stream.receive
        try:
            while not sink.finished:
                data = await receive(_READ_SIZE)
                sink.data_received(data)
                # Answers to PING and SETTINGS, resets, WINDOW_UPDATEs.
                if sink.has_data_to_send:
                    if sink.woke:
                        # A woken caller often sends next (the next call of a
                        # loop): our answers then go out in its write, one
                        # system call (and one read by the server) less.
                        await anyio.lowlevel.checkpoint()
                        if sink.has_data_to_send:  # (trio may run us first)
                            await anyio.lowlevel.checkpoint()
                    await sink.flush()
        except anyio.EndOfStream:
            sink.connection_lost(None)
        except CONNECTION_ERRORS as exc:
            sink.connection_lost(exc)
        except GRPCError:
            pass  # a failed flush: the connection has ended its calls

    async def _write_loop(self, sink: TransportSink) -> None:
        while True:
            await self._write_wanted.wait()
            self._write_wanted = anyio.Event()
            try:
                await sink.flush()
            except GRPCError:
                return  # the connection failed: it has ended its calls

    def write_nowait(self, data: bytes) -> int:
        """See :meth:`.base.Transport.write_nowait`."""
        if self._raw_socket is None:
            return 0
        try:
            sent = self._raw_socket.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        self.writes += 1
        return sent

    async def write(self, data: bytes) -> None:
        """See :meth:`.base.Transport.write`."""
        await self.stream.send(data)
        self.writes += 1

    def flush_soon(self, sink: TransportSink) -> None:
        """See :meth:`.base.Transport.flush_soon`."""
        self._write_wanted.set()

    async def aclose(self) -> None:
        """See :meth:`.base.Transport.aclose`."""
        await anyio.aclose_forcefully(self.stream)
