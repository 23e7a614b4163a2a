"""Subscriptions: the Subscribe request, one call, and the loop that resumes it.

A subscription reads from the partition leader (or an in-sync replica) over a
pooled connection. When the broker fails or leadership moves it resumes on
the new leader at the next unseen offset; `lbwire.error.subscribe_error`
decides what each way a call ends means.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator, List, Optional, Tuple

from . import wire
from ._cursors import MISSING_CURSOR_STARTS, missing_cursor_start
from ._log import LazyLogger
from ._resume import Resumption, fail_at
from ._reverse import ReverseSupport, reverse_messages
from .compression import decode_message
from .error import (
    ErrorChannelClosed,
    ErrorInvalidArgument,
    ErrorInvalidPartition,
    ErrorNotFound,
    ErrorPartitionPaused,
    ErrorSegmentClosed,
    LiftbridgeError,
)
from .error._decisions import malformed_reply, subscribe_error
from .grpc import GRPCError
from .serde import Deserializer, deserialize_message, resolve
from .types import K, Message, StartPosition, StopPosition, V
from .wire.messages import StreamedTails, decode_streamed

if TYPE_CHECKING:
    from ._cursors import CursorStore
    from ._pool import ConnectionRegistry
    from ._routing import Router
    from .activity import ActivityEvent
    from .grpc import UnaryStreamCall
    from .options import ClientOptions
    from .retry import RetryPolicy

__all__ = ["IN_LISTS", "CallWatch", "SubscribeMethods", "Subscriptions"]

logger = LazyLogger("lbwire")

_SUBSCRIBE = "/proto.API/Subscribe"
#: The most messages a subscription decodes and hands out in one list.
_MAX_LIST = 1024


class CallWatch:
    """The Subscribe call a subscription reads now (see `Subscriptions.messages`).

    Set once a call's handshake arrived, cleared when the subscription leaves
    the call. While it is set, the subscription is suspended at a list of
    that call's messages, and the call's later messages have higher offsets
    (none is skipped): when `call.has_message`, the subscription's next step
    returns the next list without waiting for the network.
    """

    __slots__ = ("call",)

    def __init__(self) -> None:
        self.call: Optional[UnaryStreamCall] = None

    def clear(self) -> None:
        """The subscription left the call."""
        self.call = None


class Subscriptions:
    """Opens subscriptions for one client.

    Args:
        router: Where calls go, and the metadata cache.
        connections: The pooled Subscribe connections.
        cursors: For StartPosition.RESUME.
        options: The client's options (the resume bounds and retry policy).
    """

    def __init__(
        self,
        router: Router,
        connections: ConnectionRegistry,
        cursors: CursorStore,
        *,
        options: ClientOptions,
    ) -> None:
        self.router = router
        self.connections = connections
        self.cursors = cursors
        self.options = options
        self.reverse_support = ReverseSupport(self)

    @property
    def resubscribe_wait_time(self) -> float:
        """How long (s) to try resuming before raising."""
        return self.options.resubscribe_wait_time

    @property
    def policy(self) -> RetryPolicy:
        """The pause between resume attempts, and the bound of a subscription's setup."""
        return self.options.retry_policy

    async def messages(
        self,
        request: wire.SubscribeRequest,
        setup_timeout: Optional[float],
        watch: Optional[CallWatch] = None,
    ) -> AsyncIterator[List[Message]]:
        """The subscription's messages in lists, resumed across broker failures.

        Each list holds what arrived together (every message the call held
        when the loop took them), never empty. Values come as received:
        `decode` undoes their compression. `watch`, if given, is kept up to
        date with the Subscribe call in use.
        """
        stream, partition = request.stream, request.partition
        explicit_stop_offset = request.stopPosition == wire.StopPosition.STOP_OFFSET
        decode = decode_streamed
        # What follows the timestamp of this partition's messages, decoded.
        tails = StreamedTails()
        resumption = self.resumption(stream, partition, setup_timeout)
        # Offset after the last delivered message. A resumed subscription can
        # repeat messages: a new leader whose high watermark still lags the old
        # leader's serves from its high watermark + 1, below the offset asked
        # for (v1.9.0 commitlog newReaderCommitted), so those are skipped.
        next_offset = -1
        while True:
            if next_offset >= 0:
                # Resume after the last delivered message, never before it;
                # set here rather than per message, off the hot path.
                request.startPosition = wire.StartPosition.OFFSET
                request.startOffset = next_offset
            # One Subscribe call, in this generator rather than one of its
            # own: every list passes one generator less.
            error: Optional[LiftbridgeError] = None
            handshake_done = False
            try:
                async with AsyncExitStack() as call_stack:
                    # The set-up (broker, connection, handshake) is bounded
                    # (see lbwire._resume): a frozen broker answers nothing,
                    # not even an error. The bound ends before the first
                    # yield: a cancel scope must not stay open across one.
                    with fail_at(resumption.setup_deadline()):
                        address = await self.router.subscription_broker(
                            stream, partition, request.readISRReplica
                        )
                        connection = self.connections.take_subscription(address)
                        call_stack.callback(self.connections.give_back, connection)
                        call = await call_stack.enter_async_context(
                            connection.channel.unary_stream(_SUBSCRIBE, request.encode())
                        )
                        # The server's first message is an empty handshake:
                        # the subscription exists. Setup errors come instead.
                        await call.receive()
                    handshake_done = True
                    if watch is not None:
                        watch.call = call
                        call_stack.callback(watch.clear)
                    resumption.set_up()
                    receive_many = call.receive_many
                    while True:
                        try:
                            # Lists of a bounded length: a call may hold
                            # its whole window (thousands of messages).
                            received = await receive_many(_MAX_LIST)
                        except StopAsyncIteration:
                            break
                        # Decoded all at once: the messages before a
                        # malformed one are delivered, then it raises.
                        batch, malformed = decode(received, Message, next_offset, tails)
                        if batch:
                            # The whole list is handed out before this
                            # generator runs again (or it is closed).
                            next_offset = batch[-1].offset + 1
                            yield batch
                        if malformed is not None:
                            raise malformed
                if not handshake_done:
                    return
                error = ErrorChannelClosed(f"Server ended the subscription to {resumption.where}")
            except TimeoutError:
                error = resumption.timed_out()
                if not resumption.set_up_once:
                    raise error from resumption.last_error
            except GRPCError as exc:
                error = await self.call_error(exc, request, handshake_done, explicit_stop_offset)
                if error is None:
                    return
            except wire.DecodeError as exc:
                raise malformed_reply(exc, method="Subscribe", broker=address) from None
            except LiftbridgeError as exc:
                error = exc  # from finding the broker
            await resumption.failed(error, next_offset)

    def resumption(self, stream: str, partition: int, setup_timeout: Optional[float]) -> Resumption:
        """The failure path of one subscription (see lbwire._resume)."""
        return Resumption(
            self.router,
            self.connections.observers,
            self.policy,
            self.resubscribe_wait_time,
            stream,
            partition,
            setup_timeout,
        )

    async def request(
        self,
        stream: str,
        *,
        partition: Optional[int],
        start_position: StartPosition,
        start_offset: Optional[int],
        start_timestamp: Optional[float],
        resume: bool,
        cursor_id: Optional[str],
        allow_isr: bool,
        stop_position: StopPosition,
        stop_offset: Optional[int],
        stop_timestamp: Optional[float],
        consumer: Optional[wire.Consumer],
        missing_cursor: Optional[StartPosition] = StartPosition.EARLIEST,
    ) -> wire.SubscribeRequest:
        """The SubscribeRequest for `LiftbridgeClient.subscribe`'s arguments."""
        partition = partition or 0
        if partition < 0:
            raise ErrorInvalidPartition(f"Partition must not be negative, not {partition}")
        if missing_cursor not in MISSING_CURSOR_STARTS:
            raise ErrorInvalidArgument(
                "missing_cursor must be StartPosition.EARLIEST, LATEST, NEW_ONLY or None, "
                f"not {missing_cursor!r}"
            )
        request = wire.SubscribeRequest(
            stream=stream,
            partition=partition,
            resume=resume,
            readISRReplica=allow_isr,
            consumer=consumer,
        )
        if start_offset is not None:
            request.startPosition = wire.StartPosition.OFFSET
            request.startOffset = start_offset
        elif start_timestamp is not None:
            request.startPosition = wire.StartPosition.TIMESTAMP
            request.startTimestamp = int(start_timestamp * 1_000_000_000)
        elif start_position == StartPosition.RESUME:
            if not cursor_id:
                raise ErrorInvalidArgument("cursor_id must be set for StartPosition.RESUME")
            resume_at = await self.cursors.resume_offset(stream, partition, cursor_id)
            if resume_at is not None:
                request.startPosition = wire.StartPosition.OFFSET
                request.startOffset = resume_at
            else:
                start = missing_cursor_start(stream, partition, cursor_id, missing_cursor)
                if start == StartPosition.EARLIEST:
                    # Offset 0, as gufo-liftbridge sends: the server starts
                    # at the oldest message it still has.
                    request.startPosition = wire.StartPosition.OFFSET
                    request.startOffset = 0
                else:
                    request.startPosition = wire.StartPosition(start)
        else:
            try:
                request.startPosition = wire.StartPosition(StartPosition(start_position))
            except ValueError:
                raise ErrorInvalidArgument(f"Unknown start position {start_position!r}") from None
        if stop_offset is not None:
            if stop_offset < 0:
                # The server reads -1 as "never stop".
                raise ErrorInvalidArgument(f"stop_offset must not be negative, not {stop_offset}")
            request.stopPosition = wire.StopPosition.STOP_OFFSET
            request.stopOffset = stop_offset
        elif stop_timestamp is not None:
            request.stopPosition = wire.StopPosition.STOP_TIMESTAMP
            request.stopTimestamp = int(stop_timestamp * 1_000_000_000)
        else:
            try:
                request.stopPosition = StopPosition(stop_position)
            except ValueError:
                raise ErrorInvalidArgument(f"Unknown stop position {stop_position!r}") from None
            if request.stopPosition in (StopPosition.STOP_OFFSET, StopPosition.STOP_TIMESTAMP):
                raise ErrorInvalidArgument(
                    f"{StopPosition(stop_position).name} needs stop_offset or stop_timestamp"
                )
        return request

    async def call_error(
        self,
        exc: GRPCError,
        request: wire.SubscribeRequest,
        handshake_done: bool,
        explicit_stop_offset: bool,
    ) -> Optional[LiftbridgeError]:
        """What a Subscribe call's error means (None: the subscription ended)."""
        stream, partition = request.stream, request.partition
        error = subscribe_error(
            exc,
            where=f"{stream!r}/{partition}",
            handshake_done=handshake_done,
            explicit_stop_offset=explicit_stop_offset,
        )
        if isinstance(error, ErrorNotFound):
            self.router.metadata.forget(stream)
        elif (
            isinstance(error, ErrorSegmentClosed)
            and not request.resume
            and await self.router.partition_paused(stream, partition)
        ):
            # A closed segment is the cleaner's doing, or a pause.
            return ErrorPartitionPaused(
                f"Partition {stream!r}/{partition} is paused; subscribe with "
                f"resume=True to resume it (server: {exc.message})",
                status=exc.status,
            )
        return error


def _reverse_stop(
    start_position: StartPosition,
    start_offset: Optional[int],
    start_timestamp: Optional[float],
    stop_position: StopPosition,
    stop_offset: Optional[int],
    stop_timestamp: Optional[float],
) -> Tuple[Optional[int], Optional[int]]:
    """A reverse subscription's client-side stop: (offset, timestamp in ns).

    The server refuses a stop below the start, so reverse stops are applied
    by lbwire; RESUME has no defined meaning backwards and is refused.
    """
    if start_position == StartPosition.RESUME and start_offset is None and start_timestamp is None:
        raise ErrorInvalidArgument(
            "StartPosition.RESUME cannot be combined with reverse=True: a cursor "
            "marks where forward reading goes on; use start_offset to read "
            "backwards from a position"
        )
    if stop_offset is not None:
        if stop_offset < 0:
            raise ErrorInvalidArgument(f"stop_offset must not be negative, not {stop_offset}")
        return stop_offset, None
    if stop_timestamp is not None:
        return None, int(stop_timestamp * 1_000_000_000)
    if stop_position != StopPosition.STOP_ON_CANCEL:
        raise ErrorInvalidArgument(
            f"With reverse=True use stop_offset or stop_timestamp (or no stop: "
            f"the subscription ends after the oldest message), not "
            f"{StopPosition(stop_position).name}"
        )
    return None, None


class SubscribeMethods:
    """`LiftbridgeClient.subscribe` (the client inherits it): checks and delegates."""

    _subscriptions: Subscriptions
    #: The client's options: `max_message_size` bounds decompressed values too.
    options: ClientOptions

    async def subscribe(
        self,
        stream: str,
        *,
        partition: Optional[int] = None,
        start_position: StartPosition = StartPosition.NEW_ONLY,
        start_offset: Optional[int] = None,
        start_timestamp: Optional[float] = None,
        resume: bool = False,
        cursor_id: Optional[str] = None,
        timeout: Optional[int] = None,
        allow_isr: bool = False,
        stop_position: StopPosition = StopPosition.STOP_ON_CANCEL,
        stop_offset: Optional[int] = None,
        stop_timestamp: Optional[float] = None,
        consumer: Optional[wire.Consumer] = None,
        reverse: bool = False,
        on_undecodable: str = "raise",
        missing_cursor: Optional[StartPosition] = StartPosition.EARLIEST,
        value_deserializer: Optional[Deserializer[V]] = None,
        key_deserializer: Optional[Deserializer[K]] = None,
    ) -> AsyncIterator[Message[V, K]]:
        """Read messages from a stream partition.

        Time budget: the set-up within `timeout` (default: the retry
        policy's `max_time`); each outage within `resubscribe_wait_time`;
        reading itself has no bound.

        Goes to the partition leader (or a random in-sync replica with
        `allow_isr`). When the broker fails or leadership moves, the
        subscription resumes on the new leader at the next unseen offset:
        no message is lost or repeated. With a stop position, the iterator
        ends after the stop message.

        Args:
            stream: Stream name.
            partition: Partition (0 if None).
            start_position: Where to start; RESUME reads the cursor `cursor_id`.
            start_offset: Start offset (implies OFFSET, as in gufo-liftbridge).
            start_timestamp: Start time in seconds since the epoch (implies TIMESTAMP).
            resume: Resume the partition if it is paused.
            cursor_id: Cursor to resume from with RESUME.
            timeout: Seconds allowed to set the subscription up (None: the
                retry policy's bound).
            allow_isr: Read from a random in-sync replica.
            stop_position: Where to stop (lbwire addition).
            stop_offset: Stop after this offset (implies STOP_OFFSET).
            stop_timestamp: Stop at this time, seconds since the epoch
                (implies STOP_TIMESTAMP).
            consumer: Consumer-group membership (used by `lbwire.consumer`).
            reverse: Read backwards: from the start position (the newest
                message by default; every start position works) down to the
                oldest message, after which the iterator ends (at once for an
                empty partition). `stop_offset` ends it after that offset
                (inclusive), `stop_timestamp` before the first message older
                than it; other stop positions and RESUME are refused with
                `ErrorInvalidArgument`. Needs a server on liftbridge-api v2
                (builds after v1.9.0): on a server that ignores `reverse`
                (v1.9.0), `ErrorReverseUnsupported` is raised, detected from
                what the server does, before any message is delivered out of
                order.

            missing_cursor: Where RESUME starts when the cursor `cursor_id`
                is missing: `StartPosition.EARLIEST` (default, as
                gufo-liftbridge: the whole partition again), `LATEST` or
                `NEW_ONLY`; None raises `ErrorCursorNotFound`. A warning is
                logged either way: Liftbridge may report a stored cursor as
                missing after a restart.
            on_undecodable: What to do with a message whose value cannot be
                decoded (its encoding header names an unknown method or lies,
                or the value expands beyond the client's `max_message_size`):
                `"raise"` (default) raises `ErrorUndecodableMessage`, which
                ends this subscription and carries the message's stream,
                partition, offset and raw message: subscribe again from
                `offset + 1` to skip it with no other message lost or
                repeated. `"raw"` delivers it as received (not decompressed,
                encoding header kept) with `message.decode_error` saying why
                and `message.undecoded` true, and goes on. A value or key
                its deserializer raises for is undecodable too.
            value_deserializer: Turns each value into what the messages
                carry (`lbwire.serde`), instead of the client's
                `value_deserializer`; `serde.BYTES` keeps bytes.
            key_deserializer: The same for keys (a message published
                without a key has the key b"").

        Yields:
            Messages, decompressed when they were published compressed,
            then deserialized.
            Decompression stops at `max_message_size` bytes of output, so a
            small value expanding enormously cannot exhaust memory.

        Raises:
            ValueError: RESUME without `cursor_id`, a negative partition or
                stop offset, or inconsistent positions.
            ErrorNotFound: No such stream or partition (or it was deleted).
            ErrorPartitionPaused: The partition is paused (and `resume` is
                false), or was paused while reading.
            ErrorUnavailable: The partition stayed unreachable for
                `resubscribe_wait_time`.
            ErrorReverseUnsupported: `reverse` on a server that ignores it.
            ErrorCursorNotFound: RESUME found no cursor and `missing_cursor`
                is None.
            ErrorUndecodableMessage: A message cannot be decoded (with
                `on_undecodable="raise"`).
        """
        if on_undecodable not in ("raise", "raw"):
            raise ErrorInvalidArgument(
                f'on_undecodable must be "raise" or "raw", not {on_undecodable!r}'
            )
        reverse_stop: Tuple[Optional[int], Optional[int]] = (None, None)
        if reverse:
            reverse_stop = _reverse_stop(
                start_position,
                start_offset,
                start_timestamp,
                stop_position,
                stop_offset,
                stop_timestamp,
            )
            stop_position, stop_offset, stop_timestamp = StopPosition.STOP_ON_CANCEL, None, None
        request = await self._subscriptions.request(
            stream,
            partition=partition,
            start_position=start_position,
            start_offset=start_offset,
            start_timestamp=start_timestamp,
            resume=resume,
            cursor_id=cursor_id,
            allow_isr=allow_isr,
            stop_position=stop_position,
            stop_offset=stop_offset,
            stop_timestamp=stop_timestamp,
            consumer=consumer,
            missing_cursor=missing_cursor,
        )
        setup_timeout = float(timeout) if timeout else None
        if reverse:
            lists = _one_by_one(
                reverse_messages(
                    self._subscriptions,
                    request,
                    setup_timeout,
                    stop_offset=reverse_stop[0],
                    stop_timestamp=reverse_stop[1],
                )
            )
        else:
            lists = self._subscribe_once(request, setup_timeout)
        options = self.options
        encoding_header = options.encoding_header
        max_size = options.max_message_size
        values = resolve("value_deserializer", value_deserializer, options.value_deserializer)
        keys = resolve("key_deserializer", key_deserializer, options.key_deserializer)
        deserialize = values is not None or keys is not None
        in_lists = False
        try:
            async for received in lists:
                if in_lists:
                    batch, error = _prepared(
                        received, encoding_header, max_size, on_undecodable, values, keys
                    )
                    if batch:
                        yield batch  # type: ignore[misc]  # see IN_LISTS
                    if error is not None:
                        raise error
                    continue
                # One at a time: this loop stays as lean as it can be.
                rest = iter(received)
                for message in rest:
                    headers = message.headers
                    if headers and encoding_header in headers:
                        message = decode_message(message, encoding_header, max_size, on_undecodable)
                    if deserialize:
                        message = deserialize_message(message, values, keys, on_undecodable)
                    if (yield message) is IN_LISTS:  # type: ignore[misc]  # V, K: the deserializers'
                        in_lists = True
                        batch, error = _prepared(
                            list(rest), encoding_header, max_size, on_undecodable, values, keys
                        )
                        if batch:
                            yield batch  # type: ignore[misc]  # see IN_LISTS
                        if error is not None:
                            raise error
                        break
        finally:
            # Closed here, not left to the garbage collector: without
            # reference counting (PyPy) a subscription closed at `yield`
            # would keep its call open until a collection, possibly after
            # the event loop ended.
            await lists.aclose()  # type: ignore[attr-defined]

    def activity(
        self,
        *,
        start_position: StartPosition = StartPosition.NEW_ONLY,
        start_offset: Optional[int] = None,
        start_timestamp: Optional[float] = None,
        cursor_id: Optional[str] = None,
        after_id: Optional[int] = None,
    ) -> AsyncGenerator[ActivityEvent, None]:
        """Read the server's activity stream as typed events, each once.

        Yields `lbwire.activity.ActivityEvent` subclasses (`StreamCreated`,
        `ConsumerJoined`, ..., `UnknownActivity`); see
        `lbwire.activity.activity_events` for the arguments and errors.
        """
        from .activity import activity_events

        # Not a generator itself, so that bad arguments raise at the call.
        return activity_events(
            self,  # type: ignore[arg-type]
            start_position=start_position,
            start_offset=start_offset,
            start_timestamp=start_timestamp,
            cursor_id=cursor_id,
            after_id=after_id,
        )

    def _subscribe_once(
        self,
        request: wire.SubscribeRequest,
        setup_timeout: Optional[float],
        watch: Optional[CallWatch] = None,
    ) -> AsyncIterator[List[Message]]:
        # A seam: tests/compat/test_api_surface.py replaces it on
        # LiftbridgeClient to capture the request without a server. It is the
        # whole (resuming) subscription in lists, despite the name kept for
        # that test.
        return self._subscriptions.messages(request, setup_timeout, watch)


#: Sent into a subscription (`asend`, after its first message): from then on
#: it yields lists, each of the messages that arrived together, instead of
#: one message at a time. What `lbwire.reader` does to read a subscription
#: without the cost of a generator step per message.
IN_LISTS: Any = object()


async def _one_by_one(messages: AsyncIterator[Message]) -> AsyncIterator[List[Message]]:
    """`messages` (a reverse subscription) as lists of one."""
    try:
        async for message in messages:
            yield [message]
    finally:
        await messages.aclose()  # type: ignore[attr-defined]


def _prepared(
    received: List[Message],
    encoding_header: str,
    max_size: int,
    on_undecodable: str,
    values: Optional[Deserializer[Any]],
    keys: Optional[Deserializer[Any]],
) -> Tuple[List[Message], Optional[LiftbridgeError]]:
    """`received` decompressed and deserialized, up to the first message that cannot be.

    Returns those messages and the error of that message (None: all were).
    """
    deserialize = values is not None or keys is not None
    if not deserialize:
        for message in received:
            headers = message.headers
            if headers and encoding_header in headers:
                break
        else:
            return received, None  # nothing to undo: the list as it came
    prepared: List[Message] = []
    try:
        for message in received:
            headers = message.headers
            if headers and encoding_header in headers:
                message = decode_message(message, encoding_header, max_size, on_undecodable)
            if deserialize:
                message = deserialize_message(message, values, keys, on_undecodable)
            prepared.append(message)
    except LiftbridgeError as error:
        return prepared, error
    return prepared, None
