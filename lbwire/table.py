"""A key-value table kept on a compacted stream: `LiftbridgeClient.table(stream)`.

The stream is the table's log: each record is one key's new value (or its
deletion), and log compaction keeps each key's last record. `Table` keeps a
local view of it, key -> (value, revision), filled by one task per partition
that reads the partition with `LiftbridgeClient.subscribe` from its start
(so each resumes on its own across broker failures and restarts, through
the client's resumption engine). The view is in `lbwire._table_view`; this
module has the table's life cycle, its reads and its writes.

A key lives in the partition go-liftbridge's key partitioner picks (CRC-32
IEEE of the serialized key, modulo the partition count), so Go programs
find the same keys. A key's revision is the partition offset of its last
record.

Writes are fenced. Every put carries the partition's next offset as its
expected offset, as far as the view has read (`PartitionView.next`); the
server stores it only if nothing was appended since, so a compare-and-set
checked against the view is exact. A refusal means the view was behind: it catches
up, checks the key's own revision again and tries again, so writes to
other keys of the same partition cost a retry, never a false conflict. A
put whose ack is lost is settled (`publish(settle=True)`, the same fence)
before anything is sent again, so it is stored once or not at all.

The server ignores expected offsets on a stream without optimistic
concurrency control, and its metadata does not say which kind a stream is.
So `table()` creates the stream with it on and writes a marker record
first; a stream without the marker refuses `expected=` (`ErrorNotATable`).
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Deque,
    Dict,
    Generic,
    List,
    Optional,
    Tuple,
    Type,
    Union,
)

import anyio

from ._lifecycle import close_task_group, open_task_group
from ._log import LazyLogger

# The tuning and keys of the view and its nudges, importable from here too.
from ._settle import NUDGE_AFTER as NUDGE_AFTER
from ._table_view import (
    DELETE,
    MARKER,
    MARKER_KEY,
    RESERVED_PREFIX,
    TABLE_HEADER,
    PartitionView,
    TableEntry,
    TableView,
)
from ._table_view import NUDGE_KEY as NUDGE_KEY
from ._table_view import REMEMBERED as REMEMBERED
from .error import (
    ErrorAlreadyExists,
    ErrorDeadlineExceeded,
    ErrorIncorrectOffset,
    ErrorInvalidArgument,
    ErrorNotATable,
    ErrorNotFound,
    ErrorNotStored,
    ErrorRevisionMismatch,
    ErrorUnsettled,
    LiftbridgeError,
)
from .reader import stream_partitions
from .retry import Backoff
from .serde import BYTES, Deserializer, Serializer, resolve
from .types import K, V

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .client import LiftbridgeClient

__all__ = ["ABSENT", "TABLE_HEADER", "Table", "TableEntry", "TableWatch"]

# Shown (reprs, tracebacks, pickles) under this public module, not the
# private one that defines it.
TableEntry.__module__ = __name__

logger = LazyLogger("lbwire.table")

#: The retention by age of a table's stream (seconds: 100 years). The
#: server's default (a week) would delete the segments of keys not written
#: for that long; compaction already keeps only each key's last record.
RETENTION_MAX_AGE = 100 * 365 * 24 * 3600

#: `expected=ABSENT`: write only if the key has no value (never set, or deleted).
ABSENT = -1


class Table(TableView[V, K]):
    """A key-value table on a compacted stream, with a local view of it.

    Make it with `LiftbridgeClient.table(stream)` and use it as an async
    context manager inside the client's block::

        async with client.table("config") as table:
            revision = await table.put(b"mode", b"fast")
            entry = await table.get(b"mode")          # TableEntry or None
            await table.put(b"mode", b"safe", expected=entry.revision)

    Entering the block creates the stream (compaction and optimistic
    concurrency control on, `partitions` partitions) unless it exists, and
    reads it to its end, so the view starts current. From then on one task
    per partition keeps the view up to date.

    Reads come from the view: `get`, `keys`, `items` wait only until it
    holds this table's own writes (read-your-writes), not for other
    writers'; `watch` follows its changes. Writes (`put`, `delete`) are
    fenced publishes, settled when their ack is lost; `expected=` makes one
    a compare-and-set on the key's revision (`ABSENT`: the key has no
    value), raising `ErrorRevisionMismatch` when the key moved on.

    With concurrency control the server appends one message at a time to a
    partition, and a write fenced at an offset another write took is tried
    again after the view caught up: writers contending for one partition
    pay a round trip per conflict, even for different keys. More partitions
    spread keys, hence writers.

    Serializers: keys and values are bytes unless serializers say otherwise
    (the table's, else the client's; see `lbwire.serde`). A value its
    deserializer refuses makes the reads of that key raise
    `ErrorUndecodableMessage`.

    Raises (from any method, once a partition's reader failed for good):
        LiftbridgeError: The partition's subscription failed (stream deleted,
            unreachable for the client's `resubscribe_wait_time`).
    """

    def __init__(
        self,
        client: LiftbridgeClient,
        stream: str,
        *,
        partitions: int = 1,
        replication_factor: int = 1,
        create: bool = True,
        key_serializer: Optional[Serializer[Any]] = None,
        value_serializer: Optional[Serializer[Any]] = None,
        key_deserializer: Optional[Deserializer[K]] = None,
        value_deserializer: Optional[Deserializer[V]] = None,
    ) -> None:
        if not stream:
            raise ErrorInvalidArgument("stream must not be empty")
        if partitions < 1:
            raise ErrorInvalidArgument(f"partitions must be at least 1, not {partitions}")
        options = client.options
        self._create = create
        self._create_partitions = partitions
        self._replication_factor = replication_factor
        self._key_serializer = resolve("key_serializer", key_serializer, options.key_serializer)
        self._value_serializer = resolve(
            "value_serializer", value_serializer, options.value_serializer
        )
        super().__init__(
            client,
            stream,
            resolve("key_deserializer", key_deserializer, options.key_deserializer),
            resolve("value_deserializer", value_deserializer, options.value_deserializer),
        )
        self._task_group: Optional[TaskGroup] = None

    # ------------------------------------------------------------------ life cycle

    @property
    def partitions(self) -> int:
        """The stream's partition count (known once the block is entered)."""
        return len(self._views)

    @property
    def fenced(self) -> bool:
        """Whether the stream carries the table's marker, so `expected=` is honoured."""
        return self._marked

    async def __aenter__(self) -> Table[V, K]:
        """Create the stream unless it exists, start the readers, read to the end.

        Raises:
            ErrorNotFound: The stream does not exist and `create` is False.
        """
        if self._task_group is not None:
            raise RuntimeError("The table is already open")
        client = self.client
        created = False
        if self._create:
            try:
                await client.create_stream(
                    self.stream,
                    subject=self.stream,
                    partitions=self._create_partitions,
                    replication_factor=self._replication_factor,
                    enable_compact=True,
                    optimistic_concurrency_control=True,
                    retention_max_age=RETENTION_MAX_AGE,
                    wait_for_stream=True,
                )
                created = True
            except ErrorAlreadyExists:
                pass
        if created:
            # Offset 0 of partition 0, fenced: a stream without concurrency
            # control would have been created by someone else.
            await client.publish(
                b"",
                stream=self.stream,
                key=MARKER_KEY,
                partition=0,
                headers={TABLE_HEADER: MARKER},
                expected_offset=0,
                settle=True,
                value_serializer=BYTES,
                key_serializer=BYTES,
            )
        numbers = await stream_partitions(client, self.stream)
        self._views = [PartitionView(n) for n in range(len(numbers))]
        self._closed = False
        tg = self._task_group = await open_task_group()
        try:
            for view in self._views:
                tg.start_soon(self._read, view)
            await self._catch_up_all()
            if not self._marked and not created:
                await self._await_marker()
        except BaseException as exc:
            self._task_group = None
            await close_task_group(tg, type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> Optional[bool]:
        """Stop the readers; open watches end."""
        tg, self._task_group = self._task_group, None
        self._closed = True
        for view in self._views:
            view.wake()
        for watch in list(self._watchers):
            watch.end()
        if tg is not None:
            await close_task_group(tg, exc_type, exc, traceback)
        return None

    def _check(self) -> None:
        if self._task_group is None:
            raise RuntimeError("Use the table inside 'async with client.table(...)'")

    async def _settle(
        self, view: PartitionView, error: ErrorUnsettled, backoff: Backoff
    ) -> Optional[int]:
        """Where the put `error` left unsettled is stored, or None when it is not.

        Raises:
            ErrorUnsettled: The view cannot tell (it passed the offset long ago).
        """
        offset = error.offset
        if offset is None:
            return None  # no copy could be stored (the fence held every one)
        await self._catch_up_within(view, backoff)
        if view.next <= offset:
            raise error
        found = view.settled.get(offset)
        if found is None:
            raise error
        if found == error.correlation_id.encode():
            logger.debug("Table %r: settled put found at offset %d", self.stream, offset)
            return offset
        return None

    def _key_bytes(self, key: Any) -> bytes:
        data = key if self._key_serializer is None else self._key_serializer(key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ErrorInvalidArgument(
                f"A table key must serialize to bytes, not {type(data).__name__}"
            )
        data = bytes(data)
        if not data:
            raise ErrorInvalidArgument("A table key must not be empty")
        if data.startswith(RESERVED_PREFIX):
            raise ErrorInvalidArgument(
                f"Keys starting with {RESERVED_PREFIX!r} are the table's own"
            )
        return data

    # ------------------------------------------------------------------ reads

    async def get(self, key: Any) -> Optional[TableEntry[V, K]]:
        """The key's current entry (value and revision), or None when it has none.

        Waits only until the view holds this table's own last write to the
        key's partition; other writers' writes show once the view read them.

        Raises:
            ErrorUndecodableMessage: The key's value could not be deserialized.
        """
        self._check()
        data = self._key_bytes(key)
        view = self._view_of(data)
        await self._own_write(view)
        self._failed(view)
        if data in self._undecodable:
            raise self._undecodable[data]
        return self._entries.get(data)

    async def keys(self) -> List[K]:
        """Every key that has a value (after this table's own writes)."""
        self._check()
        await self._own_writes()
        return [entry.key for entry in self._entries.values()]

    async def items(self) -> List[Tuple[K, TableEntry[V, K]]]:
        """Every key with its entry (after this table's own writes)."""
        self._check()
        await self._own_writes()
        return [(entry.key, entry) for entry in self._entries.values()]

    def watch(
        self, prefix: Union[bytes, str, None] = None, *, current: bool = True
    ) -> TableWatch[V, K]:
        """Follow the table's changes: an async iterator of `TableEntry`.

        With `current`, it starts with every key's current entry, then each
        change as the view applies it (a deletion has `deleted` True), in
        partition order (so every revision of one key, in order). With
        `prefix` only keys starting with it (keys must then be str or
        bytes). It buffers what it was not asked for yet; leave it (or
        `async with` it) when done. It ends when the table is closed.
        """
        self._check()
        watch: TableWatch[V, K] = TableWatch(prefix)
        if current:
            for key, entry in sorted(
                self._entries.items(), key=lambda item: (item[1].partition, item[1].revision)
            ):
                watch.offer(key, entry)
        self._watchers.add(watch)
        return watch

    # ------------------------------------------------------------------ writes

    async def put(self, key: Any, value: Any, *, expected: Optional[int] = None) -> int:
        """Set the key's value; its new revision.

        With `expected` (a revision, or `ABSENT`), compare-and-set: stored
        only if the key's revision is still `expected`. A put whose ack is
        lost is settled before anything is sent again: it is stored once
        or not at all.

        Raises:
            ErrorRevisionMismatch: The key's revision is not `expected`.
            ErrorNotATable: `expected` on a stream without the table's marker.
            ErrorUnsettled: The ack was lost and settling did not finish in
                the retry policy's `max_time`: stored at most once.
        """
        data = value if self._value_serializer is None else self._value_serializer(value)
        return await self._write(key, data, None, expected)

    async def delete(self, key: Any, *, expected: Optional[int] = None) -> int:
        """Delete the key: a record marked by the `lbwire-table: delete` header; its revision.

        The record stays in the log as the key's last one (compaction keeps
        it). `expected` makes it a compare-and-set, as in `put`.

        Raises:
            The same as `put`.
        """
        return await self._write(key, b"", {TABLE_HEADER: DELETE}, expected)

    async def _write(
        self, key: Any, value: bytes, headers: Optional[Dict[str, bytes]], expected: Optional[int]
    ) -> int:
        self._check()
        data = self._key_bytes(key)
        if expected is not None:
            if not self._marked:
                raise ErrorNotATable(
                    f"Stream {self.stream!r} has no table marker, so the server may ignore "
                    "expected offsets: compare-and-set (expected=) needs a stream created by "
                    "client.table()"
                )
            if expected < ABSENT:
                raise ErrorInvalidArgument(f"expected must be a revision or ABSENT, not {expected}")
        view = self._view_of(data)
        client = self.client
        options = client.options
        deadline = anyio.current_time() + options.retry_policy.max_time
        #: Paces the tries refused because the server has not loaded the stream.
        backoff = Backoff(options.retry_policy, deadline)
        await self._own_write(view)
        while True:
            self._failed(view)
            if expected is not None:
                entry = self._entries.get(data)
                revision = ABSENT if entry is None else entry.revision
                if revision != expected:
                    raise ErrorRevisionMismatch(
                        f"Key {key!r} of table {self.stream!r} is at revision {revision}, "
                        f"not {expected}: read it again and retry",
                        key=key,
                        expected=expected,
                        revision=revision,
                    )
            fence = view.next
            try:
                ack = await client.publish(
                    value,
                    stream=self.stream,
                    key=data,
                    partition=view.partition,
                    headers=headers,
                    expected_offset=fence if self._marked else None,
                    settle=self._marked,
                    value_serializer=BYTES,
                    key_serializer=BYTES,
                )
            except ErrorIncorrectOffset as refused:
                # Not stored: another write took the offset. Catch up and check again.
                await self._catch_up_within(view, backoff)
                stored = self._holds(view, refused)
                if stored is not None:
                    # A copy of this very put holds its fence: count it once.
                    logger.warning(
                        "Table %r: a put reported not stored is stored at offset %d",
                        self.stream,
                        stored,
                    )
                    return self._stored(view, stored)
                if anyio.current_time() >= deadline:
                    raise ErrorDeadlineExceeded(
                        f"Could not write key {key!r} to table {self.stream!r} within the "
                        "retry policy's max_time: other writes kept taking its partition's "
                        "next offset (not stored)"
                    ) from None
                continue
            except ErrorUnsettled as error:
                # Settling could not read the fence in time (a restarted
                # server delivers nothing until a message is appended): the
                # view tells whose record holds the offset.
                offset = await self._settle(view, error, backoff)
                if offset is None:
                    continue  # not stored: check again
                return self._stored(view, offset)
            except ErrorNotFound:
                # Refused, so not stored: a restarted server answers so for a
                # while before it has loaded its streams; this one was open.
                if not await backoff.wait():
                    raise
                continue
            assert ack is not None  # (an acked publish)
            return self._stored(view, int(ack.offset))

    @staticmethod
    def _stored(view: PartitionView, offset: int) -> int:
        """A write of this table stored at `offset`: reads wait for it from now on."""
        if offset > view.last_put:
            view.last_put = offset
        return offset

    @staticmethod
    def _holds(view: PartitionView, refused: ErrorIncorrectOffset) -> Optional[int]:
        """The offset where the view shows the publish `refused` is about, if it does."""
        if not isinstance(refused, ErrorNotStored):
            return None
        offset = refused.offset
        if offset is None or view.next <= offset:
            return None
        if view.settled.get(offset) != refused.correlation_id.encode():
            return None
        return offset


class TableWatch(Generic[V, K]):
    """The changes of a table (`Table.watch`): an async iterator of `TableEntry`.

    A plain object (not a generator): leaving `async for` early leaves
    nothing open. `async with` it, or call `aclose`, to stop it buffering.
    """

    def __init__(self, prefix: Union[bytes, str, None]) -> None:
        self._prefix: Optional[bytes]
        if prefix is None:
            self._prefix = None
        elif isinstance(prefix, str):
            self._prefix = prefix.encode()
        elif isinstance(prefix, (bytes, bytearray)):
            self._prefix = bytes(prefix)
        else:
            raise ErrorInvalidArgument(f"prefix must be str or bytes, not {type(prefix).__name__}")
        self._buffer: Deque[TableEntry[V, K]] = deque()
        self._wake: Optional[anyio.Event] = None
        self._closed = False
        self._error: Optional[LiftbridgeError] = None

    def offer(self, key: bytes, entry: TableEntry[Any, Any]) -> None:
        """Buffer `entry` if its key matches (the table calls this for each change)."""
        if self._closed:
            return
        if self._prefix is None or key.startswith(self._prefix):
            self._buffer.append(entry)
            self.wake()

    def end(self, error: Optional[LiftbridgeError] = None) -> None:
        """The table closed (None), or one of its readers failed: after the buffer, stop."""
        if error is None:
            self._closed = True
        elif self._error is None:
            self._error = error
        self.wake()

    def wake(self) -> None:
        """Wake the iterator waiting for a change."""
        event = self._wake
        if event is not None:
            self._wake = None
            event.set()

    def __aiter__(self) -> TableWatch[V, K]:
        return self

    async def __anext__(self) -> TableEntry[V, K]:
        """The next change; StopAsyncIteration once the table or the watch is closed."""
        buffer = self._buffer
        while True:
            if buffer:
                return buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            event = self._wake = anyio.Event()
            await event.wait()

    async def aclose(self) -> None:
        """Stop following the table (what is buffered is dropped)."""
        self._closed = True
        self._buffer.clear()
        self.wake()

    async def __aenter__(self) -> TableWatch[V, K]:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
