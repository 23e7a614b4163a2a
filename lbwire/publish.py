"""Pipelined publishing over Liftbridge's PublishAsync bidirectional stream.

One long-lived stream per client carries many publishes in flight; a reader
task in the client's task group dispatches each PublishResponse to the
awaiter of the same correlation id, as go-liftbridge's PublishAsync does.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Generator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import anyio

from . import wire
from ._log import LazyLogger
from ._turns import Turns
from .error import (
    ErrorAckTimeout,
    ErrorMalformedReply,
    ErrorUnavailable,
    LiftbridgeError,
    PublishAsyncError,
    from_grpc_error,
)
from .error._decisions import publish_async_error
from .grpc import GRPCError
from .grpc._backends import running_backend
from .observer import ObserverSlot
from .wire.messages import decode_ack_range, split_publish_response

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

    from ._address import Address
    from ._room import PublishRoom
    from .grpc import Channel

__all__ = ["PendingAck", "PublishSession"]

logger = LazyLogger("lbwire.publish")

_PATH = "/proto.API/PublishAsync"
#: (An enum member read from its class costs a lookup each time on CPython 3.11.)
_NONE = wire.AckPolicy.NONE

#: Longest `PublishSession.aclose` waits for the server to read the requests
#: sent without an ack (AckPolicy.NONE) before it resets the stream.
CLOSE_GRACE = 5.0


#: A reply, and where in it an Ack's encoding starts and ends.
_Encoded = Tuple[bytes, int, int]


def _what(request: wire.PublishRequest) -> str:
    return f"a message to {request.stream!r}"


def _not_sent(cause: LiftbridgeError) -> ErrorUnavailable:
    return ErrorUnavailable(
        f"Not sent, as the batch's stream broke first: {cause}", not_processed=True
    )


class PendingAck:
    """The outcome of one pipelined publish: `await` it for the Ack.

    Awaiting returns the Ack (None for AckPolicy.NONE) and raises
    `PublishAsyncError` when the server refused the message,
    `ErrorAckTimeout` when no ack came within the ack timeout, and
    `ErrorUnavailable` when the stream broke before the ack came.
    """

    # One per published message. The Event is made only when someone waits
    # before the ack came: with many publishes in flight most acks are in by
    # the time they are awaited, and an Event costs more than the rest of
    # this constructor.
    __slots__ = (
        "_ack",
        "_deadline",
        "_done",
        "_epoch",
        "_error",
        "_event",
        "_held",
        "_session",
        "correlation_id",
        "observed",
    )

    def __init__(
        self, session: Optional[PublishSession], correlation_id: str, deadline: float
    ) -> None:
        self.correlation_id = correlation_id
        self._session = session
        self._deadline = deadline
        self._done = False
        self._event: Optional[anyio.Event] = None
        # The Ack, or where its encoding lies until it is first read (see `wait`).
        self._ack: Union[wire.Ack, _Encoded, None] = None
        self._error: Optional[LiftbridgeError] = None
        # The bytes of room this publish holds in its session's PublishRoom
        # (-1: none), and the flush epoch it took them in.
        self._held = -1
        self._epoch = 0
        #: (stream, partition, time.monotonic() when sent) when the client has an observer.
        self.observed: Optional[Tuple[str, int, float]] = None

    def resolve(
        self, ack: Union[wire.Ack, _Encoded, None], error: Optional[LiftbridgeError]
    ) -> None:
        """Settle the outcome (called by the session that sent the message).

        `ack` may be where the Ack's encoding lies: it is decoded when first read.
        """
        self._ack, self._error = ack, error
        self._done = True
        if self._held >= 0:
            self.release()
        event = self._event
        if event is not None:
            event.set()

    def hold(self, size: int, epoch: int) -> None:
        """Record that the publish holds `size` bytes of room, taken in flush epoch `epoch`."""
        self._held = size
        self._epoch = epoch

    def release(self) -> None:
        """Give back the room this publish holds, if any (once)."""
        held, self._held = self._held, -1
        session = self._session
        if held >= 0 and session is not None and session.room is not None:
            session.room.give(held, self._epoch)

    @property
    def deadline(self) -> float:
        """When the ack timeout ends (`anyio.current_time()` clock)."""
        return self._deadline

    @property
    def done(self) -> bool:
        """Whether the ack (or an error) has arrived."""
        return self._done

    async def wait(self) -> Optional[wire.Ack]:
        """Wait for the ack; see the class docstring for the errors."""
        if not self._done:
            event = self._event
            if event is None:
                event = self._event = anyio.Event()
            with anyio.CancelScope(deadline=self._deadline):
                await event.wait()
            if not self._done:
                if self._session is not None:
                    self._session.forget(self)
                raise _ack_timeout(self.correlation_id)
        return self._outcome()

    def _outcome(self) -> Optional[wire.Ack]:
        """The ack once settled (decoded on first read), or the error raised."""
        if self._error is not None:
            raise self._error
        ack = self._ack
        if isinstance(ack, tuple):
            try:
                ack = self._ack = decode_ack_range(*ack)
            except ValueError as exc:  # wire.DecodeError
                self._error = ErrorMalformedReply(
                    f"Malformed ack for correlation id {self.correlation_id!r}: {exc}"
                )
                raise self._error from None
        return ack

    def __await__(self) -> Generator[Any, None, Optional[wire.Ack]]:
        if not self._done:
            return (yield from self.wait().__await__())
        # Settled already (as the oldest of many in flight usually is): no
        # coroutine, and no checkpoint, as `wait` has none then either.
        return self._outcome()


def _ack_timeout(correlation_id: str) -> ErrorAckTimeout:
    return ErrorAckTimeout(f"No ack for correlation id {correlation_id!r} in time")


class PublishSession:
    """A PublishAsync stream and the acks awaited on it.

    An ack not in by its ack timeout is failed with ErrorAckTimeout by the
    stream's sweeper, whether or not anyone awaits it: a `publish_async`
    whose result is never awaited leaves nothing behind, and the idle reaper
    can close the stream.
    """

    def __init__(
        self,
        channel: Channel,
        task_group: TaskGroup,
        observers: Optional[ObserverSlot] = None,
        room: Optional[PublishRoom] = None,
        unclaimed: Optional[Callable[[PublishAsyncError], None]] = None,
    ) -> None:
        self._channel = channel
        #: The client's bound on publishes in flight (None: unbounded).
        self.room = room
        # Told of each refusal no awaiter receives (see `_dispatch`).
        self._unclaimed = unclaimed
        self._task_group = task_group
        self._observers = observers if observers is not None else ObserverSlot()
        self._pending: Dict[str, PendingAck] = {}
        # Requests that share a correlation id with one in `_pending` (the
        # caller chose the ids): each ack settles the oldest of them, so acks
        # are counted per id rather than matched to one request.
        self._shared: Dict[str, Deque[PendingAck]] = {}
        self._call: Any = None
        self._scope: Optional[anyio.CancelScope] = None
        # Writers take turns (see `send`).
        self._turns = Turns()
        # The event loop's clock, read once per publish: without anyio's
        # lookup of the running backend each time.
        self._clock = running_backend().clock
        self.closed = False
        # Why `_on_reply` ended the stream (a malformed reply), if it did.
        self._ended_by: Optional[LiftbridgeError] = None
        #: The broker this stream is open on (set by whoever opened it).
        self.address: Optional[Address] = None
        # Until the stream's first reply, one acked request at a time: see
        # `_first_reply_gate`. `_opener` is the request whose reply opens it.
        self._answered = False
        self._opener: Optional[PendingAck] = None
        self._answered_event: Optional[anyio.Event] = None
        self._last_sent = self._clock()
        # An unacked request went out since `idle_for` last looked (so a
        # fire-and-forget publish reads no clock).
        self._sent_unacked = False
        #: A `publish_bulk` over this stream stopped at an ack timeout.
        self.timed_out = False
        # The sweeper's next look (the earliest ack timeout it knows of), and
        # what wakes it sooner when an earlier one comes.
        self._sweep_at = math.inf
        self._sweep_wake: Optional[anyio.Event] = None
        # Whether a request went out with AckPolicy.NONE (nothing confirms
        # that the server read it), and whether `aclose` half-closed the stream.
        self._unconfirmed = False
        self.draining = False
        self._finished = anyio.Event()  # set when the reader ends

    async def start(self) -> None:
        """Open the stream; its reader runs in the client's task group.

        Raises:
            ErrorUnavailable: The stream could not be opened (broker down).
        """
        await self._task_group.start(self._run)

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # Errors before the stream is open go to `start`'s caller; after, they
        # fail this stream's acks only: the reader runs in the client's task
        # group, where an exception would end the user's whole block.
        error: LiftbridgeError = ErrorUnavailable("PublishAsync stream closed")
        started = False
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with self._channel.stream_stream(_PATH) as call:
                    self._call = call
                    task_status.started()
                    started = True
                    # Replies are dispatched by the connection's receiving
                    # task as they arrive (`_on_reply`); this task waits for
                    # the stream's end, or for `_on_reply` to end it.
                    call.listen(self._on_reply)
                    await self._until_end(call)
        except GRPCError as exc:
            error = from_grpc_error(exc)
            logger.debug("PublishAsync stream ended: %s", exc)
            if not started:
                raise error from None
        finally:
            self.closed = True
            self._finished.set()
            if self._ended_by is not None:
                error = self._ended_by
            self._open_gate()
            pending, self._pending = self._pending, {}
            shared, self._shared = self._shared, {}
            for item in pending.values():
                item.resolve(None, error)
            for queue in shared.values():
                for item in queue:
                    item.resolve(None, error)
        if not started:
            # Closed (aclose) before the stream opened.
            raise error

    async def _until_end(self, call: Any) -> None:
        """Sweep expired acks until the stream ends; raise the GRPCError that ended it."""
        ended: Optional[GRPCError] = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._sweep)
            try:
                async for _ in call:
                    pass
            except GRPCError as exc:
                ended = exc  # (raised outside the group: trio would wrap it)
            tasks.cancel_scope.cancel()
        if ended is not None:
            raise ended

    async def _sweep(self) -> None:
        """Fail each awaited ack at its ack timeout (see the class docstring)."""
        while True:
            now = anyio.current_time()
            expired = [item for item in self._pending.values() if item.deadline <= now]
            for queue in self._shared.values():
                expired += [item for item in queue if item.deadline <= now]
            for item in expired:
                self.forget(item)
                item.resolve(None, _ack_timeout(item.correlation_id))
            due = min((item.deadline for item in self._pending.values()), default=math.inf)
            for queue in self._shared.values():
                due = min(due, min(item.deadline for item in queue))
            self._sweep_at = due
            wake = self._sweep_wake = anyio.Event()
            with anyio.CancelScope(deadline=due):
                await wake.wait()

    def _on_reply(self, data: bytes) -> None:
        """One reply, handed over by the connection's receiving task: settle its ack.

        It runs outside any task on asyncio (in the transport's callback), so
        it calls nothing of anyio's but `Event.set` and never raises.
        """
        if self._ended_by is not None:
            return
        # The usual reply, an ack, is split only: the ack is decoded when
        # someone reads it (many are never read, e.g. after `flush`).
        parts = split_publish_response(data)
        try:
            if parts is not None:
                correlation_id, start, stop = parts
                self._dispatch(correlation_id, None, (data, start, stop) if start >= 0 else None)
                return
            try:
                response = wire.PublishResponse.decode(data)
            except ValueError as exc:  # wire.DecodeError
                # The reply names no correlation id we can trust, and what follows
                # it on this stream cannot be trusted either: end the stream.
                self._end_with(ErrorUnavailable(f"Malformed PublishAsync reply: {exc}"))
                return
            self._dispatch(response.correlationId, response.asyncError, response.ack)
        except Exception as exc:  # a bug (the observer's errors are caught before)
            self._end_with(ErrorUnavailable(f"PublishAsync reply not dispatched: {exc!r}"))

    def _end_with(self, error: LiftbridgeError) -> None:
        """End the stream: its awaited acks fail with `error`."""
        self._ended_by = error
        logger.warning("PublishAsync stream ended: %s", error)
        self.closed = True
        if self._scope is not None:
            self._scope.cancel()

    def _dispatch(
        self,
        correlation_id: str,
        err: Optional[wire.PublishAsyncError],
        ack: Union[wire.Ack, _Encoded, None],
    ) -> None:
        """Settle the publish `correlation_id`: refused (`err`) or acked (`ack`, maybe encoded)."""
        if not self._answered:
            self._open_gate()
        item = self._pending.pop(correlation_id, None)
        if item is None:
            # An AckPolicy.NONE publish (fire and forget) refused, or one
            # whose awaiter gave up: its error is nobody's to raise, so it
            # is reported instead of dropped. A late ack is of no interest.
            if err is not None and self._unclaimed is not None:
                self._unclaimed(publish_async_error(int(err.code), err.message, correlation_id))
            return
        if self._shared:
            self._promote(correlation_id)
        if err is not None:
            item.resolve(None, publish_async_error(int(err.code), err.message, correlation_id))
        else:
            item.resolve(ack, None)
            observed = item.observed
            if observed is not None:
                observer = self._observers.current
                if observer is not None:
                    stream, partition, sent = observed
                    observer.on_ack(stream, partition, time.monotonic() - sent)

    def _promote(self, correlation_id: str) -> None:
        """The next request sharing `correlation_id` awaits the next ack for it."""
        queue = self._shared.get(correlation_id)
        if queue:
            self._pending[correlation_id] = queue.popleft()
            if not queue:
                del self._shared[correlation_id]

    def _open_gate(self) -> None:
        self._answered = True
        self._opener = None
        event = self._answered_event
        if event is not None:
            event.set()

    async def _first_reply_gate(self, item: PendingAck) -> None:
        """Hold `item` back until the stream has answered once, unless it goes first.

        Liftbridge's PublishAsync handler sends acks from one goroutine and
        refusals from another; on a stream that has not answered yet both
        may send the response headers at once, and grpc-go then fails one
        reply ("transport: SendHeader called multiple times"). With one
        acked request in flight until the first reply, only one reply can be
        on its way while the headers are being written.
        """
        if self._opener is None:
            self._opener = item
            return
        event = self._answered_event
        if event is None:
            event = self._answered_event = anyio.Event()
        with anyio.CancelScope(deadline=item.deadline):
            await event.wait()

    def forget(self, item: PendingAck) -> None:
        """Stop waiting for an ack (its awaiter gave up, or it was not sent): its room goes back."""
        item.release()
        if item is self._opener:
            # No reply in time: the gate must not hold the others forever.
            self._open_gate()
        correlation_id = item.correlation_id
        if self._pending.get(correlation_id) is item:
            del self._pending[correlation_id]
            self._promote(correlation_id)
            return
        queue = self._shared.get(correlation_id)
        if queue is not None and item in queue:
            queue.remove(item)
            if not queue:
                del self._shared[correlation_id]

    def _sweep_sooner(self, deadline: float) -> None:
        """Have the sweeper look at `deadline`, earlier than it meant to."""
        self._sweep_at = deadline
        wake = self._sweep_wake
        if wake is not None:
            wake.set()

    def _register(self, item: PendingAck) -> None:
        correlation_id = item.correlation_id
        if correlation_id in self._pending:
            self._shared.setdefault(correlation_id, deque()).append(item)
        else:
            self._pending[correlation_id] = item

    async def send(
        self,
        request: wire.PublishRequest,
        encoded: bytes,
        timeout: float,
        *,
        observe: bool = True,
    ) -> PendingAck:
        """Send one request; returns with the awaitable for its ack.

        It returns at once, except on a stream that has not answered yet:
        see `_first_reply_gate`. With `observe`, the client's observer is
        told of the ack (`ClientObserver.on_ack`).

        Raises:
            ErrorUnavailable: The stream is closed or broke; `not_processed`
                when the request did not go out.
        """
        if self.closed or self._call is None:
            raise ErrorUnavailable("PublishAsync stream is closed", not_processed=True)
        correlation_id = request.correlationId
        if request.ackPolicy == _NONE:
            self._unconfirmed = True
            self._sent_unacked = True
            item = PendingAck(None, correlation_id, 0.0)
            item.resolve(None, None)  # the server sends nothing back
        else:
            now = self._last_sent = self._clock()
            item = PendingAck(self, correlation_id, now + timeout)
            room = self.room
            if room is not None:
                # Room is given back when the publish is settled (PendingAck.release).
                size = len(encoded)
                if room.try_take(size):
                    item.hold(size, room.epoch)
                else:
                    item.hold(size, await room.take(size, item.deadline, _what(request)))
            if not self._answered or self.closed:
                try:
                    if not self._answered:
                        await self._first_reply_gate(item)
                    if self.closed:
                        raise ErrorUnavailable("PublishAsync stream is closed", not_processed=True)
                except BaseException:
                    self.forget(item)
                    raise
            if observe and self._observers.current is not None:
                # time.monotonic: the ack is handled outside anyio's reach.
                item.observed = (request.stream, request.partition, time.monotonic())
            if correlation_id in self._pending:
                self._register(item)
            else:
                self._pending[correlation_id] = item
            if item.deadline < self._sweep_at:
                self._sweep_sooner(item.deadline)
        # Senders take turns: a message the stream's flow-control window cannot
        # take at once is sent in parts, across awaits, and no other message
        # may go out between them (StreamStreamCall.send_message does not
        # serialize its callers). A free turn is taken without a checkpoint.
        turns = self._turns
        try:
            if not turns.try_take():
                await turns.take()
            try:
                if self._call.ended or self.draining:
                    # The stream ended (its connection broke) before this
                    # request went out, and its reader has not run yet.
                    self.closed = True
                    raise ErrorUnavailable(
                        "PublishAsync stream ended before the message was sent",
                        not_processed=True,
                    )
                call = self._call
                if not call.send_message_nowait(encoded):
                    await call.send_message(encoded)
            finally:
                turns.give_back()
        except BaseException as exc:
            self.forget(item)
            if isinstance(exc, GRPCError):
                # The stream is broken: the next publish opens a new one, even
                # before this stream's reader has run to notice.
                self.closed = True
                if self._scope is not None:
                    self._scope.cancel()
                raise from_grpc_error(exc) from None
            raise
        return item

    async def send_batch(
        self,
        requests: Sequence[wire.PublishRequest],
        encoded: Sequence[bytes],
        timeout: float,
    ) -> List[PendingAck]:
        """Send `requests` in order, framed and written together; their awaitables.

        The requests that find room in the client's bound go out in one piece;
        then the batch waits for room for the next one, and so on. On a stream
        that has not answered yet the first requests go one by one (see
        `_first_reply_gate`). When the stream breaks meanwhile, the requests
        that were being written fail with its error and the rest with
        `ErrorUnavailable` (`not_processed`), each in its own PendingAck.

        No room for the next request within the ack timeout fails it and
        the rest with `ErrorDeadlineExceeded` (`not_processed`) likewise.

        Raises:
            ErrorUnavailable: The stream was closed before anything was sent.
        """
        if self.closed or self._call is None:
            raise ErrorUnavailable("PublishAsync stream is closed", not_processed=True)
        items: List[PendingAck] = []
        pos, total = 0, len(requests)
        while pos < total and not self._answered:
            items.append(await self.send(requests[pos], encoded[pos], timeout))
            pos += 1
        room = self.room
        observe = self._observers.current is not None
        while pos < total:
            start = pos
            chunk: List[PendingAck] = []
            now = self._last_sent = self._clock()
            deadline = now + timeout
            try:
                while pos < total:
                    request = requests[pos]
                    if request.ackPolicy == wire.AckPolicy.NONE:
                        item = PendingAck(None, request.correlationId, 0.0)
                        item.resolve(None, None)
                    else:
                        item = PendingAck(self, request.correlationId, deadline)
                        if room is not None:
                            size = len(encoded[pos])
                            if room.try_take(size):
                                item.hold(size, room.epoch)
                            elif chunk:
                                break  # send those that found room, then wait
                            else:
                                item.hold(size, await room.take(size, deadline, _what(request)))
                        if observe:
                            item.observed = (request.stream, request.partition, time.monotonic())
                        self._register(item)
                        if deadline < self._sweep_at:
                            self._sweep_sooner(deadline)
                    chunk.append(item)
                    pos += 1
                await self._write(encoded[start:pos])
            except LiftbridgeError as exc:
                # A broken stream (nothing more goes out on it), or no room
                # in time (`chunk` is empty then): the rest is not sent.
                for item in chunk:
                    self.forget(item)
                    item.resolve(None, exc)
                items.extend(chunk)
                rest = exc if exc.not_processed else _not_sent(exc)
                for request in requests[pos:]:
                    item = PendingAck(None, request.correlationId, 0.0)
                    item.resolve(None, rest)
                    items.append(item)
                return items
            except BaseException:
                for item in chunk:
                    self.forget(item)
                raise
            items.extend(chunk)
        return items

    async def _write(self, encoded: Sequence[bytes]) -> None:
        """Write `encoded` requests in one piece, in turn with other senders.

        Raises:
            ErrorUnavailable: The stream ended or broke (`not_processed` when
                nothing went out).
        """
        turns = self._turns
        if not turns.try_take():
            await turns.take()
        try:
            if self.closed or self._call.ended:
                self.closed = True
                raise ErrorUnavailable(
                    "PublishAsync stream ended before the messages were sent", not_processed=True
                )
            await self._call.send_messages(encoded)
        except GRPCError as exc:
            self.closed = True
            if self._scope is not None:
                self._scope.cancel()
            raise from_grpc_error(exc) from None
        finally:
            turns.give_back()

    def idle_for(self, now: float) -> Optional[float]:
        """Seconds since the last send, or None while acks are awaited."""
        if self._pending or self._shared:
            return None
        if self._sent_unacked:
            self._sent_unacked = False
            self._last_sent = now
        return now - self._last_sent

    async def aclose(self) -> None:
        """End the stream; acks still awaited fail with ErrorUnavailable.

        When requests went out without an ack, the stream is half-closed
        first and the server given up to `CLOSE_GRACE` seconds to end it:
        Liftbridge drops the requests it has not read yet when the stream is
        reset, and nothing else would tell the publisher.
        """
        self.closed = True
        call = self._call
        if self._unconfirmed and call is not None and not call.ended and self._scope is not None:
            with anyio.move_on_after(CLOSE_GRACE):
                async with self._turns:  # no message half sent
                    self.draining = True
                    try:
                        await call.end()
                    except GRPCError:
                        pass  # the stream broke: nothing more to wait for
                    else:
                        await self._finished.wait()
        if self._scope is not None:
            self._scope.cancel()
