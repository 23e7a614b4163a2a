"""The whole-stream reader: every partition of a stream, each with its own cursor.

`LiftbridgeClient.reader(...)` returns a `StreamReader`. Inside its
`async with` block one task per partition reads that partition with
`LiftbridgeClient.subscribe` (so each inherits the subscription's resumption
across broker failures and leader moves) into a bounded buffer of its own;
iterating the reader takes from those buffers. The iterator holds no task
group or cancel scope across the points where it hands a message out: it is
a plain object with `__anext__`, not an async generator.

The cursor convention is the client's (`ClientOptions.cursor_convention`):
the reader stores and reads its cursors through `set_cursor` and the cursor
store's `resume_offset`, so a cursor written by the reader means what
`StartPosition.RESUME` expects, whichever convention the client uses. The
positions this module reports (`position`, `committed`) are always "the next
offset to read", whatever the convention stores.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
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
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Type,
    TypeVar,
    cast,
)

import anyio

from ._lifecycle import close_task_group, guarded, open_task_group
from ._log import LazyLogger
from ._subscribe import IN_LISTS, SubscribeMethods
from .error import ErrorInvalidArgument, ErrorInvalidPartition, ErrorNotFound, LiftbridgeError
from .serde import Deserializer, check_callable
from .types import K, Message, StartPosition, StopPosition, V

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .client import LiftbridgeClient

__all__ = [
    "MessageBatches",
    "PartitionLag",
    "StreamReader",
    "SubscriptionBatches",
    "batched",
    "stream_lag",
]

logger = LazyLogger("lbwire.reader")

_T = TypeVar("_T")

#: Where a partition without a cursor may start.
_STARTS = (StartPosition.EARLIEST, StartPosition.LATEST, StartPosition.NEW_ONLY)


@dataclass(frozen=True)
class PartitionLag:
    """How far a cursor is behind one partition.

    Attributes:
        partition: The partition.
        high_watermark: Offset of the partition's newest committed message
            (-1 when it has none).
        committed: The next offset to read according to the cursor (the
            committed position), or None when no cursor is stored.
        lag: Messages after the last one processed: `high_watermark + 1 -
            committed`, never below 0; the whole partition (from offset 0)
            when no cursor is stored.
    """

    partition: int
    high_watermark: int
    committed: Optional[int]
    lag: int


def _lag(high_watermark: int, committed: Optional[int]) -> int:
    return max(0, high_watermark + 1 - (committed or 0))


async def _each(func: Callable[[int], Awaitable[_T]], partitions: Iterable[int]) -> Dict[int, _T]:
    """`func(partition)` for every partition, concurrently; by partition number."""
    results: Dict[int, _T] = {}

    async def one(partition: int) -> None:
        results[partition] = await func(partition)

    try:
        async with anyio.create_task_group() as tg:
            for partition in partitions:
                tg.start_soon(one, partition)
    except BaseException as group:
        # The first LiftbridgeError of the calls, unwrapped: that is what the
        # caller documents and catches.
        error = _first_liftbridge_error(group)
        if error is None:
            raise
        raise error from None
    return {partition: results[partition] for partition in sorted(results)}


def _first_liftbridge_error(exc: BaseException) -> Optional[LiftbridgeError]:
    if isinstance(exc, LiftbridgeError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _first_liftbridge_error(inner)
        if found is not None:
            return found
    return None


async def stream_partitions(client: LiftbridgeClient, stream: str) -> List[int]:
    """The partition numbers of `stream`, from fresh metadata.

    Raises:
        ErrorNotFound: No such stream.
    """
    metadata = await client.get_metadata(stream=stream)
    for found in metadata.metadata:
        if found.name == stream:
            return sorted(found.partitions)
    raise ErrorNotFound(f"No such stream: {stream!r}")


async def stream_lag(
    client: LiftbridgeClient,
    stream: str,
    cursor_id: str,
    partitions: Optional[Sequence[int]] = None,
) -> List[PartitionLag]:
    """The lag of cursor `cursor_id` on each partition of `stream` (all, or `partitions`).

    One FetchPartitionMetadata call (to the partition's leader) and one
    FetchCursor call per partition, concurrently.

    Raises:
        ValueError: Empty cursor id or a negative partition.
        ErrorNotFound: No such stream or partition, or cursors are disabled.
    """
    if not cursor_id:
        raise ErrorInvalidArgument("cursor_id must not be empty")
    if partitions is None:
        partitions = await stream_partitions(client, stream)
    store = client.cursor_store

    async def one(partition: int) -> PartitionLag:
        high = (await client.get_partition_metadata(stream, partition)).high_watermark
        committed = await store.resume_offset(stream, partition, cursor_id)
        return PartitionLag(partition, high, committed, _lag(high, committed))

    found = await _each(one, partitions)
    return [found[p] for p in sorted(found)]


class _Partition:
    """One partition's reading state; the reader owns it (the task only fills `buffer`)."""

    __slots__ = (
        "buffer",
        "committed",
        "delivered",
        "high",
        "partition",
        "paused",
        "processed",
        "queued",
        "reading",
        "scope",
        "space",
        "start",
    )

    def __init__(self, partition: int) -> None:
        self.partition = partition
        # Any: the reader's deserializers decide (see StreamReader's V and K).
        self.buffer = _Buffer()
        #: Set by the iterator when it takes from a full buffer.
        self.space: Optional[anyio.Event] = None
        #: Whether the partition is in the reader's queue of ready partitions.
        self.queued = False
        self.paused = False
        #: Whether a task reads it (false once its subscription ended).
        self.reading = False
        self.scope: Optional[anyio.CancelScope] = None
        #: The subscribe() arguments the next task starts with.
        self.start: Dict[str, Any] = {}
        #: Next offset to hand out / first offset not yet processed / the
        #: cursor's next offset (None: unknown, or no cursor).
        self.delivered: Optional[int] = None
        self.processed: Optional[int] = None
        self.committed: Optional[int] = None
        #: The newest high watermark the reader learned (None: nothing yet):
        #: from `highwater()`, and from each received message, whose offset
        #: the high watermark is at least (a subscriber gets committed
        #: messages only).
        self.high: Optional[int] = None

    def learned(self, high_watermark: int) -> None:
        if self.high is None or high_watermark > self.high:
            self.high = high_watermark


class StreamReader(Generic[V, K]):
    """Reads every partition of a stream (or a chosen set), each from its own cursor.

    Make it with `LiftbridgeClient.reader(...)` and use it as an async
    context manager inside the client's block; iterate it for the messages
    of all its partitions, merged::

        async with client.reader("orders", cursor_id="billing") as reader:
            async for msg in reader:
                handle(msg)

    Order is kept within each partition; partitions are interleaved as their
    messages arrive (one at a time, in turn, when several have some). Each
    partition is read by a task of the reader's own with
    `LiftbridgeClient.subscribe`, so it resumes on its own when its broker
    fails or its leader moves, without holding up the others. Each task
    buffers at most `max_buffered` messages; a partition whose buffer is full
    is not read further until the iterator takes from it (backpressure per
    partition).

    Commits (with a `cursor_id`): a message counts as processed when the
    iterator is asked for the next one (or, with `batches`, when the next
    batch is asked for). With `auto_commit`, what was processed is committed
    every `commit_every` messages (before the next one is handed out), every
    `commit_interval` seconds, and when the block is left without an
    exception (the message in hand then counts as processed; with an
    exception it does not). That makes delivery at least once: after a crash,
    the messages processed since the last commit are read again, and no
    others. `commit()` and `commit(offsets)` commit explicitly.

    Cursor convention: the client's (`ClientOptions.cursor_convention`); the
    positions reported here (`position`, `committed`, `commit(offsets)`) are
    next offsets to read, whatever the cursor stores.

    Deserializers (`value_deserializer`, `key_deserializer`, instead of the
    client's; see `lbwire.serde`) make the messages `Message[V, K]`; a
    message one of them refuses ends its partition's subscription with
    `ErrorUndecodableMessage`, raised by the iterator.

    Raises (from the iterator):
        LiftbridgeError: A partition's subscription failed for good (its
            stream was deleted, it stayed unreachable for the client's
            `resubscribe_wait_time`, ...). The other partitions go on; leave
            the block to stop them.

    Raises (from the block, when one of the reader's tasks failed; the block
    is cancelled first):
        ErrorTaskFailed: A task failed with an error of lbwire's own that is
            not a `LiftbridgeError`; the message names the stream, the
            partition and the task, and `__cause__` is the error.
        BaseException: What a deserializer raised that is not an
            `Exception` (`SystemExit`, a program's own `BaseException`), as
            it is.

    Never an ExceptionGroup: an error the block raises itself comes out as
    itself (a task's failure at the same time is logged); of several tasks'
    failures one comes out (what is not an `Exception` first, then a
    `LiftbridgeError`, then the first other) and the others are logged. A
    cancellation from outside stays a cancellation.
    """

    def __init__(
        self,
        client: LiftbridgeClient,
        stream: str,
        partitions: Optional[Iterable[int]] = None,
        *,
        cursor_id: Optional[str] = None,
        start_position: StartPosition = StartPosition.EARLIEST,
        start_offset: Optional[int] = None,
        start_timestamp: Optional[float] = None,
        stop_position: StopPosition = StopPosition.STOP_ON_CANCEL,
        stop_offset: Optional[int] = None,
        stop_timestamp: Optional[float] = None,
        auto_commit: bool = True,
        commit_every: Optional[int] = None,
        commit_interval: Optional[float] = 5.0,
        max_buffered: int = 256,
        allow_isr: bool = False,
        resume: bool = False,
        value_deserializer: Optional[Deserializer[V]] = None,
        key_deserializer: Optional[Deserializer[K]] = None,
    ) -> None:
        if not stream:
            raise ErrorInvalidArgument("stream must not be empty")
        if start_position not in _STARTS:
            raise ErrorInvalidArgument(
                "start_position must be StartPosition.EARLIEST, LATEST or NEW_ONLY (a "
                f"partition with a cursor always resumes from it), not {start_position!r}"
            )
        if max_buffered < 1:
            raise ErrorInvalidArgument(f"max_buffered must be at least 1, not {max_buffered}")
        if commit_every is not None and commit_every < 1:
            raise ErrorInvalidArgument(f"commit_every must be at least 1, not {commit_every}")
        if commit_interval is not None and commit_interval <= 0:
            raise ErrorInvalidArgument(f"commit_interval must be positive, not {commit_interval}")
        check_callable("value_deserializer", value_deserializer)
        check_callable("key_deserializer", key_deserializer)
        chosen: Optional[List[int]] = None
        if partitions is not None:
            chosen = sorted(set(partitions))
            if not chosen:
                raise ErrorInvalidArgument("partitions must not be empty (None: all of them)")
            if chosen[0] < 0:
                raise ErrorInvalidPartition(f"Partition must not be negative, not {chosen[0]}")
        self.client = client
        self.stream = stream
        self.cursor_id = cursor_id
        self._chosen = chosen
        self._first_start: Dict[str, Any] = {
            "start_position": start_position,
            "start_offset": start_offset,
            "start_timestamp": start_timestamp,
        }
        self._subscribe_args: Dict[str, Any] = {
            "stop_position": stop_position,
            "stop_offset": stop_offset,
            "stop_timestamp": stop_timestamp,
            "allow_isr": allow_isr,
            "resume": resume,
            "value_deserializer": value_deserializer,
            "key_deserializer": key_deserializer,
        }
        self._auto_commit = auto_commit and cursor_id is not None
        self._commit_every = commit_every
        self._commit_interval = commit_interval
        self._max_buffered = max_buffered
        self._partitions: Dict[int, _Partition] = {}
        #: Partitions with buffered messages, in the order they get a turn.
        self._ready: Deque[_Partition] = deque()
        self._wake = anyio.Event()
        self._errors: Deque[LiftbridgeError] = deque()
        #: The message handed out last, not yet processed (single messages).
        self._last: Optional[_Partition] = None
        self._last_next = 0
        #: The batch handed out last: partition to its next offset.
        self._batch: Dict[_Partition, int] = {}
        self._since_commit = 0
        self._commit_lock = anyio.Lock()
        self._task_group: Optional[TaskGroup] = None

    # ------------------------------------------------------------------ life cycle

    @property
    def partitions(self) -> List[int]:
        """The partitions this reader reads (known once the block is entered)."""
        return sorted(self._partitions) if self._partitions else list(self._chosen or [])

    async def __aenter__(self) -> StreamReader[V, K]:
        """Find the partitions, load their cursors and start reading each.

        Raises:
            ErrorNotFound: No such stream (when reading all its partitions),
                or cursors are disabled on the server.
        """
        if self._task_group is not None:
            raise RuntimeError("The reader is already open")
        numbers = self._chosen
        if numbers is None:
            numbers = await stream_partitions(self.client, self.stream)
        if self.cursor_id is not None:
            store, cursor_id = self.client.cursor_store, self.cursor_id
            resume = await _each(lambda p: store.resume_offset(self.stream, p, cursor_id), numbers)
        else:
            resume = {}
        for number in numbers:
            state = self._partitions[number] = _Partition(number)
            offset = resume.get(number)
            if offset is None:
                state.start = dict(self._first_start)
            else:
                state.start = {"start_offset": offset}
                state.delivered = state.processed = state.committed = offset
        tg = self._task_group = await open_task_group()
        for state in self._partitions.values():
            self._start(state)
        if self._auto_commit and self._commit_interval:
            tg.start_soon(
                guarded,
                f"The periodic commit of {self._who}",
                self._commit_periodically,
                self._commit_interval,
            )
        return self

    @property
    def _who(self) -> str:
        """The reader, for messages: its stream and its cursor."""
        cursor = f" (cursor {self.cursor_id!r})" if self.cursor_id is not None else ""
        return f"the reader of {self.stream!r}{cursor}"

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> Optional[bool]:
        """Stop reading; commit what was processed (see the class); end every task.

        An exception of the block comes out as itself; so does a failure of
        one of the reader's tasks (see the class), not wrapped in an
        ExceptionGroup.
        """
        tg, self._task_group = self._task_group, None
        if tg is not None:
            tg.cancel_scope.cancel()
        try:
            if exc_type is None:
                self._finish_handed()
            if self._auto_commit:
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    try:
                        await self.commit()
                    except LiftbridgeError as error:
                        logger.warning("Final commit of %r failed: %s", self.stream, error)
        finally:
            if tg is not None:
                await close_task_group(tg, exc_type, exc, traceback, owner=self._who)
        return None

    def _start(self, state: _Partition) -> None:
        assert self._task_group is not None
        scope = state.scope = anyio.CancelScope()
        state.reading = True
        self._task_group.start_soon(
            guarded,
            f"Reading partition {state.partition} for {self._who}",
            self._read,
            state,
            scope,
            state.start,
        )

    async def _read(
        self, state: _Partition, scope: anyio.CancelScope, start: Dict[str, Any]
    ) -> None:
        with scope:
            try:
                messages = self.client.subscribe(
                    self.stream, partition=state.partition, **start, **self._subscribe_args
                )
                try:
                    await self._fill(state, messages)
                finally:
                    # Not left to the garbage collector (PyPy: maybe after the loop ended).
                    await messages.aclose()  # type: ignore[attr-defined]
            except LiftbridgeError as error:
                self._errors.append(error)
            finally:
                if state.scope is scope:
                    state.reading = False
                    self._wake.set()

    async def _fill(self, state: _Partition, messages: Any) -> None:
        # The hot path of every message a reader delivers.
        buffer, limit, ready = state.buffer, self._max_buffered, self._ready

        async def wait_for_space() -> None:
            space = state.space = anyio.Event()
            await space.wait()

        def added() -> None:
            if not state.queued and not state.paused:
                state.queued = True
                ready.append(state)
                self._wake.set()

        lists = in_lists(messages)
        try:
            async for received in lists:
                if received:
                    # Once per list: what the lag gauge knows without a call.
                    state.learned(received[-1].offset)
                await _append_bounded(buffer, received, limit, wait_for_space, added)
        finally:
            await lists.aclose()

    # ------------------------------------------------------------------ iteration

    def __aiter__(self) -> StreamReader[V, K]:
        return self

    async def __anext__(self) -> Message[V, K]:
        """The next message of any partition (see the class for what counts as processed)."""
        self._finish_handed()
        if self._commit_every is not None and self._since_commit >= self._commit_every:
            await self._auto_commit_now()
        while True:
            if self._errors:
                raise self._errors.popleft()
            ready = self._ready
            if ready:
                state = ready.popleft()
                buffer = state.buffer
                msg = buffer.popleft()
                if buffer:
                    ready.append(state)
                else:
                    state.queued = False
                space = state.space
                if space is not None:
                    state.space = None
                    space.set()
                self._last = state
                self._last_next = state.delivered = msg.offset + 1
                return msg
            await self._wait_for_messages()

    async def _wait_for_messages(self) -> None:
        """Wait until a partition has messages, or raise StopAsyncIteration when none can come."""
        if self._task_group is None and not self._partitions:
            raise RuntimeError("Use the reader inside 'async with client.reader(...)'")
        states = self._partitions.values()
        if (self._task_group is None or not any(s.reading for s in states)) and not any(
            s.buffer for s in states
        ):
            raise StopAsyncIteration
        self._wake = anyio.Event()
        if self._ready or self._errors:
            return
        await self._wake.wait()

    def _finish_handed(self) -> None:
        """The user is done with what was handed out last: it counts as processed."""
        state = self._last
        if state is not None:
            self._last = None
            if state.processed is None or self._last_next > state.processed:
                state.processed = self._last_next
            self._since_commit += 1
        if self._batch:
            for state, next_offset in self._batch.items():
                if state.processed is None or next_offset > state.processed:
                    state.processed = next_offset
            self._batch = {}

    def batches(self, max_count: int, max_wait: float) -> MessageBatches:
        """Iterate the messages in lists of at most `max_count` (async for).

        A batch merges partitions: it holds messages of any of them, in order
        within each. It is built from messages that have already arrived:
        once the first is there, the batch waits at most `max_wait` seconds
        for more (0: not at all), and comes as soon as it has `max_count`.
        The messages of a batch count as processed when the next batch is
        asked for.

        Raises:
            ValueError: `max_count` below 1 or a negative `max_wait`.
        """
        return MessageBatches(self, max_count, max_wait)

    async def next_batch(self, max_count: int, max_wait: float) -> List[Message]:
        """One batch (see `batches`); raises StopAsyncIteration when the reader ended."""
        self._finish_handed()
        if self._commit_every is not None and self._since_commit >= self._commit_every:
            await self._auto_commit_now()
        batch: List[Message] = []
        handed = self._batch
        deadline: Optional[float] = None
        ready = self._ready
        while True:
            if self._errors and not batch:
                raise self._errors.popleft()
            while ready and len(batch) < max_count:
                state = ready.popleft()
                buffer = state.buffer
                buffer.take(max_count - len(batch), batch)
                if buffer:
                    ready.append(state)
                else:
                    state.queued = False
                state.delivered = handed[state] = batch[-1].offset + 1
                space = state.space
                if space is not None:
                    state.space = None
                    space.set()
            if len(batch) >= max_count or self._errors:
                break
            if batch:
                if deadline is None:
                    deadline = anyio.current_time() + max_wait
                if anyio.current_time() >= deadline:
                    break
                with anyio.move_on_after(deadline - anyio.current_time()):
                    try:
                        await self._wait_for_messages()
                    except StopAsyncIteration:
                        break
            else:
                await self._wait_for_messages()
        self._since_commit += len(batch)
        return batch

    # ------------------------------------------------------------------ commits

    async def _auto_commit_now(self) -> None:
        if self._auto_commit:
            await self.commit()
        self._since_commit = 0

    async def _commit_periodically(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            try:
                await self.commit()
            except LiftbridgeError as error:
                logger.info("Commit of %r failed: %s", self.stream, error)

    async def commit(self, offsets: Optional[Mapping[int, int]] = None) -> None:
        """Store the cursors: what was processed, or the positions given.

        Args:
            offsets: Partition to the next offset to read (every message
                before it counts as processed). None: each partition's
                processed position (see the class).

        Raises:
            ValueError: No cursor_id, a partition the reader does not read,
                or a negative offset.
            LiftbridgeError: The cursor calls failed.
        """
        if self.cursor_id is None:
            raise ErrorInvalidArgument("commit() needs a reader made with a cursor_id")
        if offsets is None:
            wanted = {
                number: state.processed
                for number, state in self._partitions.items()
                if state.processed is not None and state.processed != state.committed
            }
        else:
            wanted = {}
            for number, offset in offsets.items():
                self._state(number)
                if offset < 0:
                    raise ErrorInvalidArgument(f"Offset must not be negative, not {offset}")
                wanted[number] = offset
            for number, offset in wanted.items():
                # The caller says what is processed: a later commit() keeps it.
                self._partitions[number].processed = offset
        self._since_commit = 0
        if not wanted:
            return
        async with self._commit_lock:
            await _each(lambda p: self._commit_one(p, wanted[p]), wanted)

    async def _commit_one(self, partition: int, next_offset: int) -> None:
        state = self._partitions[partition]
        if next_offset == state.committed or next_offset <= 0:
            return  # nothing processed yet: no cursor to store
        await self.client.set_cursor(self.stream, partition, str(self.cursor_id), next_offset - 1)
        state.committed = next_offset

    # ------------------------------------------------------------------ positions

    def _state(self, partition: int) -> _Partition:
        state = self._partitions.get(partition)
        if state is None:
            raise ErrorInvalidPartition(
                f"The reader of {self.stream!r} does not read partition {partition} "
                f"(it reads {self.partitions})"
            )
        return state

    def seek(self, partition: int, offset: int) -> None:
        """Read `partition` from `offset` on: its buffer is dropped and its subscription restarted.

        What was processed is not changed (a commit stores it); the next
        message of the partition the iterator hands out is the one at
        `offset` (or the oldest retained, if that is gone).

        Raises:
            ValueError: A partition the reader does not read, or a negative offset.
        """
        state = self._state(partition)
        if offset < 0:
            raise ErrorInvalidArgument(f"Offset must not be negative, not {offset}")
        if self._task_group is None:
            raise RuntimeError("seek() works inside the reader's block")
        if state.scope is not None:
            state.scope.cancel()
        state.buffer.clear()
        if state.queued:
            self._ready.remove(state)
            state.queued = False
        if state.space is not None:
            state.space.set()
            state.space = None
        if self._last is state:
            self._finish_handed()
        state.start = {"start_offset": offset}
        state.delivered = offset
        self._start(state)

    def pause(self, partition: int) -> None:
        """Hand out no more messages of `partition` until `resume(partition)`.

        Its subscription stays open and stops reading once its buffer is full.

        Raises:
            ValueError: A partition the reader does not read.
        """
        state = self._state(partition)
        state.paused = True
        if state.queued:
            self._ready.remove(state)
            state.queued = False

    def resume(self, partition: int) -> None:
        """Hand out `partition`'s messages again after `pause(partition)`.

        Raises:
            ValueError: A partition the reader does not read.
        """
        state = self._state(partition)
        state.paused = False
        if state.buffer and not state.queued:
            state.queued = True
            self._ready.append(state)
            self._wake.set()

    def paused(self) -> List[int]:
        """The partitions paused with `pause`."""
        return sorted(n for n, s in self._partitions.items() if s.paused)

    def position(self) -> Dict[int, Optional[int]]:
        """Per partition, the offset of the next message the iterator hands out.

        None for a partition that has handed nothing out yet and started
        without a cursor (its first offset is the server's choice).
        """
        return {n: s.delivered for n, s in sorted(self._partitions.items())}

    def committed(self) -> Dict[int, Optional[int]]:
        """Per partition, the committed position: the next offset to read by its cursor.

        As this reader knows it: loaded when the block was entered, then
        what it committed. None: no cursor is stored.
        """
        return {n: s.committed for n, s in sorted(self._partitions.items())}

    async def highwater(self) -> Dict[int, int]:
        """Per partition, the offset of the newest committed message (-1 if none).

        One FetchPartitionMetadata call per partition, to its leader.

        Raises:
            LiftbridgeError: A call failed.
        """

        async def one(partition: int) -> int:
            metadata = await self.client.get_partition_metadata(self.stream, partition)
            self._partitions[partition].learned(metadata.high_watermark)
            return metadata.high_watermark

        return await _each(one, sorted(self._partitions))

    async def lag(self) -> Dict[int, int]:
        """Per partition, the messages after the last one processed and committed.

        `high_watermark + 1 - committed` (see `highwater` and `committed`);
        a partition without a cursor counts from offset 0.

        Raises:
            LiftbridgeError: A call failed.
        """
        highs = await self.highwater()
        return {n: _lag(high, self._partitions[n].committed) for n, high in highs.items()}

    def known_lag(self) -> Dict[int, int]:
        """Per partition, `lag()` by the newest high watermark the reader knows: no call.

        What the OpenTelemetry lag gauge reports (see `lbwire.otel`); safe
        to call from another thread. The high watermark is the largest the
        reader has learned: from each `highwater()` or `lag()`, from the
        messages its partitions received (a message's offset is at most the
        high watermark), and from the client's metadata cache (which
        `get_metadata`, the reader's own start included, and the
        subscriptions' leader look-ups fill). It may be behind the
        partition's: a reader far behind learns of newer messages only as
        they arrive, or from those calls. A partition whose high watermark
        the reader knows nothing of is left out; outside the block the
        result is empty.
        """
        if self._task_group is None:
            return {}
        cache = self.client.cached_metadata
        out: Dict[int, int] = {}
        # list(): a copy taken in one step, as another thread may call this.
        for number, state in list(self._partitions.items()):
            high = state.high
            cached = cache.partition(self.stream, number)
            if cached is not None and (high is None or cached.highWatermark > high):
                high = cached.highWatermark
            if high is not None:
                out[number] = _lag(high, state.committed)
        return out


class BatchSource(Protocol):
    """What `MessageBatches` takes its batches from (a reader, a group member)."""

    async def next_batch(self, max_count: int, max_wait: float) -> List[Message[Any, Any]]: ...


class MessageBatches:
    """The batches of a reader or group member (see their `batches`); iterate it."""

    def __init__(self, reader: BatchSource, max_count: int, max_wait: float) -> None:
        _check_batch_bounds(max_count, max_wait)
        self._reader = reader
        self.max_count = max_count
        self.max_wait = max_wait

    def __aiter__(self) -> MessageBatches:
        return self

    async def __anext__(self) -> List[Message]:
        return await self._reader.next_batch(self.max_count, self.max_wait)


class SubscriptionBatches:
    """One subscription's messages in batches; made by `batched`, used as `async with`.

    A task of its own (in a task group the object owns, for the length of
    its block) reads the subscription into a buffer of at most
    `max_buffered` messages; iterating the object takes them in lists.
    """

    def __init__(
        self,
        messages: AsyncIterator[Message],
        max_count: int,
        max_wait: float,
        max_buffered: Optional[int] = None,
    ) -> None:
        _check_batch_bounds(max_count, max_wait)
        self.max_count = max_count
        self.max_wait = max_wait
        self._limit = max(max_buffered or 2 * max_count, 1)
        self._messages = messages
        self._buffer = _Buffer()
        self._space: Optional[anyio.Event] = None
        self._wake = anyio.Event()
        self._ended = False
        #: Whether the iterator waits for `_wake` (the task sets it only then).
        self._waiting = False
        self._error: Optional[LiftbridgeError] = None
        self._task_group: Optional[TaskGroup] = None

    async def __aenter__(self) -> SubscriptionBatches:
        """Start reading the subscription."""
        tg = self._task_group = await open_task_group()
        tg.start_soon(guarded, "The reading task of batched()", self._pump)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> Optional[bool]:
        """Stop reading and close the subscription; a task's failure comes out unwrapped."""
        tg, self._task_group = self._task_group, None
        if tg is not None:
            await close_task_group(tg, exc_type, exc, traceback, owner="batched()")
        return None

    async def _pump(self) -> None:
        buffer, limit = self._buffer, self._limit
        messages = self._messages
        lists = in_lists(messages)
        try:
            async for received in lists:
                await _append_bounded(buffer, received, limit, self._wait_for_space, self._added)
        except LiftbridgeError as error:
            self._error = error
        finally:
            self._ended = True
            self._wake.set()
            # Not left to the garbage collector (PyPy: maybe after the loop ended).
            await lists.aclose()
            await messages.aclose()  # type: ignore[attr-defined]

    async def _wait_for_space(self) -> None:
        space = self._space = anyio.Event()
        await space.wait()

    def _added(self) -> None:
        if self._waiting:
            # Only when the iterator waits: setting an event each time was
            # most of the reading task's cost.
            self._waiting = False
            self._wake.set()

    async def _wait(self) -> None:
        """Wait until the task adds a message (or ends)."""
        wake = self._wake = anyio.Event()
        self._waiting = True
        try:
            await wake.wait()
        finally:
            self._waiting = False

    def __aiter__(self) -> SubscriptionBatches:
        return self

    async def __anext__(self) -> List[Message]:
        """The next batch (see `batched`)."""
        if self._task_group is None:
            raise RuntimeError("Use the batches inside 'async with batched(...)'")
        buffer, max_count = self._buffer, self.max_count
        batch: List[Message] = []
        deadline: Optional[float] = None
        while True:
            buffer.take(max_count - len(batch), batch)
            space = self._space
            if space is not None:
                self._space = None
                space.set()
            if len(batch) >= max_count or self._ended:
                break
            if batch:
                if deadline is None:
                    deadline = anyio.current_time() + self.max_wait
                if anyio.current_time() >= deadline:
                    break
                with anyio.CancelScope(deadline=deadline):  # (no move_on_at in anyio for 3.9)
                    await self._wait()
            else:
                await self._wait()
        if batch:
            return batch
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        raise StopAsyncIteration


def batched(
    messages: AsyncIterator[Message],
    max_count: int,
    max_wait: float,
    *,
    max_buffered: Optional[int] = None,
) -> SubscriptionBatches:
    """A single subscription's messages in lists of at most `max_count`.

    Wraps what `LiftbridgeClient.subscribe(...)` returns (which stays a plain
    async iterator); use the result as an async context manager, inside the
    client's block, and iterate it::

        subscription = client.subscribe("orders", partition=0, start_position=...)
        async with batched(subscription, 500, 0.05) as batches:
            async for batch in batches:
                handle(batch)

    A batch is built from messages that have already arrived: once the first
    is there, it waits at most `max_wait` seconds for more (0: not at all),
    and comes as soon as it has `max_count`. At most `max_buffered` messages
    (default: twice `max_count`) are read ahead. Leaving the block closes the
    subscription. An error ending the subscription is raised by the iterator
    after the messages that came before it.

    Raises:
        ValueError: `max_count` below 1 or a negative `max_wait`.
    """
    return SubscriptionBatches(messages, max_count, max_wait, max_buffered)


class _Buffer:
    """Messages in the lists they were received in: taking many costs a slice, not a step each."""

    __slots__ = ("_head", "_lists", "_size")

    def __init__(self) -> None:
        self._lists: Deque[List[Message[Any, Any]]] = deque()
        #: Messages of the first list already taken.
        self._head = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def extend(self, received: List[Message[Any, Any]]) -> None:
        """Add a list (kept as it is: the caller hands it over)."""
        if received:
            self._lists.append(received)
            self._size += len(received)

    def clear(self) -> None:
        self._lists.clear()
        self._head = self._size = 0

    def popleft(self) -> Message[Any, Any]:
        """Take the oldest message (IndexError when there is none)."""
        first = self._lists[0]
        head = self._head
        message = first[head]
        head += 1
        if head == len(first):
            self._lists.popleft()
            head = 0
        self._head = head
        self._size -= 1
        return message

    def take(self, count: int, into: List[Message[Any, Any]]) -> None:
        """Move the oldest `count` messages (or all, if fewer) to the end of `into`."""
        lists = self._lists
        while count > 0 and lists:
            first = lists[0]
            head = self._head
            left = len(first) - head
            if left <= count:
                into.extend(first[head:] if head else first)
                lists.popleft()
                self._head = 0
                taken = left
            else:
                into.extend(first[head : head + count])
                self._head = head + count
                taken = count
            count -= taken
            self._size -= taken


async def _append_bounded(
    buffer: _Buffer,
    received: List[Message[Any, Any]],
    limit: int,
    wait_for_space: Callable[[], Awaitable[None]],
    added: Callable[[], None],
) -> None:
    """Append `received` to `buffer`, which never holds more than `limit`: wait for room."""
    start, end = 0, len(received)
    while start < end:
        room = limit - len(buffer)
        if room <= 0:
            await wait_for_space()
            continue
        buffer.extend(received if start == 0 and end <= room else received[start : start + room])
        start += room
        added()


async def in_lists(messages: AsyncIterator[Message]) -> AsyncGenerator[List[Message], None]:
    """The items of `messages` in lists (not closing it).

    A subscription of `LiftbridgeClient.subscribe` hands out lists itself
    after its first message (see `lbwire._subscribe.IN_LISTS`): no generator
    step per message. Other iterators give lists of one.
    """
    if getattr(messages, "ag_code", None) is not _SUBSCRIBE_CODE:
        async for message in messages:
            yield [message]
        return
    subscription = cast(AsyncGenerator[Any, Any], messages)
    try:
        first = await subscription.__anext__()
    except StopAsyncIteration:
        return
    yield [first]
    while True:
        try:
            received = await subscription.asend(IN_LISTS)
        except StopAsyncIteration:
            return
        yield received


_SUBSCRIBE_CODE = SubscribeMethods.subscribe.__code__


def _check_batch_bounds(max_count: int, max_wait: float) -> None:
    if max_count < 1:
        raise ErrorInvalidArgument(f"max_count must be at least 1, not {max_count}")
    if max_wait < 0:
        raise ErrorInvalidArgument(f"max_wait must not be negative, not {max_wait}")
