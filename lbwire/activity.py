"""The activity stream: the server's own log of stream and consumer-group changes.

With ``activity.stream.enabled: true`` in its configuration, Liftbridge
publishes one ``ActivityStreamEvent`` to its single-partition ``__activity``
stream for every stream created, deleted, paused, resumed or set read-only and
for every consumer joining or leaving a group. :func:`activity_events` (also
``LiftbridgeClient.activity``) reads it as typed, immutable events.

One class per kind, each a frozen dataclass below :class:`ActivityEvent` with
the op's fields (snake_case, lists as tuples) and a class attribute ``op``
(:class:`ActivityStreamOp`): dispatch with ``isinstance`` (or ``match``). Every
event carries ``offset`` (its position in ``__activity``, to resume from),
``id`` (the server's event id) and ``timestamp`` (when the broker stored it,
ns since the epoch).

De-duplication. The server publishes each event at least once: an activity
manager that fails over after publishing an event but before recording that
it did makes its successor publish the event again. Its documentation gives
every event a unique, strictly increasing id and keeps the stream in the order
the changes were applied, so a repeated event always has an id at or below the
highest id already seen. The whole de-duplication memory is therefore that
one number: bounded, and exact for what the server documents. (The server
lets any client publish into ``__activity``; an event published there with an
id above the server's would hide the server's next events. Do not.)

Kinds this version does not know (a newer server's) are yielded as
:class:`UnknownActivity` with the op number and the raw bytes, not skipped:
see that class for why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncGenerator, ClassVar, Optional, Tuple, Type, cast

import anyio

from . import wire
from ._log import LazyLogger
from .error import (
    ErrorChannelClosed,
    ErrorInvalidArgument,
    ErrorNoMetadataLeader,
    ErrorNotFound,
)
from .retry import Backoff
from .types import Message, StartPosition
from .wire import ActivityStreamOp

if TYPE_CHECKING:
    from .client import LiftbridgeClient

__all__ = [
    "ACTIVITY_STREAM",
    "ActivityEvent",
    "ActivityStreamOp",
    "ConsumerJoined",
    "ConsumerLeft",
    "StreamCreated",
    "StreamDeleted",
    "StreamPaused",
    "StreamReadonlySet",
    "StreamResumed",
    "UnknownActivity",
    "activity_events",
    "decode_activity",
]

logger = LazyLogger("lbwire.activity")

#: The server's activity stream (one partition, 0).
ACTIVITY_STREAM = "__activity"

_NOT_ENABLED = (
    "The server has no activity stream ({stream!r}): start it with "
    "'activity.stream.enabled: true' in its configuration. A server that was just "
    "(re)started lists its streams only after a moment; "
    "`await client.wait_for_stream({stream!r})` waits for it. Server: {error}"
)


@dataclass(frozen=True)
class ActivityEvent:
    """One event of the activity stream (the base of every kind).

    Attributes:
        offset: Its offset in ``__activity``; resume after it with
            ``start_offset=offset + 1, after_id=id``.
        id: The server's event id: unique and strictly increasing (a Raft
            log index), the key of de-duplication.
        timestamp: When the broker stored the event, ns since the epoch.
    """

    offset: int
    id: int
    timestamp: int


@dataclass(frozen=True)
class StreamCreated(ActivityEvent):
    """A stream was created (also the server's own ``__activity`` and ``__cursors``).

    Attributes:
        stream: Stream name.
        partitions: The partitions created.
    """

    op: ClassVar[ActivityStreamOp] = ActivityStreamOp.CREATE_STREAM
    stream: str
    partitions: Tuple[int, ...]


@dataclass(frozen=True)
class StreamDeleted(ActivityEvent):
    """A stream was deleted.

    Attributes:
        stream: Stream name.
    """

    op: ClassVar[ActivityStreamOp] = ActivityStreamOp.DELETE_STREAM
    stream: str


@dataclass(frozen=True)
class StreamPaused(ActivityEvent):
    """Partitions of a stream were paused.

    Attributes:
        stream: Stream name.
        partitions: The partitions paused.
        resume_all: A publish to any of them resumes all (``resume_all`` of
            ``pause_stream``), not only the one published to.
    """

    op: ClassVar[ActivityStreamOp] = ActivityStreamOp.PAUSE_STREAM
    stream: str
    partitions: Tuple[int, ...]
    resume_all: bool


@dataclass(frozen=True)
class StreamResumed(ActivityEvent):
    """Paused partitions of a stream were resumed (a publish to them does that).

    Attributes:
        stream: Stream name.
        partitions: The partitions resumed.
    """

    op: ClassVar[ActivityStreamOp] = ActivityStreamOp.RESUME_STREAM
    stream: str
    partitions: Tuple[int, ...]


@dataclass(frozen=True)
class StreamReadonlySet(ActivityEvent):
    """The read-only flag of partitions of a stream was set.

    Attributes:
        stream: Stream name.
        partitions: The partitions concerned.
        readonly: True: now read-only; False: writable again.
    """

    op: ClassVar[ActivityStreamOp] = ActivityStreamOp.SET_STREAM_READONLY
    stream: str
    partitions: Tuple[int, ...]
    readonly: bool


@dataclass(frozen=True)
class ConsumerJoined(ActivityEvent):
    """A consumer joined a consumer group (the first one creates the group).

    Attributes:
        group_id: Group id.
        consumer_id: Consumer id.
        streams: The streams the consumer reads.
    """

    op: ClassVar[ActivityStreamOp] = ActivityStreamOp.JOIN_CONSUMER_GROUP
    group_id: str
    consumer_id: str
    streams: Tuple[str, ...]


@dataclass(frozen=True)
class ConsumerLeft(ActivityEvent):
    """A consumer left a consumer group, or was removed from it.

    Attributes:
        group_id: Group id.
        consumer_id: Consumer id.
        expired: The coordinator removed it because it stopped polling.
    """

    op: ClassVar[ActivityStreamOp] = ActivityStreamOp.LEAVE_CONSUMER_GROUP
    group_id: str
    consumer_id: str
    expired: bool


@dataclass(frozen=True)
class UnknownActivity(ActivityEvent):
    """An event of a kind this version of lbwire does not know (a newer server).

    Yielded rather than skipped: an audit trail should show that something
    happened, the id still takes part in de-duplication, and code that only
    wants the known kinds filters with ``isinstance`` anyway.

    Attributes:
        op: The event's op number.
        data: The encoded ``ActivityStreamEvent``, for a newer decoder.
    """

    op: int
    data: bytes


def decode_activity(message: Message) -> Optional[ActivityEvent]:
    """Turn a message read from ``__activity`` into its typed event.

    A known op whose details are missing gets the protobuf defaults (empty
    names, no partitions), as a protobuf decoder would give.

    Returns:
        The event, or None when the value is not an ``ActivityStreamEvent``
        (the server never writes such a value; another client could publish
        one into ``__activity``).
    """
    try:
        event = wire.ActivityStreamEvent.decode(message.value)
    except wire.DecodeError as exc:
        logger.warning("Skipping %s offset %d: %s", ACTIVITY_STREAM, message.offset, exc)
        return None
    base = (message.offset, event.id, message.timestamp)
    op = event.op
    if op == ActivityStreamOp.CREATE_STREAM:
        created = event.createStreamOp or wire.CreateStreamOp()
        return StreamCreated(*base, created.stream, tuple(created.partitions))
    if op == ActivityStreamOp.DELETE_STREAM:
        deleted = event.deleteStreamOp or wire.DeleteStreamOp()
        return StreamDeleted(*base, deleted.stream)
    if op == ActivityStreamOp.PAUSE_STREAM:
        paused = event.pauseStreamOp or wire.PauseStreamOp()
        return StreamPaused(*base, paused.stream, tuple(paused.partitions), paused.resumeAll)
    if op == ActivityStreamOp.RESUME_STREAM:
        resumed = event.resumeStreamOp or wire.ResumeStreamOp()
        return StreamResumed(*base, resumed.stream, tuple(resumed.partitions))
    if op == ActivityStreamOp.SET_STREAM_READONLY:
        flag = event.setStreamReadonlyOp or wire.SetStreamReadonlyOp()
        return StreamReadonlySet(*base, flag.stream, tuple(flag.partitions), flag.readonly)
    if op == ActivityStreamOp.JOIN_CONSUMER_GROUP:
        join = event.joinConsumerGroupOp or wire.JoinConsumerGroupOp()
        return ConsumerJoined(*base, join.groupId, join.consumerId, tuple(join.streams))
    if op == ActivityStreamOp.LEAVE_CONSUMER_GROUP:
        leave = event.leaveConsumerGroupOp or wire.LeaveConsumerGroupOp()
        return ConsumerLeft(*base, leave.groupId, leave.consumerId, leave.expired)
    return UnknownActivity(*base, int(op), bytes(message.value))


#: Errors after which the activity subscription is opened again at the next
#: offset: a restarted server says NotFound for its streams until it has
#: loaded them, and ends subscriptions it cannot serve any more.
_REOPEN_ON: Tuple[Type[Exception], ...] = (
    ErrorNotFound,
    ErrorChannelClosed,
    ErrorNoMetadataLeader,
)


def activity_events(
    client: LiftbridgeClient,
    *,
    start_position: StartPosition = StartPosition.NEW_ONLY,
    start_offset: Optional[int] = None,
    start_timestamp: Optional[float] = None,
    cursor_id: Optional[str] = None,
    after_id: Optional[int] = None,
) -> AsyncGenerator[ActivityEvent, None]:
    """Read the activity stream as typed events, each once (see the module doc).

    The arguments are checked at once; the start position is taken when
    iteration begins. The iterator runs until it is closed (``aclose()``, or
    leaving ``async for`` early inside ``aclosing``). When its broker fails
    or restarts it subscribes again after the last event it read, for up to
    the client's ``resubscribe_wait_time`` per outage: it neither repeats nor
    skips an event. Messages in ``__activity`` that are not activity events
    (only another client can publish them) are skipped with a warning.

    Args:
        client: An open client.
        start_position: NEW_ONLY (default: events from now on), EARLIEST,
            LATEST (the newest event, then later ones), OFFSET (with
            ``start_offset``), TIMESTAMP (with ``start_timestamp``) or RESUME
            (from the cursor ``cursor_id`` on ``__activity`` partition 0).
        start_offset: Start at this offset of ``__activity`` (implies OFFSET).
        start_timestamp: Start at this time, seconds since the epoch (implies
            TIMESTAMP).
        cursor_id: The cursor RESUME reads.
        after_id: Skip events whose id is at or below it: pass the id of the
            last event processed, with ``start_offset`` = its offset + 1, so
            that a repeat the server published later (after a fail-over) is
            not yielded again either.

    Returns:
        An async generator of :class:`ActivityEvent` subclasses.

    Raises:
        ErrorInvalidArgument: A negative offset or id, a position without the
            value it needs, or an unknown position (raised by this call).
        ErrorNotFound: The server has no activity stream (from iteration).
        ErrorUnavailable: The server stayed unreachable (from iteration).
    """
    if start_offset is not None and start_offset < 0:
        raise ErrorInvalidArgument(f"start_offset must not be negative, not {start_offset}")
    if after_id is not None and after_id < 0:
        raise ErrorInvalidArgument(f"after_id must not be negative, not {after_id}")
    try:
        position = StartPosition(start_position)
    except ValueError:
        raise ErrorInvalidArgument(f"Unknown start position {start_position!r}") from None
    if start_offset is not None:
        position = StartPosition.OFFSET
    elif start_timestamp is not None:
        position = StartPosition.TIMESTAMP
    elif position == StartPosition.OFFSET:
        raise ErrorInvalidArgument("StartPosition.OFFSET needs start_offset")
    elif position == StartPosition.TIMESTAMP:
        raise ErrorInvalidArgument("StartPosition.TIMESTAMP needs start_timestamp")
    elif position == StartPosition.RESUME and not cursor_id:
        raise ErrorInvalidArgument("StartPosition.RESUME needs cursor_id")
    return _events(
        client,
        position,
        start_offset,
        start_timestamp,
        cursor_id,
        -1 if after_id is None else after_id,
    )


async def _start_offset(client: LiftbridgeClient, position: StartPosition) -> Optional[int]:
    """The offset NEW_ONLY and LATEST stand for now (None for the other positions).

    Fixed before subscribing, so that reopening the subscription before the
    first event arrives neither skips events published meanwhile nor moves
    the start. Also where a server without activity stream is found out.
    """
    try:
        partition = await client.get_partition_metadata(ACTIVITY_STREAM, 0)
    except ErrorNotFound as exc:
        raise ErrorNotFound(_NOT_ENABLED.format(stream=ACTIVITY_STREAM, error=exc)) from None
    # The server's own rules: LATEST is the newest offset, NEW_ONLY the next.
    if position == StartPosition.NEW_ONLY:
        return partition.newest_offset + 1
    if position == StartPosition.LATEST:
        return max(partition.newest_offset, 0)
    return None


async def _events(
    client: LiftbridgeClient,
    position: StartPosition,
    start_offset: Optional[int],
    start_timestamp: Optional[float],
    cursor_id: Optional[str],
    last_id: int,
) -> AsyncGenerator[ActivityEvent, None]:
    # Offset of the next event to read, once known: where a reopened
    # subscription starts.
    next_offset = await _start_offset(client, position)
    if start_offset is not None:
        next_offset = start_offset
    # The pauses of the outage under way (None: none is): the engine's
    # backoff, within resubscribe_wait_time from the outage's first failure.
    # The subscription inside resumes on its own first (and reports it).
    outage: Optional[Backoff] = None
    while True:
        if next_offset is None:
            subscription = client.subscribe(
                ACTIVITY_STREAM,
                start_position=position,
                start_timestamp=start_timestamp,
                cursor_id=cursor_id,
            )
        else:
            subscription = client.subscribe(ACTIVITY_STREAM, start_offset=next_offset)
        try:
            async for message in subscription:
                outage = None
                # A new subscription may start below the offset asked for (a
                # new leader serves from its own high watermark + 1).
                if next_offset is not None and message.offset < next_offset:
                    continue
                next_offset = message.offset + 1
                event = decode_activity(message)
                if event is None:
                    continue
                if event.id <= last_id:
                    logger.debug(
                        "Skipping repeated activity event %d at offset %d", event.id, event.offset
                    )
                    continue
                last_id = event.id
                yield event
            return  # only a stop position ends a subscription, and none is set
        except _REOPEN_ON as exc:
            if outage is None:
                deadline = anyio.current_time() + client.resubscribe_wait_time
                outage = Backoff(client.retry_policy, deadline)
            logger.info("Activity subscription interrupted (%s); reopening it", exc)
            if not await outage.wait():
                raise
        finally:
            # `subscribe` is an async generator typed as an iterator: close
            # its call now rather than when it is collected.
            await cast("AsyncGenerator[Message, None]", subscription).aclose()
