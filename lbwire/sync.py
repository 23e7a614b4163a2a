"""A blocking Liftbridge client, for scripts, notebooks and threaded programs.

`LiftbridgeClient` here has the methods of `lbwire.client.LiftbridgeClient`,
blocking instead of async: it runs the async client on an event loop in a
private thread (an anyio blocking portal) and hands each call to it::

    from lbwire.sync import LiftbridgeClient

    with LiftbridgeClient(["127.0.0.1:9292"]) as client:
        client.create_stream("events", wait_for_stream=True)
        client.publish(b"hello", stream="events")
        for message in client.subscribe("events", start_position=StartPosition.EARLIEST):
            print(message.value)

`subscribe` and `publish_bulk` return plain iterators, and `consumer` a
consumer group member that is a context manager and an iterator. One client
may be used from several threads at once. Ctrl-C (KeyboardInterrupt) while a
call or an iteration blocks cancels that call or subscription in the event
loop before it propagates; `close()` (also from another thread) ends every
subscription, closes the connections and stops the thread.

How the two sides meet: every task group or cancel scope the async client
opens must be left by the task that entered it, so the client's `async with`
block, each subscription and each consumer run in one long-lived task of
their own in the loop thread, never split across portal calls (and so does
an async context manager wrapped by `context()`).

The methods are not written here: scripts/gen_sync.py writes one per public
method, property and setting of the async client into
`lbwire._sync_generated.SyncClientMethods`, with the same parameters,
defaults and docstring and the return type made blocking, so type checkers
see them. This module has the machinery they call (`_LoopClient`: `run`,
`iterate`, `context`) and the hooks `_wrap_<name>` for the methods whose
results are themselves asynchronous (`consumer`, `publish_async`, `publish_batch`).
The blocking `Consumer`, `Reader` and `Table` those hooks return, and what
holds an async context manager open in the loop thread (`context`), are in
`lbwire._sync_held`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from concurrent.futures import CancelledError, Future
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncContextManager,
    AsyncIterator,
    Awaitable,
    Callable,
    ContextManager,
    Iterator,
    List,
    Optional,
    Set,
    Type,
    TypeVar,
)

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._sync_generated import SyncClientMethods
from ._sync_held import Consumer, Held, Reader, Table
from .client import LiftbridgeClient as AsyncLiftbridgeClient
from .types import K, V

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectReceiveStream

    from .consumer import Consumer as AsyncConsumer
    from .publish import PendingAck
    from .reader import StreamReader
    from .table import Table as AsyncTable
    from .types import Ack

__all__ = ["Consumer", "LiftbridgeClient", "Reader", "Table"]

# Shown (reprs, tracebacks) under this public module, not the private one
# that defines them.
for _wrapper in (Consumer, Reader, Table):
    _wrapper.__module__ = __name__
del _wrapper

_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="_LoopClient")

_END = object()


def _name_thread() -> None:
    threading.current_thread().name = "lbwire-sync"


class _Pump:
    """Runs one async iterator in a task of the loop thread; the caller's thread takes its items.

    Items cross in batches (everything buffered at the time) so that a fast
    subscription costs one thread hand-off per batch, not per message.
    """

    def __init__(self, owner: _LoopClient, agen: AsyncIterator[Any], buffer: int) -> None:
        self._owner = owner
        self._portal = owner.portal
        self._agen = agen
        self._scope: Optional[anyio.CancelScope] = None
        self._receive: Optional[MemoryObjectReceiveStream[Any]] = None
        self._future: Optional[Future[None]] = None
        self._buffer = buffer

    def start(self) -> None:
        self._future, _ = self._portal.start_task(self._run)

    async def _run(self, *, task_status: TaskStatus[None]) -> None:
        send, receive = anyio.create_memory_object_stream[Any](self._buffer)
        self._receive = receive
        with anyio.CancelScope() as scope:
            self._scope = scope
            task_status.started()
            async with send:
                try:
                    async for item in self._agen:
                        await send.send(item)
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:  # handed to the iterating thread
                    await send.send(_Failure(exc))
                finally:
                    aclose = getattr(self._agen, "aclose", None)
                    if aclose is not None:
                        with anyio.CancelScope(shield=True):
                            await aclose()

    async def _take(self) -> List[Any]:
        assert self._receive is not None
        try:
            batch = [await self._receive.receive()]
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return [_END]
        while True:
            try:
                batch.append(self._receive.receive_nowait())
            except anyio.WouldBlock:
                return batch
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                batch.append(_END)
                return batch

    def batches(self) -> Iterator[List[Any]]:
        while True:
            try:
                yield self._owner.run(self._take)
            except RuntimeError:
                if not self._owner.closed:
                    raise
                return  # closed from another thread: the iteration ends

    async def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        if self._receive is not None:
            self._receive.close()

    def cancel(self) -> None:
        """Cancel the iteration in the loop thread and wait until it has ended."""
        try:
            self._portal.call(self._cancel)
        except RuntimeError:
            return  # the portal has stopped: everything in it has ended
        if self._future is not None:
            with contextlib.suppress(CancelledError, Exception):
                self._future.result()


class _Failure:
    """An exception raised by the async iterator, carried to the iterating thread."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _LoopClient:
    """The machinery of the blocking client; `SyncClientMethods` adds the async client's methods.

    Methods of the async client that return something asynchronous have a
    hook `_wrap_<name>` here that makes it blocking; scripts/gen_sync.py
    passes their results to it.
    """

    _client: AsyncLiftbridgeClient

    def _start(
        self,
        make_client: Callable[[], AsyncLiftbridgeClient],
        *,
        backend: str = "asyncio",
        subscription_buffer: int = 256,
    ) -> None:
        if subscription_buffer < 1:
            raise ValueError(f"subscription_buffer must be at least 1, not {subscription_buffer}")
        self._buffer = subscription_buffer
        self._lock = threading.Lock()
        self._closed = False
        self._pumps: Set[_Pump] = set()
        self._portal_cm: ContextManager[BlockingPortal] = start_blocking_portal(backend)
        self._portal = self._portal_cm.__enter__()
        try:
            # Named here, not with start_blocking_portal(name=...), which
            # anyio releases before 4.5 do not take.
            self._portal.call(_name_thread)
            self._client = self._portal.call(make_client)
            self._stop: anyio.Event = self._portal.call(anyio.Event)
            self._host, _ = self._portal.start_task(self._hold_open)
        except BaseException:
            self._stop_portal()
            raise

    async def _hold_open(self, *, task_status: TaskStatus[None]) -> None:
        # The client's task group is entered and left by this one task.
        async with self._client:
            task_status.started()
            await self._stop.wait()

    @property
    def portal(self) -> BlockingPortal:
        """The portal to the client's event loop thread (for lbwire's own wrappers)."""
        return self._portal

    @property
    def async_client(self) -> AsyncLiftbridgeClient:
        """The async client this one drives (use it only from the loop thread)."""
        return self._client

    def run(self, func: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        """Run `func(*args, **kwargs)` in the loop thread and wait for its result.

        KeyboardInterrupt while waiting cancels the call there first.

        Raises:
            RuntimeError: The client is closed.
        """
        if self._closed:
            raise RuntimeError("LiftbridgeClient is closed")
        try:
            future: Future[_T] = self._portal.start_task_soon(
                functools.partial(func, *args, **kwargs)
            )
        except RuntimeError:
            raise RuntimeError("LiftbridgeClient is closed") from None
        try:
            return future.result()
        except CancelledError:
            raise RuntimeError("LiftbridgeClient was closed during the call") from None
        except BaseException:
            if not future.done():  # interrupted while waiting (Ctrl-C)
                future.cancel()
            raise

    def iterate(self, agen: AsyncIterator[_T]) -> Iterator[_T]:
        """Iterate `agen` (from the async client) in the loop thread, as a plain iterator.

        Closing the returned generator (or leaving it on an exception, or
        KeyboardInterrupt) cancels the iteration in the loop thread; closing
        the client ends it.
        """
        pump = _Pump(self, agen, self._buffer)
        with self._lock:
            if self._closed:
                raise RuntimeError("LiftbridgeClient is closed")
            self._pumps.add(pump)
        try:
            pump.start()
            for batch in pump.batches():
                for item in batch:
                    if item is _END:
                        return
                    if isinstance(item, _Failure):
                        raise item.error
                    yield item
        finally:
            # Also on break, close() of the iterator, and KeyboardInterrupt.
            pump.cancel()
            with self._lock:
                self._pumps.discard(pump)

    def context(self, manager: AsyncContextManager[_T]) -> ContextManager[_T]:
        """Enter and leave `manager` (from the async client) in one task of the loop thread.

        The returned context manager gives what `manager` gives; the
        exception of its block, if any, is passed to `manager`.
        """
        return Held(self, manager)

    def _iterator(
        self, func: Callable[..., AsyncIterator[_T]], *args: Any, **kwargs: Any
    ) -> Iterator[_T]:
        if self._closed:
            raise RuntimeError("LiftbridgeClient is closed")
        # The async generator is only created here; it runs in the pump's task.
        return self.iterate(func(*args, **kwargs))

    # ------------------------------------------------------------------ hooks

    def _wrap_consumer(self, consumer: AsyncConsumer[V, K]) -> Consumer[V, K]:
        """A blocking member of consumer group `group_id` reading `streams` (see `Consumer`).

        Use the result as a context manager, then iterate it.
        `auto_offset` None means `AutoOffset.NEW_ONLY`.

        Raises:
            ValueError: Empty group id or no streams.
        """
        return Consumer(self, consumer)

    def _wrap_reader(self, reader: StreamReader[V, K]) -> Reader[V, K]:
        """A blocking reader of every partition of `stream` (see `Reader`).

        Use the result as a context manager, then iterate it; the arguments
        are the async client's `reader`'s.

        Raises:
            ValueError: An empty stream name or partition list, a negative
                partition, RESUME as start_position, or a bound out of range.
        """
        return Reader(self, reader)

    def _wrap_table(self, table: AsyncTable[V, K]) -> Table[V, K]:
        """A blocking key-value table on the compacted stream `stream` (see `Table`).

        Use the result as a context manager; the arguments are the async
        client's `table`'s.

        Raises:
            ValueError: An empty stream name or fewer than one partition.
        """
        return Table(self, table)

    def _wrap_publish_async(self, pending: PendingAck) -> Future[Optional[Ack]]:
        """Send a message on the pipelined PublishAsync stream; returns at once.

        Returns:
            A `concurrent.futures.Future` of the Ack (None for AckPolicy.NONE):
            `.result()` raises what awaiting the async `PendingAck` raises.
        """

        async def wait() -> Optional[Ack]:
            return await pending

        return self._portal.start_task_soon(wait)

    def _wrap_publish_batch(self, pending: List[PendingAck]) -> List[Future[Optional[Ack]]]:
        """Publish many messages at once on the PublishAsync stream; returns once they are sent.

        Returns:
            One `concurrent.futures.Future` of the Ack per message, in order
            (see `publish_async`).
        """
        return [self._wrap_publish_async(item) for item in pending]

    # ------------------------------------------------------------------ life cycle

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def close(self) -> None:
        """End every subscription, close every connection and stop the loop thread.

        Safe to call more than once and from any thread; calls blocked in
        other threads then fail.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pumps = list(self._pumps)
        for pump in pumps:
            pump.cancel()
        try:
            self._portal.call(self._stop.set)
            self._host.result()
        finally:
            self._stop_portal()

    def _stop_portal(self) -> None:
        # Calls still running in other threads are cancelled, not awaited.
        with contextlib.suppress(RuntimeError):
            self._portal.call(self._portal.stop, True)
        self._portal_cm.__exit__(None, None, None)


class LiftbridgeClient(SyncClientMethods, _LoopClient):
    """Blocking Liftbridge client: the async client's methods, run on a private loop thread.

    Takes the arguments of `lbwire.client.LiftbridgeClient`, plus:

    Args:
        backend: The anyio backend of the private event loop ("asyncio" or "trio").
        subscription_buffer: Messages a subscription reads ahead of its iterator.

    The client opens on construction and must be closed: use it as a context
    manager or call `close()`. Methods raise what the async ones raise, and
    RuntimeError once the client is closed. The methods, properties and
    settings are made from the async client's by scripts/gen_sync.py (in
    `lbwire._sync_generated`), so type checkers see their signatures.
    """
