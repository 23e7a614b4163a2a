"""One gRPC call: a single object with public methods, and the two streaming shapes over it.

A :class:`Call` is what the channel creates for every call: it starts the
stream, sends and receives messages, and ends or cancels it. The connection
talks to it through :meth:`Call.deliver` and :meth:`Call.end_with` only; the
application through :class:`UnaryStreamCall` and :class:`StreamStreamCall`
(and the channel's ``unary_unary``).
"""

from __future__ import annotations

import collections
import contextlib
import math
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Awaitable,
    Callable,
    Deque,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
)

import anyio

from ._backends import Parking
from .events import CallEnded, MessagesReceived
from .metadata import encode_metadata
from .status import GRPCError, Metadata, MetadataValue, Status

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._connection import Connection

__all__ = ["Call", "MetadataArg", "StreamStreamCall", "UnaryStreamCall"]

MetadataArg = Optional[Iterable[Tuple[str, MetadataValue]]]
_OK = Status.OK


def _frame(payload: bytes) -> bytes:
    """Prefix a message with its gRPC header: no compression, 4-byte length."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


#: The parking of calls not started: nothing waits there.
_NOT_STARTED = Parking()


def _error(end: CallEnded) -> GRPCError:
    return GRPCError(end.status, end.message, end.trailers, end.not_processed)


class Call:
    """The state of one call, whatever its shape.

    Args:
        path: the method, ``/package.Service/Method``.
        timeout: seconds until DEADLINE_EXCEEDED, or ``None``.
        metadata: custom request metadata.
        max_send: ``max_send_message_length``.
        connection: the channel's current connection, if any.
        connect: returns a usable connection (connecting if needed).

    """

    __slots__ = (
        "_clock",
        "_connect",
        "_connection",
        "_connection_hint",
        "_credits",
        "_deadline",
        "_end",
        "_grace",
        "_listener",
        "_max_send",
        "_messages",
        "_metadata",
        "_parking",
        "_path",
        "_protocol",
        "_stream_id",
        "_timeout",
        "initial_metadata",
    )

    def __init__(
        self,
        path: str,
        timeout: Optional[float],
        metadata: MetadataArg,
        *,
        max_send: int,
        connection: Optional[Connection],
        connect: Callable[[], Awaitable[Connection]],
        grace: float = 0.0,
    ) -> None:
        self._path = path
        self._timeout = timeout
        # The server is told the deadline `grace` s earlier than this side
        # gives up, so an answer it sends at its deadline still arrives.
        self._grace = grace
        self._metadata = encode_metadata(metadata) if metadata else ()
        self._max_send = max_send
        self._deadline = math.inf if timeout is None else anyio.current_time() + timeout + grace
        # The messages received and not yet read, and the credit each carries.
        self._messages: Deque[bytes] = collections.deque()
        self._credits: Deque[int] = collections.deque()
        self._end: Optional[CallEnded] = None
        self._listener: Optional[Callable[[bytes], None]] = None
        # The channel's connection when the call was made (start() checks it).
        self._connection_hint = connection
        self._connect = connect
        self._stream_id = 0
        self._parking: Parking = _NOT_STARTED
        #: The response headers' metadata, once received (None before).
        self.initial_metadata: Optional[Metadata] = None

    # -- state ------------------------------------------------------------------------

    @property
    def stream_id(self) -> int:
        """The call's HTTP/2 stream id (0 before it started)."""
        return self._stream_id

    @property
    def status(self) -> Optional[Status]:
        """The call's final status once it ended, else None."""
        end = self._end
        return None if end is None else end.status

    @property
    def trailing_metadata(self) -> Optional[Metadata]:
        """The trailers' metadata once the call ended (None before)."""
        end = self._end
        return None if end is None else end.trailers

    @property
    def has_message(self) -> bool:
        """Whether a received message waits to be read: `receive` returns it without waiting."""
        return bool(self._messages)

    # -- what the connection calls -------------------------------------------------------

    def deliver(self, event: MessagesReceived) -> bool:
        """Messages arrived; return whether the call's waiting task was woken."""
        listener = self._listener
        if listener is not None:
            # Taken at once: their credit goes back with the connection's
            # next write, and the next message is wanted (see `want_message`).
            protocol = self._protocol
            protocol.consumed(self._stream_id, sum(event.credits))
            protocol.want_message(self._stream_id)
            for data in event.messages:
                listener(data)
            # Whoever the listener woke often sends next: our answers then
            # go out in that write (the connection's "woke").
            return True
        self._messages.extend(event.messages)
        self._credits.extend(event.credits)
        return self._parking.wake()  # (a call gets messages only once started)

    def listen(self, listener: Callable[[bytes], None]) -> None:
        """Hand each response message to `listener` as it arrives (see `StreamStreamCall`)."""
        self._listener = listener
        messages, credits = self._messages, self._credits
        while messages:
            self._protocol.consumed(self._stream_id, credits.popleft())
            listener(messages.popleft())
        self._protocol.want_message(self._stream_id)

    def end_with(self, event: CallEnded) -> bool:
        """The call ended (first end wins); return whether its waiting task was woken."""
        if self._end is None:
            if (
                event.reset
                and event.status is Status.CANCELLED
                and self._deadline != math.inf
                and self._clock() >= self._deadline - self._grace
            ):
                # Newer grpc-go servers reset a call with CANCEL when its
                # deadline passes instead of answering DEADLINE_EXCEEDED;
                # grpc-go's own client reads that reset as its deadline too.
                # (The deadline the server was sent: `grace` s before ours.)
                event = CallEnded(event.stream_id, Status.DEADLINE_EXCEEDED, "deadline exceeded")
            self._end = event
        return self._parking.wake()

    # -- what the channel and the call shapes call ---------------------------------------

    async def start(self, request: Optional[bytes], end: bool) -> None:
        """Open the stream, send the headers and, if given, the first message.

        Raises:
            GRPCError: RESOURCE_EXHAUSTED (request too large), UNAVAILABLE (no
                connection), DEADLINE_EXCEEDED.

        """
        if request is not None and len(request) > self._max_send:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request message larger than max ({len(request)} > {self._max_send})",
            )
        connection = self._connection_hint
        timeout = None
        try:
            if connection is None or not connection.protocol.can_start_call:
                connection = await self._wait_for_connection()
            if self._timeout is not None:
                timeout = self._deadline - self._grace - anyio.current_time()
                if timeout <= 0:
                    raise GRPCError(
                        Status.DEADLINE_EXCEEDED, "deadline exceeded before the call started"
                    )
        except GRPCError as exc:
            # No stream was opened: the server never saw this call, so a
            # caller may send it again (to this broker or another).
            exc.not_processed = True
            raise
        protocol = self._protocol = connection.protocol
        self._connection = connection
        self._clock = connection.backend.clock
        self._parking = connection.backend.parking()
        stream_id = self._stream_id = protocol.start_call(
            self._path, timeout=timeout, metadata=self._metadata
        )
        connection.add_call(stream_id, self)
        try:
            if request is not None:
                data = _frame(request)
                sent = protocol.send_data(stream_id, data, end)
                if sent < len(data):
                    await self._send_rest(data, sent, end)
                    return
            await connection.flush()
        except BaseException:
            await self.abandon()
            raise

    async def _wait_for_connection(self) -> Connection:
        """Connect if needed, and wait for a free stream (max concurrent streams)."""
        with anyio.CancelScope(deadline=self._deadline) as scope:
            connection = await self._connect()
            while not connection.protocol.can_start_call:
                if not connection.usable:
                    connection = await self._connect()
                else:  # SETTINGS_MAX_CONCURRENT_STREAMS reached: queue
                    await connection.wait_capacity()
            return connection
        assert scope.cancelled_caught
        raise GRPCError(Status.DEADLINE_EXCEEDED, "deadline exceeded before the call started")

    async def send_message(self, payload: bytes, end: bool = False) -> None:
        """Send one message, waiting for flow-control window as needed.

        Raises:
            GRPCError: the call already failed (its status), its deadline
                passed, or the message is larger than ``max_send_message_length``.

        """
        if len(payload) > self._max_send:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"message larger than max ({len(payload)} > {self._max_send})",
            )
        if self._end is not None or self._deadline != math.inf:
            await self._check()
        data = _frame(payload)
        sent = self._protocol.send_data(self._stream_id, data, end)
        if sent < len(data):
            await self._send_rest(data, sent, end)
        else:
            await self._connection.flush_soon()

    def send_message_nowait(self, payload: bytes) -> bool:
        """Queue one message if nothing has to wait; return whether it was queued.

        Queued means what :meth:`send_message` does without a checkpoint:
        the window takes all of it and the transport is not backlogged.
        Otherwise (or when the call ended, has a deadline, or the message is
        too large) nothing is queued: :meth:`send_message` then waits or raises.
        """
        size = len(payload) + 5
        if (
            self._end is not None
            or self._deadline != math.inf
            or size - 5 > self._max_send
            or self._protocol.send_window(self._stream_id) < size
        ):
            return False
        connection = self._connection
        transport = connection.transport
        if transport.backlogged:
            return False
        self._protocol.send_data(self._stream_id, _frame(payload), False)
        transport.flush_soon(connection)
        return True

    async def send_messages(self, payloads: Sequence[bytes]) -> None:
        """Send several messages at once: framed together, queued as one piece of data.

        Raises:
            GRPCError: as :meth:`send_message`; a message too large is refused
                before any of them is sent.

        """
        limit = self._max_send
        for payload in payloads:
            if len(payload) > limit:
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"message larger than max ({len(payload)} > {limit})",
                )
        if self._end is not None or self._deadline != math.inf:
            await self._check()
        data = b"".join([b"\x00" + len(p).to_bytes(4, "big") + p for p in payloads])
        sent = self._protocol.send_data(self._stream_id, data, False)
        if sent < len(data):
            await self._send_rest(data, sent, False)
        else:
            await self._connection.flush_soon()

    async def _send_rest(self, data: bytes, sent: int, end: bool) -> None:
        connection = self._connection
        protocol = self._protocol
        view = memoryview(data)
        total = len(data)
        # Part of the message is queued: a cancelled caller still sends the
        # rest, as a message cut short would garble every later one on the
        # stream. The call's deadline, its end and the connection's failure
        # still stop it.
        with anyio.CancelScope(shield=True):
            while sent < total:
                await connection.flush()
                if protocol.send_window(self._stream_id) <= 0:
                    with anyio.CancelScope(deadline=self._deadline):
                        await connection.wait_window()
                await self._check()
                sent += protocol.send_data(self._stream_id, view[sent:], end)
            await connection.flush()

    async def end(self) -> None:
        """Half-close: tell the server no more messages will be sent."""
        await self._check()
        self._protocol.end_stream(self._stream_id)
        await self._connection.flush()

    async def _check(self) -> None:
        """Raise if the call failed or its deadline passed."""
        if self._end is None and self._deadline != math.inf and self._expired():
            await self._expire()
        end = self._end
        if end is not None and end.status is not _OK:
            raise _error(end)

    async def _expire(self) -> None:
        """The deadline passed: reset the stream, end with DEADLINE_EXCEEDED."""
        connection = self._connection
        connection.cancel_call(self._stream_id)
        self.end_with(CallEnded(self._stream_id, Status.DEADLINE_EXCEEDED, "deadline exceeded"))
        # Messages that arrived in time but were not read are not delivered
        # (the call is over: their credit is moot).
        self._messages.clear()
        self._credits.clear()
        with anyio.CancelScope(shield=True), contextlib.suppress(GRPCError):
            await connection.flush()

    def _expired(self) -> bool:
        return self._clock() >= self._deadline

    async def _wait(self) -> None:
        """Wait for the next event on this call, honouring the deadline."""
        connection = self._connection
        if connection.lent:
            connection.run_when_waited()
        await self._parking.wait(self._deadline)
        if self._end is None and self._deadline != math.inf and self._expired():
            await self._expire()

    async def _queued(self) -> Deque[bytes]:
        """The messages received and not yet read, once there is one.

        (Their credits are in `_credits`, in the same order.)

        Raises:
            StopAsyncIteration: the server ended the call with OK.
            GRPCError: the call failed.

        """
        while True:
            if self._deadline != math.inf and self._end is None and self._expired():
                # Checked here too: a stream that never makes us wait would
                # otherwise outlive its deadline.
                await self._expire()
            messages = self._messages
            if messages:
                return messages
            end = self._end
            if end is not None:
                if end.status is _OK:
                    raise StopAsyncIteration
                raise _error(end)
            if self._protocol.want_message(self._stream_id):
                with contextlib.suppress(GRPCError):
                    await self._connection.flush()
            await self._wait()

    async def receive(self) -> bytes:
        """Return the next response message.

        Raises:
            StopAsyncIteration: the server ended the call with OK.
            GRPCError: the call failed.

        """
        message = (await self._queued()).popleft()
        if self._protocol.consumed(self._stream_id, self._credits.popleft()):
            # A broken connection surfaces on the next receive; this
            # message is delivered.
            with contextlib.suppress(GRPCError):
                await self._connection.flush()
        return message

    async def receive_many(self, limit: int) -> List[bytes]:
        """Return the response messages received and not yet read: at least one, at most `limit`.

        What `receive` does, for all the call holds at once: their credit
        goes back in one piece.

        Raises:
            StopAsyncIteration: the server ended the call with OK.
            GRPCError: the call failed.

        """
        messages = await self._queued()
        credits = self._credits
        if len(messages) <= limit:
            received = list(messages)
            credit = sum(credits)
            messages.clear()
            credits.clear()
        else:
            received = [messages.popleft() for _ in range(limit)]
            credit = sum([credits.popleft() for _ in range(limit)])
        if self._protocol.consumed(self._stream_id, credit):
            with contextlib.suppress(GRPCError):
                await self._connection.flush()
        return received

    async def unary_response(self) -> bytes:
        """Wait for the end of a unary call and return its one response message.

        Raises:
            GRPCError: the call failed, or did not return exactly one message.

        """
        while self._end is None:
            if self._protocol.want_message(self._stream_id):
                await self._connection.flush()
            await self._wait()
        end = self._end
        if end.status is not _OK:
            raise _error(end)
        messages = self._messages
        if len(messages) != 1:
            raise GRPCError(
                Status.INTERNAL, f"unary call got {len(messages)} response messages", end.trailers
            )
        return messages.popleft()

    async def close(self) -> None:
        """Leave the call: cancel it if still running, drop unread messages."""
        if self._end is None or self._messages:
            await self.abandon()

    async def abandon(self) -> None:
        """Cancel the call if still running (RST_STREAM CANCEL); drop unread messages."""
        if self._stream_id == 0:
            return  # never started
        connection = self._connection
        if self._end is None:
            connection.cancel_call(self._stream_id)
            self.end_with(CallEnded(self._stream_id, Status.CANCELLED, "call cancelled"))
        self._messages.clear()
        self._credits.clear()
        with anyio.CancelScope(shield=True), contextlib.suppress(GRPCError):
            await connection.flush()


class _StreamingCall:
    """What server-streaming and bidirectional calls share: receiving."""

    __slots__ = ("_call",)

    def __init__(self, call: Call) -> None:
        self._call = call

    async def receive(self) -> bytes:
        """Return the next response message.

        Raises:
            StopAsyncIteration: the server ended the call with OK.
            GRPCError: the call failed.

        """
        return await self._call.receive()

    async def receive_many(self, limit: int = 1024) -> List[bytes]:
        """Return the response messages received and not yet read: at least one, at most `limit`.

        Raises:
            StopAsyncIteration: the server ended the call with OK.
            GRPCError: the call failed.

        """
        return await self._call.receive_many(limit)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        return await self._call.receive()

    @property
    def stream_id(self) -> int:
        """The call's HTTP/2 stream id (for tests and diagnostics)."""
        return self._call.stream_id

    @property
    def initial_metadata(self) -> Optional[Metadata]:
        """The response headers' metadata, once received (None before)."""
        return self._call.initial_metadata

    @property
    def trailing_metadata(self) -> Optional[Metadata]:
        """The trailers' metadata once the call ended (None before)."""
        return self._call.trailing_metadata

    @property
    def status(self) -> Optional[Status]:
        """The call's final status once it ended, else None."""
        return self._call.status

    @property
    def has_message(self) -> bool:
        """Whether a received message waits to be read: `receive` returns it without waiting."""
        return self._call.has_message

    @property
    def ended(self) -> bool:
        """Whether the call has ended (nothing sent from now on reaches the server)."""
        return self._call.status is not None

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self._call.close()


class UnaryStreamCall(_StreamingCall):
    """A server-streaming call: an async iterator of response messages.

    Use ``async with channel.unary_stream(...) as stream: async for m in stream``.
    """

    __slots__ = ("_request",)

    def __init__(self, call: Call, request: bytes) -> None:
        super().__init__(call)
        self._request = request

    async def __aenter__(self) -> Self:
        await self._call.start(self._request, True)
        return self


class StreamStreamCall(_StreamingCall):
    """A bidirectional-streaming call.

    Send with :meth:`send_message` and half-close with :meth:`end`; receive
    with :meth:`receive` or ``async for``. Sending waits for flow-control
    window without holding up receiving.
    """

    __slots__ = ()

    async def __aenter__(self) -> Self:
        await self._call.start(None, False)
        return self

    async def send_message(self, message: bytes) -> None:
        """Send one request message, waiting for flow-control window if needed.

        Raises:
            GRPCError: the call already failed (its status), its deadline passed,
                or the message is larger than ``max_send_message_length``.

        """
        await self._call.send_message(message, False)

    def send_message_nowait(self, message: bytes) -> bool:
        """Queue one request message if nothing has to wait; return whether it was queued.

        When it returns False nothing was sent: :meth:`send_message` then
        waits for window (or raises).
        """
        return self._call.send_message_nowait(message)

    async def send_messages(self, messages: Sequence[bytes]) -> None:
        """Send several request messages in one piece (one write when the window allows).

        Raises:
            GRPCError: as :meth:`send_message`; none is sent when one is too large.

        """
        await self._call.send_messages(messages)

    async def end(self) -> None:
        """Half-close: tell the server no more messages will be sent."""
        await self._call.end()

    def listen(self, listener: Callable[[bytes], None]) -> None:
        """Hand each response message to `listener` as it arrives, instead of queueing it.

        The connection's receiving side calls `listener(message)` as soon as
        the message is in: no task switch per message. On asyncio that is the
        transport's callback, outside any task, so `listener` must not use
        anyio calls that need one (`anyio.current_time()`, sleeping);
        setting an `anyio.Event` is fine. It must return quickly and must
        not raise. Messages already queued go to it now; from then on
        :meth:`receive` only waits for the call's end (StopAsyncIteration,
        or the GRPCError that ended it).
        """
        self._call.listen(listener)
