"""Consumer groups: members share a group's partitions and its committed positions.

A `Consumer` joins a group for a set of streams, polls the group coordinator
for its partition assignments (the poll is also its heartbeat), subscribes to
the partitions it is assigned, and commits what it processed as cursors with
the id `__group:<group id>` holding the last processed offset, as go-liftbridge
does, so Go and Python members of one group interoperate. When the group's
epoch changes (a member joined or left, the coordinator moved) it fetches the
new assignment; when the coordinator stays silent past its timeout it reports
it, so that a majority of members triggers a fail-over.

Delivery is at least once: a message whose processing was not committed
before a reassignment is delivered again to the partition's next owner.

Partitions are named by `GroupPartition` (stream, partition), in the
`on_assigned` and `on_revoked` callbacks, in `lag()` and as the keys of
`commit(offsets)`, `seek`, `pause` and `resume`; a member of a single stream
may give the partition number alone.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections import deque
from enum import IntEnum
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Generic,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    Type,
    Union,
    cast,
)

import anyio

from . import wire
from ._lifecycle import close_task_group, guarded, open_task_group
from ._log import LazyLogger
from .error import (
    ErrorAlreadyMember,
    ErrorChannelClosed,
    ErrorDeadlineExceeded,
    ErrorInvalidArgument,
    ErrorInvalidPartition,
    ErrorMemberInactive,
    ErrorNotAssigned,
    ErrorNotCoordinator,
    ErrorNotFound,
    ErrorNotMember,
    ErrorStaleEpoch,
    ErrorUnavailable,
    LiftbridgeError,
)
from .retry import Backoff
from .serde import Deserializer, check_callable
from .types import K, Message, StartPosition, V

if TYPE_CHECKING:
    # Annotations only: anyio loads anyio.streams.memory when the first
    # consumer makes its stream, not with this module.
    from typing import Protocol

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._cursors import CursorStore
    from .metadata import MetadataCache
    from .reader import MessageBatches
    from .retry import RetryPolicy
    from .types import PartitionMetadata

    class GroupClient(Protocol):
        """What a consumer needs of `LiftbridgeClient` (no import of it: no cycle)."""

        @property
        def cursor_store(self) -> CursorStore: ...

        @property
        def retry_policy(self) -> RetryPolicy: ...

        @property
        def cached_metadata(self) -> MetadataCache: ...

        async def join_consumer_group(
            self, group_id: str, consumer_id: str, streams: Sequence[str]
        ) -> wire.JoinConsumerGroupResponse: ...

        async def leave_consumer_group(self, group_id: str, consumer_id: str) -> None: ...

        async def fetch_consumer_group_assignments(
            self, group_id: str, consumer_id: str, epoch: int, *, coordinator: str
        ) -> wire.FetchConsumerGroupAssignmentsResponse: ...

        async def fetch_consumer_group_metadata(
            self, group_id: str
        ) -> Optional[wire.ConsumerGroupMetadata]: ...

        async def get_partition_metadata(
            self, stream: str, partition: int, wait_for_stream: bool = ...
        ) -> PartitionMetadata: ...

        async def report_consumer_group_coordinator(
            self, group_id: str, consumer_id: str, coordinator: str, epoch: int
        ) -> None: ...

        def subscribe(
            self,
            stream: str,
            *,
            partition: Optional[int] = ...,
            start_position: StartPosition = ...,
            start_offset: Optional[int] = ...,
            consumer: Optional[wire.Consumer] = ...,
            value_deserializer: Optional[Deserializer[Any]] = ...,
            key_deserializer: Optional[Deserializer[Any]] = ...,
        ) -> AsyncIterator[Message]: ...


__all__ = ["AutoOffset", "Consumer", "GroupPartition", "PartitionKey", "PartitionsCallback"]

logger = LazyLogger("lbwire.consumer")


class GroupPartition(NamedTuple):
    """One partition of a member's streams: a `(stream, partition)` tuple with names."""

    stream: str
    partition: int


_Key = Tuple[str, int]

#: An `on_assigned` or `on_revoked` callback: awaited with the partitions
#: that came or went, a sorted list of `GroupPartition`.
PartitionsCallback = Callable[[List[GroupPartition]], Awaitable[None]]

#: How a partition is named in `commit(offsets)`, `seek`, `pause` and
#: `resume`: `(stream, partition)`, or the partition number alone when the
#: member reads one stream.
PartitionKey = Union[int, Tuple[str, int]]


class AutoOffset(IntEnum):
    """Where a member starts a partition the group has no committed position for.

    Attributes:
        NEW_ONLY: After the newest message (only new messages).
        EARLIEST: At the oldest retained message.
        LATEST: At the newest message.
        NONE: Raise `ErrorNotFound` from the iterator.
    """

    NEW_ONLY = 0
    EARLIEST = 1
    LATEST = 2
    NONE = 3


_AUTO_START = {
    AutoOffset.NEW_ONLY: StartPosition.NEW_ONLY,
    AutoOffset.EARLIEST: StartPosition.EARLIEST,
    AutoOffset.LATEST: StartPosition.LATEST,
}


class Consumer(Generic[V, K]):
    """A member of a consumer group; iterate it for the messages of its partitions.

    Create it with `LiftbridgeClient.consumer(...)` and use it as an async
    context manager inside the client's block::

        async with client.consumer("billing", ["orders"]) as consumer:
            async for msg in consumer:
                handle(msg)

    A message counts as processed when the iterator is asked for the next
    one; processed positions are committed every `auto_checkpoint_interval`
    seconds, on `commit()` (or `checkpoint()`), when a partition is taken
    away, and on exit (before the member leaves the group).

    Rebalance callbacks: `on_assigned(partitions)` is awaited after the
    member starts reading partitions it was given (its first assignment
    included), `on_revoked(partitions)` when it learns that partitions were
    taken away, after it stopped handing out their messages and before its
    hand-over commit. `partitions` is a sorted list of `GroupPartition`.
    The coordinator reassigns at once, but a member learns of it only at its
    next poll (every `fetch_assignments_fraction` of the group's consumer
    timeout), so `on_revoked` comes late: the new owner may already have
    started from the committed position, and everything the old member
    processed after that commit is delivered to the new owner again. A
    commit made in `on_revoked` (`commit(offsets)` accepts the partitions
    being revoked) narrows that window; it cannot close it. A member that
    dies commits nothing more: its partitions go to the others once the
    server's consumer timeout passes, from the last committed position.
    The callbacks run in the member's polling task, which is also its
    heartbeat, so they must finish well within the consumer timeout. An
    exception a callback raises is logged (with its traceback) and the
    member goes on, as with aiokafka's rebalance listener: a rebalance is
    not undone by a failing callback. What is not an `Exception` (such as
    `SystemExit`, or a `BaseException` of the program's own) ends the member
    instead, and comes out of the block as itself. No callback runs when the
    block exits.

    `value_deserializer` and `key_deserializer` replace the client's (see
    `lbwire.serde`); a message one of them refuses ends its partition's
    subscription with `ErrorUndecodableMessage`, raised by the iterator.

    Raises (from the iterator):
        ErrorNotFound: With AutoOffset.NONE, a partition has no committed position.
        LiftbridgeError: A partition's subscription failed for good.

    Raises (from the block, when one of the member's tasks failed; the block
    is cancelled first):
        ErrorTaskFailed: A task failed with an error of lbwire's own that is
            not a `LiftbridgeError`; the message names the member, its
            group and streams, and the task, and `__cause__` is the error.
        LiftbridgeError: A task's own `LiftbridgeError`, as it is.
        BaseException: What a callback or a deserializer raised that is not
            an `Exception`, as it is.

    An error the block raises itself comes out as itself, never wrapped in an
    ExceptionGroup; a task's failure at the same time is then logged. When
    several tasks failed, one exception comes out, by that order (what is not
    an `Exception` first, then a `LiftbridgeError`, then the first other);
    the others are logged. A cancellation from outside stays a cancellation.
    """

    def __init__(
        self,
        client: GroupClient,
        group_id: str,
        streams: Sequence[str],
        *,
        consumer_id: Optional[str] = None,
        auto_offset: AutoOffset = AutoOffset.NEW_ONLY,
        auto_checkpoint_interval: Optional[float] = 5.0,
        fetch_assignments_fraction: float = 0.4,
        max_buffered: int = 256,
        on_assigned: Optional[PartitionsCallback] = None,
        on_revoked: Optional[PartitionsCallback] = None,
        value_deserializer: Optional[Deserializer[V]] = None,
        key_deserializer: Optional[Deserializer[K]] = None,
    ) -> None:
        if not group_id:
            raise ErrorInvalidArgument("Consumer group id must not be empty")
        if isinstance(streams, str):
            streams = [streams]
        if not streams:
            raise ErrorInvalidArgument("A consumer needs at least one stream")
        if not 0 < fetch_assignments_fraction < 1:
            raise ErrorInvalidArgument("fetch_assignments_fraction must be between 0 and 1")
        self.client = client
        self.group_id = group_id
        self.streams = list(streams)
        self.consumer_id = consumer_id or uuid.uuid4().hex
        self.auto_offset = AutoOffset(auto_offset)
        self.auto_checkpoint_interval = auto_checkpoint_interval
        self._fraction = fetch_assignments_fraction
        self._max_buffered = max_buffered
        self.epoch = 0
        self.coordinator = ""
        self._consumer_timeout = 15.0
        self._coordinator_timeout = 15.0
        self._tasks: Dict[_Key, anyio.CancelScope] = {}
        self._processed: Dict[_Key, int] = {}
        #: What the cursor of each partition holds, as far as this member
        #: knows: its own last commit, or the value loaded when it started.
        self._committed: Dict[_Key, int] = {}
        #: The newest high watermark this member learned of each partition
        #: it reads: from `lag()`, and from each received message, whose
        #: offset the high watermark is at least.
        self._high: Dict[_Key, int] = {}
        #: The partitions of the coordinator's last answer, and when it came
        #: (see `checkpoint`).
        self._assignment: Set[_Key] = set()
        self._last_answer = -math.inf
        self._last: Optional[_Key] = None
        self._last_offset = -1
        #: The batch handed out last: partition to its last offset.
        self._batch: Dict[_Key, int] = {}
        self._batch_error: Optional[LiftbridgeError] = None
        self._task_group: Optional[TaskGroup] = None
        self._send: Optional[MemoryObjectSendStream[object]] = None
        self._receive: Optional[MemoryObjectReceiveStream[object]] = None
        self._assigned = anyio.Event()
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        #: Partitions whose `on_revoked` is running: `commit(offsets)` may
        #: still commit them (with the hand-over's check).
        self._revoking: Set[_Key] = set()
        #: Paused partitions: their readers wait on the event, and messages
        #: already buffered wait in `_held` until `resume`.
        self._paused: Dict[_Key, anyio.Event] = {}
        # (Any: the member's deserializers decide, see V and K.)
        self._held: Dict[_Key, Deque[Tuple[anyio.CancelScope, Message[Any, Any]]]] = {}
        check_callable("value_deserializer", value_deserializer)
        check_callable("key_deserializer", key_deserializer)
        self._deserializers = {
            "value_deserializer": value_deserializer,
            "key_deserializer": key_deserializer,
        }

    @property
    def cursor_id(self) -> str:
        """The cursor id the group's committed positions are stored under."""
        return f"__group:{self.group_id}"

    @property
    def assignments(self) -> Dict[str, List[int]]:
        """The partitions this member currently reads, by stream."""
        out: Dict[str, List[int]] = {}
        for stream, partition in sorted(self._tasks):
            out.setdefault(stream, []).append(partition)
        return out

    async def wait_assigned(self) -> None:
        """Wait until the coordinator has answered this member at least once.

        Also returns if the member failed for good; iterating then raises why.
        """
        await self._assigned.wait()

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> Consumer[V, K]:
        """Join the group and start polling for assignments."""
        await self._join()
        self._send, self._receive = anyio.create_memory_object_stream[object](self._max_buffered)
        tg = self._task_group = await open_task_group()
        tg.start_soon(guarded, f"The assignment loop of {self._who}", self._assignment_loop)
        if self.auto_checkpoint_interval:
            tg.start_soon(
                guarded,
                f"The checkpoint loop of {self._who}",
                self._checkpoint_loop,
                self.auto_checkpoint_interval,
            )
        return self

    @property
    def _who(self) -> str:
        """The member, for messages: its id, its group and its streams."""
        streams = ", ".join(repr(stream) for stream in self.streams)
        return f"member {self.consumer_id} of group {self.group_id!r} (streams {streams})"

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> Optional[bool]:
        """Commit what was processed, leave the group, and end every task.

        An exception of the block comes out as itself (see `lbwire._lifecycle`).
        A failure of one of the member's own tasks ends the block (it is
        cancelled) and comes out here, not wrapped in an ExceptionGroup (see
        the class).
        """
        tg, self._task_group = self._task_group, None
        if tg is not None:
            # Stop polling and reading first, so nothing reassigns meanwhile.
            tg.cancel_scope.cancel()
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                self._mark_last_processed()
                try:
                    await self.checkpoint()
                except LiftbridgeError as error:
                    logger.warning("Final checkpoint of group %s failed: %s", self.group_id, error)
                try:
                    await self.client.leave_consumer_group(self.group_id, self.consumer_id)
                except LiftbridgeError as error:
                    logger.info("Leaving group %s failed: %s", self.group_id, error)
        finally:
            try:
                if tg is not None:
                    await close_task_group(tg, exc_type, exc, traceback, owner=self._who)
            finally:
                # Also when a task's error comes out of the group above.
                if self._send is not None:
                    self._send.close()
                if self._receive is not None:
                    self._receive.close()
        return None

    def __aiter__(self) -> Consumer[V, K]:
        return self

    async def __anext__(self) -> Message[V, K]:
        """The next message from any assigned partition."""
        if self._receive is None:
            raise RuntimeError("Use the consumer inside 'async with client.consumer(...)'")
        self._mark_last_processed()
        while True:
            held = self._take_held()
            if held is not None:
                scope, msg = held
            else:
                try:
                    item = await self._receive.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    raise StopAsyncIteration from None
                if isinstance(item, BaseException):
                    raise item
                scope, msg = cast(Tuple[anyio.CancelScope, Message[Any, Any]], item)
            key = (msg.stream, msg.partition)
            if self._tasks.get(key) is not scope:
                # Read before its partition was taken away (the new owner
                # has it) or before a seek.
                continue
            if key in self._paused:
                self._held.setdefault(key, deque()).append((scope, msg))
                continue
            break
        self._last = key
        self._last_offset = msg.offset
        return msg

    def _take_held(self) -> Optional[Tuple[anyio.CancelScope, Message[Any, Any]]]:
        """A message buffered while its partition was paused, now resumed."""
        for key, held in self._held.items():
            if key not in self._paused:
                item = held.popleft()
                if not held:
                    del self._held[key]
                return item
        return None

    def _mark_last_processed(self) -> None:
        if self._last is not None:
            self._processed[self._last] = self._last_offset
            self._last = None
        if self._batch:
            self._processed.update(self._batch)
            self._batch = {}

    def batches(self, max_count: int, max_wait: float) -> MessageBatches:
        """Iterate the messages in lists of at most `max_count` (async for).

        A batch merges the member's partitions, in order within each. It is
        built from messages that have already arrived: once the first is
        there, it waits at most `max_wait` seconds for more (0: not at all).
        Its messages count as processed when the next batch is asked for.

        Raises:
            ValueError: `max_count` below 1 or a negative `max_wait`.
        """
        from .reader import MessageBatches

        return MessageBatches(self, max_count, max_wait)

    async def next_batch(self, max_count: int, max_wait: float) -> List[Message[V, K]]:
        """One batch (see `batches`); raises StopAsyncIteration when the member ended."""
        if self._receive is None:
            raise RuntimeError("Use the consumer inside 'async with client.consumer(...)'")
        self._mark_last_processed()
        if self._batch_error is not None:
            error, self._batch_error = self._batch_error, None
            raise error
        batch: List[Message[V, K]] = []
        deadline: Optional[float] = None
        while len(batch) < max_count:
            if batch and deadline is None:
                deadline = anyio.current_time() + max_wait
            held = self._take_held()
            try:
                item = held if held is not None else await self._receive_until(deadline)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if batch:
                    break
                raise StopAsyncIteration from None
            if item is None:
                break  # max_wait passed
            if isinstance(item, LiftbridgeError):
                if not batch:
                    raise item
                self._batch_error = item  # after the messages that came before it
                break
            scope, msg = cast(Tuple[anyio.CancelScope, Message[Any, Any]], item)
            key = (msg.stream, msg.partition)
            if self._tasks.get(key) is not scope:
                continue  # a partition taken away, or sought
            if key in self._paused:
                self._held.setdefault(key, deque()).append((scope, msg))
                continue
            batch.append(msg)
            self._batch[key] = msg.offset
        return batch

    async def _receive_until(self, deadline: Optional[float]) -> object:
        """The next item of the partitions' stream; None when `deadline` passed first."""
        assert self._receive is not None
        try:
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            pass
        if deadline is None:
            return await self._receive.receive()
        with anyio.CancelScope(deadline=deadline):  # (no move_on_at in anyio for 3.9)
            return await self._receive.receive()
        return None

    # ------------------------------------------------------------------ commits

    async def commit(self, offsets: Optional[Mapping[PartitionKey, int]] = None) -> None:
        """Commit what was processed, or the positions given, for partitions still ours.

        Args:
            offsets: Partition (see `PartitionKey`) to the next offset to read:
                every message before it counts as processed, and the group's
                cursor stores `offset - 1` (go-liftbridge's last-processed
                convention; 0 stores nothing). Only these partitions are
                committed. None: what `checkpoint()` commits. A later message
                handed out by the iterator moves the processed position on
                as usual.

        Inside `on_revoked`, the partitions being revoked may be given: each
        is committed unless its cursor moved since this member's last commit
        (its new owner's commit is left alone); see `checkpoint` for the
        check that guards the others.

        Raises:
            ValueError: A partition not assigned to this member, a bare
                partition number on a member of several streams, or a
                negative offset.
            LiftbridgeError: The coordinator, metadata or cursor calls failed.
        """
        if offsets is None:
            await self.checkpoint()
            return
        wanted: Dict[_Key, int] = {}
        for partition, offset in offsets.items():
            key = self._key(partition)
            if key not in self._assignment and key not in self._revoking:
                raise ErrorInvalidPartition(
                    f"{key[0]!r}/{key[1]} is not assigned to member {self.consumer_id} "
                    f"(it reads {self.assignments})"
                )
            if offset < 0:
                raise ErrorInvalidArgument(f"Offset must not be negative, not {offset}")
            wanted[key] = offset
        if self._last in wanted:
            self._last = None  # the caller says what is processed
        for key in wanted:
            self._batch.pop(key, None)
        for key, offset in wanted.items():
            if offset > 0:
                self._processed[key] = offset - 1
        for key in sorted(set(wanted) & self._revoking):
            processed = self._processed.get(key)
            if processed is not None and self._committed.get(key) != processed:
                await self._commit_revoked(key, processed, self._committed.get(key))
        await self._checkpoint(set(wanted) - self._revoking)

    async def checkpoint(self) -> None:
        """Commit the positions processed since the last commit, of the partitions still ours.

        Right before committing, the member asks the group's coordinator which
        partitions are its own at the group's current epoch (one
        FetchConsumerGroupAssignments call, and a metadata call when the epoch
        moved), and commits only for those: a partition handed to another
        member since this member's last poll is skipped, and its new owner
        starts after the last position committed for it.

        What is left: Liftbridge's SetCursor carries no member or epoch, so a
        partition moved between the coordinator's answer and the commit (one
        or two round trips) can still get this member's commit, after its new
        owner's. The commit holds an offset this member processed, so the
        cost is that the next owner re-reads messages (at least once); nothing
        is skipped. When the coordinator cannot be reached, the member's last
        known assignment decides, as long as the coordinator answered it
        within the group's consumer timeout; after that, nothing is committed
        and the error is raised.

        Raises:
            LiftbridgeError: The coordinator, metadata or cursor calls failed.
        """
        await self._checkpoint(None)

    async def _checkpoint(self, only: Optional[Set[_Key]]) -> None:
        """`checkpoint`, of the partitions in `only` (None: all)."""
        if all(
            self._committed.get(key) == offset
            for key, offset in self._processed.items()
            if only is None or key in only
        ):
            return
        try:
            assigned = await self._assigned_now()
        except (ErrorUnavailable, ErrorDeadlineExceeded):
            if anyio.current_time() - self._last_answer >= self._consumer_timeout:
                raise
            assigned = self._assignment
        for key in sorted(assigned):
            # Read at the commit, not before the check: _reconcile may have
            # taken the partition away (and handed its progress over) meanwhile.
            offset = self._processed.get(key)
            if offset is None or self._committed.get(key) == offset:
                continue
            if only is not None and key not in only:
                continue
            await self.client.cursor_store.store(key[0], key[1], self.cursor_id, offset)
            self._committed[key] = offset

    async def _assigned_now(self) -> Set[_Key]:
        """The partitions the coordinator assigns this member at the group's current epoch."""
        epoch, coordinator = self.epoch, self.coordinator
        # The epoch may move once while it is looked up; twice, and the group
        # is rebalancing: nothing is surely ours.
        for _ in range(2):
            try:
                response = await self.client.fetch_consumer_group_assignments(
                    self.group_id, self.consumer_id, epoch, coordinator=coordinator
                )
            except (ErrorStaleEpoch, ErrorNotCoordinator):
                group = await self.client.fetch_consumer_group_metadata(self.group_id)
                if group is None:
                    return set()
                epoch, coordinator = group.epoch, group.coordinator
                continue
            except (ErrorNotMember, ErrorNotFound) as error:
                if isinstance(error, ErrorUnavailable):
                    raise  # ErrorHostNotFound: the coordinator is unreachable
                return set()  # no longer a member, or no longer a group
            return {(a.stream, p) for a in response.assignments for p in a.partitions}
        return set()

    # ------------------------------------------------------------------ positions

    def _key(self, partition: PartitionKey) -> _Key:
        """The (stream, partition) a caller means by `partition`."""
        if isinstance(partition, tuple):
            stream, number = partition
            return GroupPartition(str(stream), int(number))
        if len(self.streams) != 1:
            raise ErrorInvalidArgument(
                f"This member reads {len(self.streams)} streams: "
                f"name partition {partition} as (stream, partition)"
            )
        return GroupPartition(self.streams[0], int(partition))

    def _owned(self, partition: PartitionKey) -> _Key:
        key = self._key(partition)
        if key not in self._assignment:
            raise ErrorInvalidPartition(
                f"{key[0]!r}/{key[1]} is not assigned to member {self.consumer_id} "
                f"(it reads {self.assignments})"
            )
        return key

    def seek(self, partition: PartitionKey, offset: int) -> None:
        """Read `partition` from `offset` on (its buffer is dropped, its subscription restarted).

        What was processed and committed is not changed (a commit stores the
        new progress); the next message of the partition the iterator hands
        out is the one at `offset` (or the oldest retained, if that is
        gone). The seek lasts while the partition is this member's: when it
        is reassigned, its next owner starts from the committed position.

        Raises:
            ValueError: A partition not assigned to this member, or a negative offset.
        """
        key = self._owned(partition)
        if offset < 0:
            raise ErrorInvalidArgument(f"Offset must not be negative, not {offset}")
        if self._task_group is None:
            raise RuntimeError("seek() works inside the consumer's block")
        old = self._tasks.pop(key, None)
        if old is not None:
            old.cancel()
        if self._last == key or key in self._batch:
            self._mark_last_processed()
        self._held.pop(key, None)
        self._start_reading(key, offset)

    def pause(self, partition: PartitionKey) -> None:
        """Hand out no more messages of `partition` until `resume(partition)`.

        Its subscription stays open (and stops reading once its buffer is
        full); the member stays in the group and keeps the partition. A pause
        lasts while the partition is this member's.

        Raises:
            ValueError: A partition not assigned to this member.
        """
        key = self._owned(partition)
        self._paused.setdefault(key, anyio.Event())

    def resume(self, partition: PartitionKey) -> None:
        """Hand out `partition`'s messages again after `pause(partition)`.

        Raises:
            ValueError: A partition not assigned to this member.
        """
        key = self._owned(partition)
        event = self._paused.pop(key, None)
        if event is not None:
            event.set()

    def paused(self) -> List[GroupPartition]:
        """The partitions paused with `pause`."""
        return [GroupPartition(*key) for key in sorted(self._paused)]

    async def lag(self) -> Dict[GroupPartition, int]:
        """Per assigned partition, the messages after the last one processed and committed.

        `high_watermark - committed`, where `committed` is the last processed
        offset the group's cursor holds (`__group:<group id>`,
        go-liftbridge's convention; -1 when none is stored, so the whole
        partition counts) as this member knows it: loaded when it started
        the partition, then its own commits. The high watermark comes from
        one FetchPartitionMetadata call per partition, to its leader.

        Raises:
            LiftbridgeError: A call failed.
        """
        out: Dict[GroupPartition, int] = {}
        for key in sorted(self._assignment):
            stream, number = key
            metadata = await self.client.get_partition_metadata(stream, number)
            self._learned(key, metadata.high_watermark)
            committed = self._committed.get(key)
            if committed is None:
                committed = await self.client.cursor_store.load(stream, number, self.cursor_id)
            out[GroupPartition(stream, number)] = max(0, metadata.high_watermark - committed)
        return out

    def known_lag(self) -> Dict[GroupPartition, int]:
        """Per assigned partition, `lag()` by the newest high watermark the member knows: no call.

        What the OpenTelemetry lag gauge reports (see `lbwire.otel`); safe
        to call from another thread. The high watermark is the largest the
        member has learned: from each `lag()`, from the messages it received
        (a message's offset is at most the high watermark), and from the
        client's metadata cache (filled by `get_metadata` and the
        subscriptions' leader look-ups). It may be behind the partition's: a
        member far behind learns of newer messages only as they arrive, or
        from `lag()`. A partition is left out until the member has loaded
        its committed position and knows a high watermark; outside the
        block the result is empty.
        """
        if self._task_group is None:
            return {}
        cache = self.client.cached_metadata
        out: Dict[GroupPartition, int] = {}
        # sorted() copies the set in one step (another thread may call this);
        # _reconcile replaces it, never changes it.
        for key in sorted(self._assignment):
            committed = self._committed.get(key)
            high = self._high.get(key)
            cached = cache.partition(*key)
            if cached is not None and (high is None or cached.highWatermark > high):
                high = cached.highWatermark
            if committed is not None and high is not None:
                out[GroupPartition(*key)] = max(0, high - committed)
        return out

    def _learned(self, key: _Key, high_watermark: int) -> None:
        if high_watermark > self._high.get(key, -1):
            self._high[key] = high_watermark

    async def _checkpoint_loop(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            try:
                await self.checkpoint()
            except LiftbridgeError as error:
                logger.info("Checkpoint of group %s failed: %s", self.group_id, error)

    # ------------------------------------------------------------------ membership

    async def _join(self) -> None:
        # A join that races another member's creation of the group is
        # refused with ErrorGroupExists, a transient error the client's
        # retry policy retries: the retry joins the group that now exists.
        try:
            response = await self.client.join_consumer_group(
                self.group_id, self.consumer_id, self.streams
            )
        except ErrorAlreadyMember:
            # An earlier attempt got through (its answer was lost, or the
            # coordinator moved): we are in; learn the group's state instead.
            await self._refresh_group()
            return
        self.coordinator = response.coordinator
        self.epoch = response.epoch
        # Timeouts come in nanoseconds (Go durations).
        if response.consumerTimeout > 0:
            self._consumer_timeout = response.consumerTimeout / 1e9
        if response.coordinatorTimeout > 0:
            self._coordinator_timeout = response.coordinatorTimeout / 1e9

    async def _refresh_group(self) -> None:
        group = await self.client.fetch_consumer_group_metadata(self.group_id)
        if group is None:
            raise ErrorNotFound(f"Consumer group {self.group_id!r} does not exist")
        self.coordinator, self.epoch = group.coordinator, group.epoch
        logger.debug(
            "Group %s: coordinator %s epoch %d", self.group_id, self.coordinator, self.epoch
        )

    async def _assignment_loop(self) -> None:
        last_answer = anyio.current_time()
        # Pauses after failed polls grow (the client's retry policy), never
        # beyond the poll interval: the poll is also the heartbeat.
        backoff = Backoff(self.client.retry_policy)
        while True:
            interval = self._fraction * self._consumer_timeout
            try:
                response = await self.client.fetch_consumer_group_assignments(
                    self.group_id, self.consumer_id, self.epoch, coordinator=self.coordinator
                )
            except LiftbridgeError as error:
                logger.debug(
                    "Assignments of %s from %s failed: %s",
                    self.consumer_id,
                    self.coordinator,
                    error,
                )
                if isinstance(error, (ErrorUnavailable, ErrorDeadlineExceeded)):
                    # First: ErrorHostNotFound (a coordinator whose host name
                    # does not resolve) is an ErrorNotFound too, but it is the
                    # coordinator that is unreachable, not the group.
                    if anyio.current_time() - last_answer > self._coordinator_timeout:
                        await self._report_coordinator()
                        last_answer = anyio.current_time()
                    await backoff.wait(cap=interval)
                    await self._refresh_group_quietly()
                    continue
                if isinstance(error, ErrorNotFound):
                    # Deleted with its streams, or created by a Raft entry
                    # this coordinator has not applied yet: the metadata
                    # leader knows which (and we rejoin only in the first case).
                    await self._refresh_group_quietly()
                elif isinstance(error, ErrorMemberInactive):
                    # Listed, but not counted as active: a join alone would
                    # be refused as "already a member".
                    await self._rejoin_quietly(leave=True)
                elif isinstance(error, ErrorNotMember):
                    await self._rejoin_quietly()  # our membership timed out
                elif isinstance(error, (ErrorStaleEpoch, ErrorNotCoordinator)):
                    await self._refresh_group_quietly()
                else:
                    # Not something waiting mends (permission denied...): the
                    # iterator raises it.
                    assert self._send is not None
                    self._assigned.set()  # wait_assigned() must not wait forever
                    await self._send.send(error)
                    return
                await backoff.wait(cap=interval)
                continue
            backoff.reset()
            last_answer = anyio.current_time()
            if response.epoch != self.epoch or not self._assigned.is_set():
                logger.debug(
                    "Group %s epoch %d: %s reads %s",
                    self.group_id,
                    response.epoch,
                    self.consumer_id,
                    [(a.stream, list(a.partitions)) for a in response.assignments],
                )
            self.epoch = response.epoch
            await self._reconcile(response.assignments)
            self._assigned.set()
            await anyio.sleep(interval)

    async def _refresh_group_quietly(self) -> None:
        """`_refresh_group`, logging instead of raising (the loop pauses after it)."""
        try:
            await self._refresh_group()
        except ErrorUnavailable as error:  # ErrorHostNotFound included: not the group's absence
            logger.debug("Refreshing group %s failed: %s", self.group_id, error)
        except ErrorNotFound:
            # The group went away while its coordinator was unreachable (its
            # members timed out, ours included): join it anew.
            await self._rejoin_quietly()
        except LiftbridgeError as error:
            logger.debug("Refreshing group %s failed: %s", self.group_id, error)

    async def _rejoin_quietly(self, *, leave: bool = False) -> None:
        try:
            await self._rejoin(leave=leave)
        except LiftbridgeError as error:
            logger.debug("Rejoining group %s failed: %s", self.group_id, error)

    async def _rejoin(self, *, leave: bool = False) -> None:
        logger.info("Consumer %s rejoins group %s", self.consumer_id, self.group_id)
        if leave:
            # Leaving hands our partitions to the others at once: commit what
            # was processed first, so that less is delivered again, within a
            # poll interval (this is the heartbeat's task).
            try:
                with anyio.move_on_after(self._fraction * self._consumer_timeout):
                    await self.checkpoint()
            except LiftbridgeError as error:
                logger.info("Checkpoint of group %s failed: %s", self.group_id, error)
            # Gone already (expired, or the group with it): joining is left.
            with contextlib.suppress(ErrorNotMember, ErrorNotFound):
                await self.client.leave_consumer_group(self.group_id, self.consumer_id)
        await self._join()

    async def _report_coordinator(self) -> None:
        logger.warning(
            "Coordinator %s of group %s is silent; reporting it", self.coordinator, self.group_id
        )
        try:
            await self.client.report_consumer_group_coordinator(
                self.group_id, self.consumer_id, self.coordinator, self.epoch
            )
        except LiftbridgeError as error:
            logger.info("Reporting coordinator of %s failed: %s", self.group_id, error)

    # ------------------------------------------------------------------ partitions

    async def _reconcile(self, assignments: Sequence[wire.PartitionAssignment]) -> None:
        # Called with each answer of the coordinator.
        wanted = {(a.stream, p) for a in assignments for p in a.partitions}
        before, self._assignment = self._assignment, wanted
        self._last_answer = anyio.current_time()
        revoked = sorted(before - wanted)
        # (No await in this loop: a reading task that ends by itself removes
        # its own entry, as it did during an await here in the chaos soak.)
        for key in [k for k in self._tasks if k not in wanted]:
            scope = self._tasks.pop(key, None)
            if scope is not None:
                scope.cancel()
        if (self._last is not None and self._last not in wanted) or any(
            key not in wanted for key in self._batch
        ):
            self._mark_last_processed()
        if revoked:
            self._revoking.update(revoked)
            try:
                await self._call_back(self._on_revoked, revoked, "on_revoked")
                for key in revoked:
                    # Hand the partition over with our progress committed, and
                    # forget it: a later commit of ours must never overwrite
                    # the new owner's.
                    offset = self._processed.pop(key, None)
                    known = self._committed.pop(key, None)
                    self._high.pop(key, None)
                    if offset is not None and known != offset:
                        await self._hand_over(key, offset, known)
            finally:
                self._revoking.difference_update(revoked)
        for key in [k for k in self._paused if k not in wanted]:
            self._paused.pop(key).set()
        for key in [k for k in self._held if k not in wanted]:
            del self._held[key]
        if self._task_group is None:
            return  # closing
        for key in sorted(wanted - set(self._tasks)):
            self._start_reading(key, None)
        added = sorted(wanted - before)
        if added:
            await self._call_back(self._on_assigned, added, "on_assigned")

    async def _call_back(
        self, callback: Optional[PartitionsCallback], keys: Sequence[_Key], name: str
    ) -> None:
        """Await a rebalance callback; what it raises is logged (see the class)."""
        if callback is None:
            return
        try:
            await callback([GroupPartition(*key) for key in keys])
        except Exception:
            logger.error("%s of group %s raised", name, self.group_id, exc_info=True)

    def _start_reading(self, key: _Key, offset: Optional[int]) -> None:
        assert self._task_group is not None
        scope = anyio.CancelScope()
        self._tasks[key] = scope
        self._task_group.start_soon(
            guarded,
            f"Reading {key[0]!r}/{key[1]} for {self._who}",
            self._read_partition,
            key,
            scope,
            offset,
        )

    async def _hand_over(self, key: _Key, offset: int, known: Optional[int]) -> None:
        """`_commit_revoked`, logging instead of raising."""
        try:
            await self._commit_revoked(key, offset, known)
        except LiftbridgeError as error:
            logger.info("Commit of revoked %s failed: %s", key, error)

    async def _commit_revoked(self, key: _Key, offset: int, known: Optional[int]) -> None:
        """Commit a revoked partition's progress, unless its cursor moved since ours.

        The new owner may have started, and committed, before this member
        learnt of the change: a stored value other than the one this member
        last stored (or loaded) is the new owner's, and is left alone. The
        load and the store are two calls, so a commit of the new owner's
        between them is still overwritten (see `checkpoint`).
        """
        stored = await self.client.cursor_store.load(key[0], key[1], self.cursor_id)
        if stored != (-1 if known is None else known):
            logger.debug("Not handing %s over: its cursor moved to %d", key, stored)
            return
        await self.client.cursor_store.store(key[0], key[1], self.cursor_id, offset)
        self._committed[key] = offset

    async def _read_partition(
        self, key: _Key, scope: anyio.CancelScope, seek: Optional[int]
    ) -> None:
        stream, partition = key
        assert self._send is not None
        with scope:
            try:
                known = self._committed.get(key)
                stored = await self.client.cursor_store.load(stream, partition, self.cursor_id)
                # What the cursor holds as far as this member knows (see
                # _hand_over), unless the member committed while it was read
                # (newer) or this is a seek (the member's own knowledge stands).
                if self._committed.get(key) == known and (seek is None or known is None):
                    self._committed[key] = stored
                start_offset: Optional[int] = None
                start_position = StartPosition.NEW_ONLY
                if seek is not None:
                    start_offset = seek
                elif stored >= 0:
                    start_offset = stored + 1
                elif self.auto_offset == AutoOffset.NONE:
                    raise ErrorNotFound(
                        f"Group {self.group_id!r} has no committed position for "
                        f"{stream!r}/{partition} (auto_offset=NONE)"
                    )
                else:
                    start_position = _AUTO_START[self.auto_offset]
                membership = wire.Consumer(
                    groupId=self.group_id, groupEpoch=self.epoch, consumerId=self.consumer_id
                )
                messages = self.client.subscribe(
                    stream,
                    partition=partition,
                    start_position=start_position,
                    start_offset=start_offset,
                    consumer=membership,
                    **self._deserializers,
                )
                try:
                    async for msg in messages:
                        # What the lag gauge knows without a call.
                        self._learned(key, msg.offset)
                        paused = self._paused.get(key)
                        if paused is not None:
                            await paused.wait()
                        await self._send.send((scope, msg))
                finally:
                    # Not left to the garbage collector, which without
                    # reference counting (PyPy) may run after the loop ended.
                    await cast(AsyncGenerator[Message, None], messages).aclose()
            except (ErrorChannelClosed, ErrorNotAssigned):
                # The server handed the partition to a member of a newer
                # epoch; the next poll reconciles.
                return
            except LiftbridgeError as error:
                await self._send.send(error)
            finally:
                if self._tasks.get(key) is scope:
                    del self._tasks[key]
