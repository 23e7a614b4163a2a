"""LiftbridgeClient: the public client, drop-in for `gufo.liftbridge.client`.

The client checks its options and arguments and delegates: routing and the
metadata cache to `lbwire._routing`, connections to `lbwire._pool`,
publishing to `lbwire._publish`, subscriptions to `lbwire._subscribe`,
cursors to `lbwire._cursors`. The wire format is in `lbwire.wire`, the
transport in `lbwire.grpc`.

The names gufo.liftbridge.client exposes besides the client (its errors,
types, request classes, `decompress`) are imported here too, as
`X as X`, because programs import them from this module.
"""

from __future__ import annotations

from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Type,
    TypeVar,
)

from ._address import parse_broker
from ._admin import AdminMethods
from ._cursors import CursorStore
from ._lifecycle import close_task_group, open_task_group
from ._log import LazyLogger
from ._pool import ConnectionInfo, ConnectionRegistry
from ._publish import Publisher
from ._publish_methods import PublishMethods
from ._routing import CURSOR_STREAM, Router
from ._subscribe import CallWatch, SubscribeMethods, Subscriptions
from .compression import compress as compress
from .compression import decompress as decompress
from .error import ErrorChannelClosed as ErrorChannelClosed
from .error import ErrorInvalidArgument, ErrorInvalidType, PublishAsyncError
from .error import ErrorMessageSizeExceeded as ErrorMessageSizeExceeded
from .error import ErrorNoMetadataLeader as ErrorNoMetadataLeader
from .error import ErrorNotFound as ErrorNotFound
from .error import ErrorUnavailable as ErrorUnavailable
from .error import LiftbridgeError as LiftbridgeError
from .grpc.config import ChannelConfig
from .grpc.keepalive import SAFE_KEEPALIVE_TIME
from .metadata import MetadataCache
from .observer import ClientObserver
from .options import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_PUBLISH_SIZE,
    ClientOptions,
    Option,
    read_only_option,
)
from .partitioning import KeyPartitioner, RoundRobinPartitioner
from .retry import RetryPolicy
from .serde import Deserializer, Serializer
from .types import Ack as Ack
from .types import (
    AckPolicy,
    Broker,
    CursorConvention,
    K,
    Partitioner,
    StartPosition,
    StopPosition,
    StreamMetadata,
    V,
)
from .types import Message as Message
from .types import Metadata as Metadata
from .types import PartitionMetadata as PartitionMetadata
from .wire import (
    CreateStreamRequest,
    DeleteStreamRequest,
    FetchCursorRequest,
    FetchMetadataRequest,
    FetchMetadataResponse,
    FetchPartitionMetadataRequest,
    PublishRequest,
    SetCursorRequest,
    SubscribeRequest,
)

if TYPE_CHECKING:
    # Annotations only: ssl and anyio.abc are not loaded by this module.
    import ssl

    from anyio.abc import TaskGroup

    from .consumer import AutoOffset, Consumer, PartitionsCallback
    from .reader import StreamReader
    from .table import Table

__all__ = [
    "CURSOR_STREAM",
    "AckPolicy",
    "AutoOffset",
    "Broker",
    "ClientOptions",
    "ConnectionInfo",
    "Consumer",
    "CreateStreamRequest",
    "CursorConvention",
    "DeleteStreamRequest",
    "FetchCursorRequest",
    "FetchMetadataRequest",
    "FetchMetadataResponse",
    "FetchPartitionMetadataRequest",
    "KeyPartitioner",
    "LiftbridgeClient",
    "PublishRequest",
    "RetryPolicy",
    "RoundRobinPartitioner",
    "SetCursorRequest",
    "StartPosition",
    "StopPosition",
    "StreamMetadata",
    "SubscribeRequest",
]

logger = LazyLogger("lbwire")

_R = TypeVar("_R")


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        # lbwire.consumer is imported on first use (LiftbridgeClient.consumer,
        # or these names): `import lbwire.client` stays lighter.
        if name in ("AutoOffset", "Consumer"):
            from . import consumer

            return getattr(consumer, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(globals()) | {"AutoOffset", "Consumer"})


def _check_no_keywords(keywords: Dict[str, Any]) -> None:
    """Refuse option keywords given beside `options=`: which should win is unclear."""
    defaults = LiftbridgeClient.__init__.__kwdefaults__ or {}
    given = sorted(
        name
        for name, value in keywords.items()
        if value is not defaults[name] and value != defaults[name]
    )
    if given:
        raise ErrorInvalidArgument(
            f"Give the options either as options= or as keywords, not both: "
            f"options= came with {', '.join(given)}; put them in the options "
            f"(dataclasses.replace(options, ...))"
        )


class LiftbridgeClient(AdminMethods, PublishMethods, SubscribeMethods):
    """Asynchronous Liftbridge client for asyncio and trio.

    Use it as an async context manager: the connections' background tasks
    live in a task group that the client owns, and leaving the block closes
    every connection and ends every task. Calls made before or after the
    block work too, as in gufo-liftbridge: each brings a connection of its
    own and closes it before it returns (a subscription, when it is closed;
    `publish_async` then waits for its ack before returning).

    The options are gufo-liftbridge's keyword arguments, with its defaults,
    and lbwire's further ones after them; each is documented as the
    attribute of the same name of `ClientOptions`. The client keeps them in
    one frozen `ClientOptions` (`client.options`), built once here and read
    by every part of the client. `client.<option>` reads it; assigning it
    raises `ErrorReadOnlyOption`: make a new client with
    `options=dataclasses.replace(client.options, ...)` instead.

    Args:
        brokers: Seed brokers, each `host:port` (IPv6 as `[addr]:port`).
        options: All the options at once, instead of the keywords (which
            must then be left at their defaults).

    Raises:
        ValueError: No brokers, a malformed broker address, an option out of
            its range, or `options` given with other option keywords.
    """

    max_message_size = Option[int]()
    enable_http_proxy = Option[bool]()
    compression_method = Option[Optional[str]]()
    compression_threshold = Option[int]()
    encoding_header = Option[str]()
    publish_async_ack_timeout = Option[float]()
    metadata_leader_timeout = Option[float]()
    metadata_leader_dev = Option[float]()
    connect_timeout = Option[float]()
    rpc_timeout = Option[float]()
    ack_timeout = Option[float]()
    max_publish_size = Option[int]()
    publish_async_max_pending = Option[int]()
    publish_async_max_pending_bytes = Option[int]()
    on_publish_error = Option[Optional[Callable[[PublishAsyncError], None]]]()
    ssl_context = Option[Optional["ssl.SSLContext"]]()
    tls_server_hostname = Option[Optional[str]]()
    retry_policy = Option[RetryPolicy]()
    resubscribe_wait_time = Option[float]()
    cursor_convention = Option[CursorConvention]()
    partitioner = Option[Optional[Partitioner]]()
    keepalive_time = Option[Optional[float]]()
    idle_timeout = Option[Optional[float]]()
    max_conns_per_broker = Option[int]()
    proxy = Option[Optional[str]]()
    key_serializer = Option[Optional[Serializer[Any]]]()
    value_serializer = Option[Optional[Serializer[Any]]]()
    key_deserializer = Option[Optional[Deserializer[Any]]]()
    value_deserializer = Option[Optional[Deserializer[Any]]]()

    def __init__(
        self,
        brokers: Iterable[str],
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        enable_http_proxy: bool = False,
        compression_method: Optional[str] = None,
        compression_threshold: int = 0,
        encoding_header: str = "X-Msg-Encoding",
        publish_async_ack_timeout: float = 10.0,
        metadata_leader_timeout: float = 3.0,
        metadata_leader_dev: float = 1.0,
        connect_timeout: float = 5.0,
        rpc_timeout: float = 10.0,
        ack_timeout: float = 5.0,
        max_publish_size: int = DEFAULT_MAX_PUBLISH_SIZE,
        publish_async_max_pending: int = DEFAULT_MAX_PENDING,
        publish_async_max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        on_publish_error: Optional[Callable[[PublishAsyncError], None]] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        tls_server_hostname: Optional[str] = None,
        retry_policy: Optional[RetryPolicy] = None,
        resubscribe_wait_time: float = 30.0,
        cursor_convention: CursorConvention = CursorConvention.NEXT,
        partitioner: Optional[Partitioner] = None,
        keepalive_time: Optional[float] = SAFE_KEEPALIVE_TIME,
        idle_timeout: Optional[float] = 300.0,
        max_conns_per_broker: int = 2,
        proxy: Optional[str] = None,
        key_serializer: Optional[Serializer[Any]] = None,
        value_serializer: Optional[Serializer[Any]] = None,
        key_deserializer: Optional[Deserializer[Any]] = None,
        value_deserializer: Optional[Deserializer[Any]] = None,
        options: Optional[ClientOptions] = None,
    ) -> None:
        if isinstance(brokers, str):
            brokers = [brokers]
        seeds_given = list(brokers)
        if not seeds_given:
            raise ErrorInvalidArgument("Empty broker seeds: give at least one 'host:port'")
        seeds = [parse_broker(b) for b in seeds_given]
        keywords: Dict[str, Any] = {
            "max_message_size": max_message_size,
            "enable_http_proxy": enable_http_proxy,
            "compression_method": compression_method,
            "compression_threshold": compression_threshold,
            "encoding_header": encoding_header,
            "publish_async_ack_timeout": publish_async_ack_timeout,
            "metadata_leader_timeout": metadata_leader_timeout,
            "metadata_leader_dev": metadata_leader_dev,
            "connect_timeout": connect_timeout,
            "rpc_timeout": rpc_timeout,
            "ack_timeout": ack_timeout,
            "max_publish_size": max_publish_size,
            "publish_async_max_pending": publish_async_max_pending,
            "publish_async_max_pending_bytes": publish_async_max_pending_bytes,
            "on_publish_error": on_publish_error,
            "ssl_context": ssl_context,
            "tls_server_hostname": tls_server_hostname,
            "retry_policy": retry_policy,
            "resubscribe_wait_time": resubscribe_wait_time,
            "cursor_convention": cursor_convention,
            "partitioner": partitioner,
            "keepalive_time": keepalive_time,
            "idle_timeout": idle_timeout,
            "max_conns_per_broker": max_conns_per_broker,
            "proxy": proxy,
            "key_serializer": key_serializer,
            "value_serializer": value_serializer,
            "key_deserializer": key_deserializer,
            "value_deserializer": value_deserializer,
        }
        if options is None:
            if retry_policy is None:
                keywords["retry_policy"] = RetryPolicy()
            options = ClientOptions(**keywords)
        elif not isinstance(options, ClientOptions):
            raise ErrorInvalidType(f"options must be a ClientOptions, not {type(options).__name__}")
        else:
            _check_no_keywords(keywords)
        self._options = options
        self._broker_seeds = seeds_given
        self._connections = ConnectionRegistry(
            options.channel_config(),
            max_per_broker=options.max_conns_per_broker,
            idle_timeout=options.idle_timeout,
        )
        self._router = Router(
            seeds, self._connections, policy=options.retry_policy, rpc_timeout=options.rpc_timeout
        )
        self._cursors = CursorStore(
            self._cursor_leader_call, options.cursor_convention, options.retry_policy
        )
        self._publisher = Publisher(self._router, self._connections, options)
        self._subscriptions = Subscriptions(
            self._router, self._connections, self._cursors, options=options
        )
        self._task_group: Optional[TaskGroup] = None
        self._closed = False

    # ------------------------------------------------------------------ options

    @property
    def options(self) -> ClientOptions:
        """The client's options (frozen): every part of the client reads these.

        Derive changed ones with `dataclasses.replace(client.options, ...)`
        and give them to a new client (`LiftbridgeClient(brokers, options=...)`).
        """
        return self._options

    @options.setter
    def options(self, value: ClientOptions) -> None:
        raise read_only_option("options")

    @property
    def broker_seeds(self) -> List[str]:
        """The seed brokers given to the client (a copy: they cannot be changed)."""
        return list(self._broker_seeds)

    @broker_seeds.setter
    def broker_seeds(self, value: List[str]) -> None:
        raise read_only_option("broker_seeds")

    @property
    def observer(self) -> Optional[ClientObserver]:
        """What the client tells of its retries, reconnects, resubscribes and acks.

        None (the default) tells no one; `lbwire.otel.instrument` sets one.
        See `lbwire.observer.ClientObserver`.
        """
        return self._connections.observers.installed

    @observer.setter
    def observer(self, observer: Optional[ClientObserver]) -> None:
        self._connections.observers.current = observer

    @property
    def channel_config(self) -> ChannelConfig:
        """The settings of every connection the client opens (frozen)."""
        return self._connections.config

    @property
    def cursor_store(self) -> CursorStore:
        """The raw cursor store (no convention applied), as consumer groups use it."""
        return self._cursors

    # ------------------------------------------------------------------ test hooks

    def connection_info(self) -> List[ConnectionInfo]:
        """A snapshot of the client's open connections (for tests and diagnostics).

        One entry per connection: the broker's connection for calls, and each
        pooled Subscribe connection with how many subscriptions use it.
        """
        return self._connections.info()

    def add_connection_listener(self, callback: Callable[[str], None]) -> None:
        """Test hook: call `callback("host:port")` each time a call takes a connection."""
        self._connections.add_listener(callback)

    @property
    def cached_metadata(self) -> MetadataCache:
        """The client's metadata cache (read it only: the client owns it)."""
        return self._router.metadata

    # ------------------------------------------------------------------ request seam

    # tests/compat/test_api_surface.py replaces this (as `_call_any` of
    # AdminMethods and `_subscribe_once` of SubscribeMethods) on the class to
    # capture the requests lbwire sends, without a server, and compares them
    # with gufo-liftbridge's. Keep their names and signatures until it
    # captures at a public hook (ConnectionRegistry.channel_factory) instead.

    async def _cursor_leader_call(
        self,
        stream: str,
        partition: int,
        cursor_id: str,
        method: str,
        request: Any,
        response_type: Type[_R],
    ) -> _R:
        return await self._router.call_cursor_leader(
            stream, partition, cursor_id, method, request, response_type
        )

    def _subscribe_once(
        self,
        request: SubscribeRequest,
        setup_timeout: Optional[float],
        watch: Optional[CallWatch] = None,
    ) -> AsyncIterator[List[Message]]:
        if self._connections.open:
            return super()._subscribe_once(request, setup_timeout, watch)
        if watch is None:
            watch = CallWatch()
        messages = super()._subscribe_once(request, setup_timeout, watch)
        return self._subscribe_outside(messages, watch)

    async def _subscribe_outside(
        self, messages: AsyncIterator[List[Message]], watch: CallWatch
    ) -> AsyncIterator[List[Message]]:
        # A subscription made outside the client's block (as gufo allows)
        # owns its connections until it is closed. Their tasks run only while
        # it waits for a message: no task group is held across `yield`, so a
        # `break` without aclose ends it cleanly (see OutsideIteration).
        iteration = self._connections.outside_iteration()
        try:
            while True:
                try:
                    call = watch.call
                    if call is not None and call.has_message:
                        # Received already: no wait, so no task needs to run
                        # and no step (a task group) is opened for it.
                        message = await messages.__anext__()
                    else:
                        async with iteration.step():
                            message = await messages.__anext__()
                except StopAsyncIteration:
                    return
                yield message
        finally:
            await messages.aclose()  # type: ignore[attr-defined]
            await iteration.aclose()

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> LiftbridgeClient:
        """Open the client's task group; connections are made on first use."""
        if self._closed:
            raise RuntimeError("LiftbridgeClient cannot be reopened after close()")
        if self._task_group is not None:
            raise RuntimeError("LiftbridgeClient is already open")
        tg = self._task_group = await open_task_group()
        self._connections.start(tg)
        self._publisher.start(tg)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> Optional[bool]:
        """Close every connection and end every background task.

        An exception of the block comes out as itself (see `lbwire._lifecycle`).
        """
        # Calls after the block fail with "not open" instead of starting
        # tasks in the ended task group.
        tg, self._task_group = self._task_group, None
        self._connections.stop()
        self._publisher.stop()
        try:
            await self.close()
        finally:
            if tg is not None:
                await close_task_group(tg, exc_type, exc, traceback)
        return None

    async def close(self) -> None:
        """Close every connection of the client; pending calls fail."""
        self._closed = True
        await self._publisher.aclose()
        await self._connections.aclose()

    # ------------------------------------------------------------------ cursors

    async def set_cursor(self, stream: str, partition: int, cursor_id: str, offset: int) -> None:
        """Store a cursor after processing the message at `offset`.

        Time budget: the retry policy's, one budget for finding the cursor's
        partition and its leader and for the call.

        With the default (gufo-liftbridge) convention the cursor then holds
        `offset + 1`, the next message to process; with
        `CursorConvention.LAST_PROCESSED` (go-liftbridge's) it holds `offset`.

        Raises:
            ValueError: Empty cursor id, or negative partition or offset.
            ErrorNotFound: The cursors stream does not exist (cursors disabled).
        """
        await self._cursors.set_processed(stream, partition, cursor_id, offset)

    async def get_cursor(self, stream: str, partition: int, cursor_id: str) -> int:
        """Read a stored cursor: the stored value, or -1 when there is none.

        Time budget: the retry policy's, one budget for finding the cursor's
        partition and its leader and for the call.

        Raises:
            ValueError: Empty cursor id or negative partition.
            ErrorNotFound: The cursors stream does not exist (cursors disabled).
        """
        return await self._cursors.get(stream, partition, cursor_id)

    # ------------------------------------------------------------------ consumer groups

    def consumer(
        self,
        group_id: str,
        streams: Sequence[str],
        *,
        consumer_id: Optional[str] = None,
        auto_offset: Optional[AutoOffset] = None,
        auto_checkpoint_interval: Optional[float] = 5.0,
        max_buffered: int = 256,
        on_assigned: Optional[PartitionsCallback] = None,
        on_revoked: Optional[PartitionsCallback] = None,
        value_deserializer: Optional[Deserializer[V]] = None,
        key_deserializer: Optional[Deserializer[K]] = None,
    ) -> Consumer[V, K]:
        """A member of consumer group `group_id` reading `streams` (see `lbwire.consumer`).

        Use the result as an async context manager, then iterate it.
        `auto_offset` None means `AutoOffset.NEW_ONLY`. `on_assigned` and
        `on_revoked` are awaited with the partitions (a sorted list of
        `GroupPartition`) the member was given or lost; see `Consumer` for
        when they run and what an exception in them does.
        `value_deserializer` and `key_deserializer` replace the client's
        (see `lbwire.serde`).

        Raises:
            ValueError: Empty group id or no streams.
        """
        # Imported on first use, as most programs never join a group.
        from .consumer import AutoOffset, Consumer

        return Consumer(
            self,
            group_id,
            streams,
            consumer_id=consumer_id,
            auto_offset=AutoOffset.NEW_ONLY if auto_offset is None else auto_offset,
            auto_checkpoint_interval=auto_checkpoint_interval,
            max_buffered=max_buffered,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
            value_deserializer=value_deserializer,
            key_deserializer=key_deserializer,
        )

    # ------------------------------------------------------------------ whole streams

    def reader(
        self,
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
    ) -> StreamReader[V, K]:
        """A reader of every partition of `stream` (or `partitions`), each from its own cursor.

        Use the result as an async context manager inside the client's
        block, then iterate it (see `lbwire.reader.StreamReader`). A
        partition with a stored cursor `cursor_id` resumes from it; the
        others start at `start_position` (EARLIEST, LATEST or NEW_ONLY), or
        `start_offset`/`start_timestamp`. The stop arguments apply to each
        partition, as in `subscribe`; the reader ends when every partition
        has stopped. With `auto_commit` (and a `cursor_id`) processed
        positions are committed every `commit_every` messages, every
        `commit_interval` seconds and on leaving the block; each partition
        buffers at most `max_buffered` messages. `value_deserializer` and
        `key_deserializer` replace the client's (see `lbwire.serde`).

        Raises:
            ValueError: An empty stream name or partition list, a negative
                partition, RESUME as start_position, or a bound out of range.
        """
        # Imported on first use, as most programs read single partitions.
        from .reader import StreamReader

        return StreamReader(
            self,
            stream,
            partitions,
            cursor_id=cursor_id,
            start_position=start_position,
            start_offset=start_offset,
            start_timestamp=start_timestamp,
            stop_position=stop_position,
            stop_offset=stop_offset,
            stop_timestamp=stop_timestamp,
            auto_commit=auto_commit,
            commit_every=commit_every,
            commit_interval=commit_interval,
            max_buffered=max_buffered,
            allow_isr=allow_isr,
            resume=resume,
            value_deserializer=value_deserializer,
            key_deserializer=key_deserializer,
        )

    # ------------------------------------------------------------------ tables

    def table(
        self,
        stream: str,
        *,
        partitions: int = 1,
        replication_factor: int = 1,
        create: bool = True,
        key_serializer: Optional[Serializer[Any]] = None,
        value_serializer: Optional[Serializer[Any]] = None,
        key_deserializer: Optional[Deserializer[K]] = None,
        value_deserializer: Optional[Deserializer[V]] = None,
    ) -> Table[V, K]:
        """A key-value table kept on the compacted stream `stream` (see `lbwire.table.Table`).

        Use the result as an async context manager inside the client's
        block. Entering it creates the stream unless it exists (with
        `create`): `partitions` partitions, compaction and optimistic
        concurrency control on, and the table's marker record. Serializers
        replace the client's (see `lbwire.serde`); keys and values are bytes
        by default.

        Raises:
            ValueError: An empty stream name or fewer than one partition.
        """
        # Imported on first use, as most programs use no table.
        from ._table_view import NUDGE, NUDGE_KEY, TABLE_HEADER
        from .table import Table

        table: Table[V, K] = Table(
            self,
            stream,
            partitions=partitions,
            replication_factor=replication_factor,
            create=create,
            key_serializer=key_serializer,
            value_serializer=value_serializer,
            key_deserializer=key_deserializer,
            value_deserializer=value_deserializer,
        )
        # Settling a put nudges with the table's record (which the view
        # skips, and compaction keeps once), not a keyless one.
        self._settling().nudge_with(stream, NUDGE_KEY, {TABLE_HEADER: NUDGE})
        return table
