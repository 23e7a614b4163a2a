"""The blocking client's wrappers of async context managers (see lbwire/sync.py).

`Held` enters an async context manager in one task of the loop thread and
leaves it from the same task, so that the manager may open a task group or
a cancel scope. The blocking consumer, reader and table hold their async
counterpart so (`_HeldWrapper`), and `lbwire.sync` exports them.
"""

from __future__ import annotations

from concurrent.futures import Future
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncContextManager,
    Awaitable,
    Callable,
    ClassVar,
    Dict,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)

import anyio

from .types import K, V

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from .consumer import Consumer as AsyncConsumer
    from .consumer import GroupPartition, PartitionKey
    from .reader import StreamReader
    from .sync import _LoopClient
    from .table import Table as AsyncTable
    from .table import TableEntry
    from .types import Message

_T = TypeVar("_T")
_Wrapper = TypeVar("_Wrapper", bound="_HeldWrapper")


class Held(Generic[_T]):
    """An async context manager entered and left by one task of the loop thread."""

    def __init__(self, owner: _LoopClient, manager: AsyncContextManager[_T]) -> None:
        self._owner = owner
        self._manager = manager
        self._leave: Optional[anyio.Event] = None
        self._exc_info: Tuple[Any, Any, Any] = (None, None, None)
        self._future: Optional[Future[Optional[bool]]] = None

    async def _hold(self, *, task_status: TaskStatus[_T]) -> Optional[bool]:
        # Entered and left by this one task, so that the manager may open a
        # task group or cancel scope.
        self._leave = anyio.Event()
        value = await self._manager.__aenter__()
        try:
            task_status.started(value)
            await self._leave.wait()
        except BaseException as exc:
            if not await self._manager.__aexit__(type(exc), exc, exc.__traceback__):
                raise
            return None
        return await self._manager.__aexit__(*self._exc_info)

    def __enter__(self) -> _T:
        if self._owner.closed:
            raise RuntimeError("LiftbridgeClient is closed")
        self._future, value = self._owner.portal.start_task(self._hold)
        return cast(_T, value)

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> Optional[bool]:
        leave, future = self._leave, self._future
        self._future = None
        if leave is None or future is None:
            return None
        self._exc_info = (exc_type, exc, traceback)
        try:
            self._owner.portal.call(leave.set)
        except RuntimeError:
            return None  # the client has closed, and the manager with it
        return future.result()


class _HeldWrapper:
    """A blocking wrapper of an async context manager, held open while its block runs."""

    #: The client method that makes it, named when it is used outside its block.
    _method: ClassVar[str]

    def __init__(self, owner: _LoopClient, manager: AsyncContextManager[Any]) -> None:
        self._owner = owner
        self._manager = manager
        self._held: Optional[Held[Any]] = None

    def __enter__(self: _Wrapper) -> _Wrapper:
        held = Held(self._owner, self._manager)
        held.__enter__()
        self._held = held
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.__exit__(exc_type, exc, traceback)

    def _check(self) -> None:
        if self._held is None:
            method = self._method
            raise RuntimeError(f"Use the {method} inside 'with client.{method}(...)'")

    def _run(self, func: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        self._check()
        return self._owner.run(func, *args, **kwargs)


class Consumer(_HeldWrapper, Generic[V, K]):
    """A consumer group member (see `lbwire.consumer.Consumer`), blocking.

    Use it as a context manager (joining the group), then iterate it::

        with client.consumer("billing", ["orders"]) as consumer:
            for message in consumer:
                handle(message)

    As in the async consumer, a message counts as processed when the next one
    is asked for; positions are committed periodically, on `checkpoint()`
    and on leaving the block.
    """

    _method = "consumer"

    def __init__(self, owner: _LoopClient, consumer: AsyncConsumer[V, K]) -> None:
        super().__init__(owner, consumer)
        self._consumer = consumer

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def close(self) -> None:
        """Commit what was processed and leave the group."""
        # The block's exception is not the member's: it leaves as on a clean exit.
        super().__exit__(None, None, None)

    def __iter__(self) -> Iterator[Message[V, K]]:
        return self

    def __next__(self) -> Message[V, K]:
        try:
            message: Message[V, K] = self._run(self._consumer.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None
        return message

    def checkpoint(self) -> None:
        """Commit the positions processed since the last commit."""
        self._owner.run(self._consumer.checkpoint)

    def commit(self, offsets: Optional[Mapping[PartitionKey, int]] = None) -> None:
        """Commit what was processed, or the next offsets given (see the async `commit`)."""
        self._owner.run(self._consumer.commit, offsets)

    def seek(self, partition: PartitionKey, offset: int) -> None:
        """Read `partition` from `offset` on (see the async `seek`)."""
        self._owner.portal.call(self._consumer.seek, partition, offset)

    def pause(self, partition: PartitionKey) -> None:
        """Hand out no more messages of `partition` until `resume(partition)`."""
        self._owner.portal.call(self._consumer.pause, partition)

    def resume(self, partition: PartitionKey) -> None:
        """Hand out `partition`'s messages again."""
        self._owner.portal.call(self._consumer.resume, partition)

    def lag(self) -> Dict[GroupPartition, int]:
        """Per assigned partition, the messages after the last one committed (see async `lag`)."""
        return self._owner.run(self._consumer.lag)

    def known_lag(self) -> Dict[GroupPartition, int]:
        """`lag()` by the newest high watermark the member knows, without a call (see async)."""
        return self._owner.portal.call(self._consumer.known_lag)

    def wait_assigned(self) -> None:
        """Wait until the coordinator has answered this member at least once."""
        self._owner.run(self._consumer.wait_assigned)

    @property
    def assignments(self) -> Dict[str, List[int]]:
        """The partitions this member currently reads, by stream."""
        return self._owner.portal.call(lambda: self._consumer.assignments)

    @property
    def consumer_id(self) -> str:
        """The member's id in the group."""
        return self._consumer.consumer_id

    @property
    def cursor_id(self) -> str:
        """The cursor id the group's committed positions are stored under."""
        return self._consumer.cursor_id


class Reader(_HeldWrapper, Generic[V, K]):
    """A whole-stream reader (see `lbwire.reader.StreamReader`), blocking.

    Use it as a context manager, then iterate it (or its `batches`)::

        with client.reader("orders", cursor_id="billing") as reader:
            for message in reader:
                handle(message)

    What counts as processed, and when it is committed, is as in the async
    reader; its methods are the async reader's, blocking.
    """

    _method = "reader"

    def __init__(self, owner: _LoopClient, reader: StreamReader[V, K]) -> None:
        super().__init__(owner, reader)
        self._reader = reader

    def __iter__(self) -> Iterator[Message[V, K]]:
        return self

    def __next__(self) -> Message[V, K]:
        try:
            return self._run(self._reader.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None

    def batches(self, max_count: int, max_wait: float) -> Iterator[List[Message]]:
        """Lists of at most `max_count` messages (see `StreamReader.batches`)."""
        self._reader.batches(max_count, max_wait)  # checks the arguments now
        while True:
            try:
                yield self._run(self._reader.next_batch, max_count, max_wait)
            except StopAsyncIteration:
                return

    def commit(self, offsets: Optional[Dict[int, int]] = None) -> None:
        """Store the cursors (see `StreamReader.commit`)."""
        self._run(self._reader.commit, offsets)

    def seek(self, partition: int, offset: int) -> None:
        """Read `partition` from `offset` on (see `StreamReader.seek`)."""
        self._owner.portal.call(self._reader.seek, partition, offset)

    def pause(self, partition: int) -> None:
        """Hand out no more messages of `partition` until `resume`."""
        self._owner.portal.call(self._reader.pause, partition)

    def resume(self, partition: int) -> None:
        """Hand out `partition`'s messages again."""
        self._owner.portal.call(self._reader.resume, partition)

    def position(self) -> Dict[int, Optional[int]]:
        """Per partition, the offset of the next message handed out."""
        return self._owner.portal.call(self._reader.position)

    def committed(self) -> Dict[int, Optional[int]]:
        """Per partition, the committed position (next offset by the cursor)."""
        return self._owner.portal.call(self._reader.committed)

    def highwater(self) -> Dict[int, int]:
        """Per partition, the offset of the newest committed message."""
        return self._run(self._reader.highwater)

    def lag(self) -> Dict[int, int]:
        """Per partition, the messages after the last one processed and committed."""
        return self._run(self._reader.lag)

    def known_lag(self) -> Dict[int, int]:
        """`lag()` by the newest high watermark the reader knows, without a call (see async)."""
        return self._owner.portal.call(self._reader.known_lag)


class Table(_HeldWrapper, Generic[V, K]):
    """A key-value table on a compacted stream (see `lbwire.table.Table`), blocking.

    Use it as a context manager::

        with client.table("config") as table:
            revision = table.put(b"mode", b"fast")
            entry = table.get(b"mode")
            table.put(b"mode", b"safe", expected=entry.revision)

    Its methods are the async table's, blocking; `watch` is a plain iterator.
    """

    _method = "table"

    def __init__(self, owner: _LoopClient, table: AsyncTable[V, K]) -> None:
        super().__init__(owner, table)
        self._table = table

    @property
    def fenced(self) -> bool:
        """Whether the stream carries the table's marker (compare-and-set works)."""
        return self._table.fenced

    def get(self, key: Any) -> Optional[TableEntry[V, K]]:
        """The key's entry (value and revision), or None (see `Table.get`)."""
        return self._run(self._table.get, key)

    def put(self, key: Any, value: Any, *, expected: Optional[int] = None) -> int:
        """Set the key's value; its new revision (see `Table.put`)."""
        return self._run(self._table.put, key, value, expected=expected)

    def delete(self, key: Any, *, expected: Optional[int] = None) -> int:
        """Delete the key; the deletion's revision (see `Table.delete`)."""
        return self._run(self._table.delete, key, expected=expected)

    def keys(self) -> List[K]:
        """Every key that has a value."""
        return self._run(self._table.keys)

    def items(self) -> List[Tuple[K, TableEntry[V, K]]]:
        """Every key with its entry."""
        return self._run(self._table.items)

    def watch(
        self, prefix: Union[bytes, str, None] = None, *, current: bool = True
    ) -> Iterator[TableEntry[V, K]]:
        """The table's changes, as a plain iterator (see `Table.watch`)."""
        self._check()
        changes = self._owner.portal.call(lambda: self._table.watch(prefix, current=current))
        return self._owner.iterate(changes)
