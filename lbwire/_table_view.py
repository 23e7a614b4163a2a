"""The local view of a key-value table (see lbwire/table.py): its records, applied.

One task per partition reads the partition with `LiftbridgeClient.subscribe`
from its start (so each resumes on its own across broker failures and
restarts, through the client's resumption engine) and applies each record
to the view: key -> (value, revision), the revision being the partition
offset of the key's last record. `PartitionView.next` is where the
partition's task has read to; writes fence at it and wait on it (catch-up),
never change it. A restarted server delivers nothing past its high
watermark until a message is appended, so a catch-up that waits for what
the server holds appends a record the view skips (a nudge), and so does a
read of this table's own write that waits for it while the server holds
records past its high watermark. A settled put reading its fence is nudged
by the client's settler (`lbwire._settle`), with the table's nudge record.

`lbwire.table.Table` is this view with the table's life cycle, reads and
writes; `TableEntry` and `TABLE_HEADER` are exported from there.
"""

from __future__ import annotations

import weakref
import zlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Deque, Dict, Generic, List, Optional

import anyio

from ._log import LazyLogger
from ._settle import NUDGE_AFTER, SETTLE_HEADER
from .compression import undecodable
from .error import ErrorDeadlineExceeded, ErrorNotFound, LiftbridgeError
from .retry import Backoff
from .serde import BYTES, Deserializer
from .types import K, Message, StartPosition, V

if TYPE_CHECKING:
    from .client import LiftbridgeClient
    from .table import TableWatch

# The logger of lbwire.table, whose records these are.
logger = LazyLogger("lbwire.table")

#: The header that marks the table's own records: `marker` (the proof that
#: the stream was created by `table()`, with concurrency control on) and
#: `delete` (a key's deletion). A put carries no such header.
TABLE_HEADER = "lbwire-table"
MARKER = b"marker"
DELETE = b"delete"
#: Keys starting so are the table's own (refused as user keys).
RESERVED_PREFIX = b"\x00lbwire-table"
#: The marker's key: compaction keeps the marker as its last record.
MARKER_KEY = RESERVED_PREFIX + b"-marker"
#: The key of the records that make a restarted server deliver again.
NUDGE_KEY = RESERVED_PREFIX + b"-nudge"
NUDGE = b"nudge"
#: How many settled records' ids each partition's view remembers.
REMEMBERED = 4096


@dataclass(frozen=True)
class TableEntry(Generic[V, K]):
    """One key's value at one revision (or its deletion), as the view holds it.

    Attributes:
        key: The key (deserialized).
        value: The value (deserialized); None for a deletion.
        revision: The partition offset of the key's record.
        partition: The partition the key lives in.
        deleted: True for a deletion (`Table.delete`), seen by `watch`.
    """

    key: K
    value: Optional[V]
    revision: int
    partition: int
    deleted: bool = False


class PartitionView:
    """One partition's part of the view; its reader task is the only writer of `next`."""

    __slots__ = ("changed", "error", "last_put", "next", "partition", "settled", "settled_order")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        #: Every record below this offset has been applied.
        self.next = 0
        #: The offset of this client's last write (read-your-writes).
        self.last_put = -1
        #: Set (and replaced) when `next` moves or the reader fails.
        self.changed: Optional[anyio.Event] = None
        self.error: Optional[LiftbridgeError] = None
        #: The settle ids of the last `REMEMBERED` settled records, by offset:
        #: what tells whose record holds the offset of a put left unsettled.
        self.settled: Dict[int, bytes] = {}
        self.settled_order: Deque[int] = deque()

    def remember(self, offset: int, settle_id: bytes) -> None:
        """Note that the record at `offset` carries `settle_id`."""
        self.settled[offset] = settle_id
        order = self.settled_order
        order.append(offset)
        if len(order) > REMEMBERED:
            self.settled.pop(order.popleft(), None)

    def wake(self) -> None:
        changed = self.changed
        if changed is not None:
            self.changed = None
            changed.set()

    async def wait(self) -> None:
        changed = self.changed
        if changed is None:
            changed = self.changed = anyio.Event()
        await changed.wait()


class TableView(Generic[V, K]):
    """The view half of `lbwire.table.Table`: its state, its partitions' tasks, catching up.

    Only the partition tasks (`_read`) apply records; the rest waits on them.
    """

    def __init__(
        self,
        client: LiftbridgeClient,
        stream: str,
        key_deserializer: Optional[Deserializer[Any]],
        value_deserializer: Optional[Deserializer[Any]],
    ) -> None:
        self.client = client
        self.stream = stream
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._views: List[PartitionView] = []
        #: Serialized key -> its current entry (deleted keys are absent).
        self._entries: Dict[bytes, TableEntry[Any, Any]] = {}
        #: Serialized key -> why its value could not be deserialized.
        self._undecodable: Dict[bytes, LiftbridgeError] = {}
        self._watchers: weakref.WeakSet[TableWatch[Any, Any]] = weakref.WeakSet()
        self._marked = False
        self._closed = False

    async def _await_marker(self) -> None:
        """A table opened while its creator writes the marker: wait for it a little."""
        view = self._views[0]
        if view.next > 0:
            return  # partition 0 has records, and the marker would be the first
        with anyio.move_on_after(self.client.options.ack_timeout):
            while view.next == 0 and view.error is None:
                await view.wait()

    async def _read(self, view: PartitionView) -> None:
        messages = self.client.subscribe(
            self.stream,
            partition=view.partition,
            start_position=StartPosition.EARLIEST,
            value_deserializer=BYTES,
            key_deserializer=BYTES,
        )
        try:
            async for msg in messages:
                self._apply(view, msg)
        except LiftbridgeError as error:
            logger.warning("Table %r partition %d stopped: %s", self.stream, view.partition, error)
            view.error = error
            view.wake()
            for watch in list(self._watchers):
                watch.end(error)
        finally:
            await messages.aclose()  # type: ignore[attr-defined]

    def _apply(self, view: PartitionView, msg: Message) -> None:
        key: bytes = msg.key or b""
        headers = msg.headers
        kind = headers.get(TABLE_HEADER)
        view.next = msg.offset + 1
        settle_id = headers.get(SETTLE_HEADER)
        if settle_id is not None:
            view.remember(msg.offset, settle_id)
        if kind == MARKER and key == MARKER_KEY:
            self._marked = True
        elif key and not key.startswith(RESERVED_PREFIX):
            entry = self._decode(view.partition, msg, key, kind == DELETE)
            if entry is not None:
                if entry.deleted:
                    self._entries.pop(key, None)
                else:
                    self._entries[key] = entry
                for watch in list(self._watchers):
                    watch.offer(key, entry)
        view.wake()

    def _decode(
        self, partition: int, msg: Message, key: bytes, deleted: bool
    ) -> Optional[TableEntry[Any, Any]]:
        self._undecodable.pop(key, None)
        what = "key"
        try:
            key_obj = key if self._key_deserializer is None else self._key_deserializer(key)
            what = "value"
            value: Any = None
            if not deleted:
                raw = msg.value
                value = raw if self._value_deserializer is None else self._value_deserializer(raw)
        except Exception as exc:  # what a user's deserializer raises is its own choice
            reason = f"cannot be deserialized: its {what} raised {type(exc).__name__}: {exc}"
            self._undecodable[key] = undecodable(msg, reason)
            self._entries.pop(key, None)
            return None
        return TableEntry(key_obj, value, msg.offset, partition, deleted)

    def _failed(self, view: PartitionView) -> None:
        if view.error is not None:
            raise view.error

    async def _applied(
        self, view: PartitionView, offset: int, timeout: Optional[float] = None
    ) -> bool:
        """Wait until the view has applied `offset`; False when `timeout` passed first."""
        if view.next > offset:
            # Already there: no cancel scope, which costs more than a whole
            # read from the view.
            return True
        with anyio.move_on_after(timeout) as scope:
            while view.next <= offset:
                self._failed(view)
                if self._closed:
                    raise RuntimeError("The table was closed")
                await view.wait()
            return True
        return not scope.cancelled_caught

    async def _catch_up(self, view: PartitionView, timeout: Optional[float] = None) -> bool:
        """Wait until the view holds what the partition held when this was called."""
        info = await self.client.get_partition_metadata(self.stream, view.partition)
        newest = info.newest_offset
        if info.high_watermark < newest and not await self._applied(view, newest, NUDGE_AFTER):
            # A restarted server delivers nothing past its high watermark,
            # which it moves again only when a message is appended: append
            # one that the view skips.
            await self._nudge(view)
        return await self._applied(view, newest, timeout)

    async def _nudge(self, view: PartitionView) -> None:
        logger.debug("Nudging table %r partition %d", self.stream, view.partition)
        await self.client.publish(
            b"",
            stream=self.stream,
            key=NUDGE_KEY,
            partition=view.partition,
            headers={TABLE_HEADER: NUDGE},
            value_serializer=BYTES,
            key_serializer=BYTES,
        )

    async def _nudge_withheld(self, view: PartitionView) -> None:
        """Nudge if the server holds records past its high watermark the view has not read."""
        try:
            info = await self.client.get_partition_metadata(self.stream, view.partition)
            if info.high_watermark < info.newest_offset and view.next <= info.newest_offset:
                await self._nudge(view)
        except LiftbridgeError as error:
            # The caller waits on and tries again (a restarting server refuses for a while).
            logger.debug("Table %r partition %d: no nudge: %s", self.stream, view.partition, error)

    async def _own_write(self, view: PartitionView) -> None:
        """Wait until the view holds this table's last write to the partition.

        An acked write may not come: a restarted server delivers nothing
        past its high watermark until a message is appended, so this nudges
        while it waits.
        """
        while not await self._applied(view, view.last_put, NUDGE_AFTER):
            await self._nudge_withheld(view)

    async def _catch_up_within(self, view: PartitionView, backoff: Backoff) -> None:
        """`_catch_up` until done, also while a restarted server does not know the stream."""
        while True:
            try:
                if await self._catch_up(view, self.client.options.ack_timeout):
                    return
                failure: LiftbridgeError = ErrorDeadlineExceeded(
                    f"Table {self.stream!r} partition {view.partition}: the view did not "
                    "catch up within the retry policy's max_time"
                )
            except ErrorNotFound as error:
                failure = error
            if not await backoff.wait():
                raise failure

    async def _catch_up_all(self) -> None:
        policy = self.client.options.retry_policy
        deadline = anyio.current_time() + policy.max_time
        for view in self._views:
            await self._catch_up_within(view, Backoff(policy, deadline))

    def _view_of(self, key: bytes) -> PartitionView:
        views = self._views
        return views[zlib.crc32(key) % len(views)] if len(views) > 1 else views[0]

    async def _own_writes(self) -> None:
        for view in self._views:
            await self._own_write(view)
            self._failed(view)
