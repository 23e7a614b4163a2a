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
from ._subscribe import SubscribeMethods, Subscriptions
from .compression import compress
from .compression import decompress as decompress
from .error import ErrorChannelClosed as ErrorChannelClosed
from .error import ErrorInvalidArgument, PublishAsyncError
from .error import ErrorMessageSizeExceeded as ErrorMessageSizeExceeded
from .error import ErrorNoMetadataLeader as ErrorNoMetadataLeader
from .error import ErrorNotFound as ErrorNotFound
from .error import ErrorUnavailable as ErrorUnavailable
from .error import LiftbridgeError as LiftbridgeError
from .grpc.config import ChannelConfig
from .grpc.keepalive import SAFE_KEEPALIVE_TIME
from .grpc.proxy import select_proxy
from .metadata import MetadataCache
from .observer import ClientObserver
from .partitioning import KeyPartitioner, RoundRobinPartitioner
from .retry import RetryPolicy
from .types import Ack as Ack
from .types import (
    AckPolicy,
    Broker,
    CursorConvention,
    Partitioner,
    StartPosition,
    StopPosition,
    StreamMetadata,
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

    from .consumer import AutoOffset, Consumer

__all__ = [
    "CURSOR_STREAM",
    "AckPolicy",
    "AutoOffset",
    "Broker",
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

#: gufo-liftbridge's default for `max_message_size` (the gRPC receive limit).
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: The server's default `clustering.replication.max.bytes`: larger messages are
#: refused by the server, and silently lost when published without an ack.
DEFAULT_MAX_PUBLISH_SIZE = 1024 * 1024
#: Default bound on a client's publishes in flight (awaiting their acks).
DEFAULT_MAX_PENDING = 4096
#: Default bound on the bytes of a client's publishes in flight.
DEFAULT_MAX_PENDING_BYTES = 32 * 1024 * 1024

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


class LiftbridgeClient(AdminMethods, PublishMethods, SubscribeMethods):
    """Asynchronous Liftbridge client for asyncio and trio.

    Use it as an async context manager: the connections' background tasks
    live in a task group that the client owns, and leaving the block closes
    every connection and ends every task. Calls made before or after the
    block work too, as in gufo-liftbridge: each brings a connection of its
    own and closes it before it returns (a subscription, when it is closed;
    `publish_async` then waits for its ack before returning).

    Args:
        brokers: Seed brokers, each `host:port` (IPv6 as `[addr]:port`).
        max_message_size: Largest message received, in bytes (gRPC limit).
        enable_http_proxy: Connect through the HTTP proxy the environment
            names, as gufo-liftbridge (grpcio) does: the first of `grpc_proxy`,
            `https_proxy`, `http_proxy` that is set, except to the hosts the
            first of `no_grpc_proxy`, `no_proxy` lists (names, their
            subdomains, addresses, CIDR blocks, `*`). Read once, here.
        proxy: `http://[user:password@]host:port`: connect to every broker
            through this HTTP proxy, whatever `enable_http_proxy` and the
            environment say. Connections go through a CONNECT tunnel, TLS end
            to end; `connect_timeout` covers the proxy. The credentials are
            sent as `Proxy-Authorization: Basic` and never shown. A proxy
            that refuses the credentials (407) or the broker (403) raises
            `ErrorPermissionDenied` without retries; one that cannot be
            reached or cannot reach the broker raises `ErrorUnavailable`.
        compression_method: `zlib` or `lzma`: compress published values when
            `auto_compress=True` is passed to `publish`.
        compression_threshold: Compress only values at least this long.
        encoding_header: Header that names the compression method.
        publish_async_ack_timeout: Seconds to wait for the acks of
            `publish_bulk` and `publish_async`.
        publish_async_max_pending: Most acked publishes in flight at once
            (sent, or about to be, and not yet acknowledged, refused or timed
            out), whichever method sent them. A publish beyond it waits for
            room (see `publish_async`).
        publish_async_max_pending_bytes: Most bytes of encoded publishes in
            flight at once. A single message larger than this is sent alone,
            once nothing else is in flight.
        on_publish_error: Called with each `PublishAsyncError` no awaiter
            receives: refusals of fire-and-forget publishes (AckPolicy.NONE
            on `publish_async` or `publish_batch`) and late ones of publishes
            whose awaiter gave up. Called in the client's receiving task: it
            must return quickly; what it raises is logged, never raised.
            None logs them instead (the 1st, 10th, 100th...); either way
            `publish_errors` counts them.
        metadata_leader_timeout: Mean pause (s) after "no metadata leader".
        metadata_leader_dev: Deviation of that pause (s).
        connect_timeout: Seconds a connection attempt may take.
        rpc_timeout: Deadline (s) sent with every unary call but publishes.
        ack_timeout: Default seconds a `publish` waits for its ack.
        max_publish_size: Largest publish request sent, in bytes; larger ones
            raise `ErrorMessageSizeExceeded` before anything is sent.
        ssl_context: TLS context (client certificate included for mTLS);
            None for plaintext. lbwire sets its ALPN protocols to `h2` (gRPC
            needs it, and Python offers no per-connection ALPN nor a way to
            copy a context): give lbwire a context of its own if another
            client uses it for another protocol.
        tls_server_hostname: Host name to verify instead of the broker's host.
        retry_policy: Bounds of the retries of failed calls.
        resubscribe_wait_time: How long (s) a subscription tries to resume
            after its broker failed before it raises.
        cursor_convention: What stored cursors hold (gufo's NEXT by default).
        partitioner: Default partitioner for `publish` without a partition.
        keepalive_time: Seconds without anything received, while calls are
            in progress (a quiet subscription), before a keepalive PING; no
            answer within 20 s fails the connection and its calls, so a dead
            broker is noticed. None: no PINGs. The default, 310 s, is what
            Liftbridge (grpc-go) accepts: it closes connections that ping
            more often than every 5 minutes (see `lbwire.grpc.keepalive`).
        idle_timeout: Close a broker connection no call has used for this
            many seconds (it reopens on the next call); None keeps them.
        max_conns_per_broker: Most connections to one broker for Subscribe
            calls (Liftbridge's client guide: a pool of 2 by default). A
            subscription takes an idle pooled connection, else a new one while
            the pool is below this limit, else shares the least busy one.
            Every other call goes over one more connection of its own per
            broker. Each is an HTTP/2 connection that multiplexes its calls.

    Raises:
        ValueError: No brokers, or a malformed broker address or option.
    """

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
        publish_async_max_pending: int = DEFAULT_MAX_PENDING,
        publish_async_max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        on_publish_error: Optional[Callable[[PublishAsyncError], None]] = None,
        metadata_leader_timeout: float = 3.0,
        metadata_leader_dev: float = 1.0,
        connect_timeout: float = 5.0,
        rpc_timeout: float = 10.0,
        ack_timeout: float = 5.0,
        max_publish_size: int = DEFAULT_MAX_PUBLISH_SIZE,
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
    ) -> None:
        if isinstance(brokers, str):
            brokers = [brokers]
        self.broker_seeds: List[str] = list(brokers)
        if not self.broker_seeds:
            raise ErrorInvalidArgument("Empty broker seeds: give at least one 'host:port'")
        seeds = [parse_broker(b) for b in self.broker_seeds]
        if compression_method is not None:
            compress(b"", compression_method)  # validates the method name
        for name, value in (
            ("max_message_size", max_message_size),
            ("max_publish_size", max_publish_size),
            ("publish_async_max_pending", publish_async_max_pending),
            ("publish_async_max_pending_bytes", publish_async_max_pending_bytes),
        ):
            if value <= 0:
                raise ErrorInvalidArgument(f"{name} must be positive, not {value}")
        for name, fvalue in (
            ("connect_timeout", connect_timeout),
            ("rpc_timeout", rpc_timeout),
            ("ack_timeout", ack_timeout),
            ("publish_async_ack_timeout", publish_async_ack_timeout),
        ):
            if fvalue <= 0:
                raise ErrorInvalidArgument(f"{name} must be positive, not {fvalue}")
        if max_conns_per_broker < 1:
            raise ErrorInvalidArgument(
                f"max_conns_per_broker must be at least 1, not {max_conns_per_broker}"
            )
        if idle_timeout is not None and idle_timeout <= 0:
            raise ErrorInvalidArgument(f"idle_timeout must be positive, not {idle_timeout}")
        try:
            http_proxy = select_proxy(proxy, enable_http_proxy)
        except ValueError as exc:  # (the message never shows credentials)
            raise ErrorInvalidArgument(str(exc)) from None
        self.max_message_size = max_message_size
        self.enable_http_proxy = enable_http_proxy
        self.compression_method = compression_method
        self.compression_threshold = compression_threshold
        self.encoding_header = encoding_header
        self.publish_async_ack_timeout = publish_async_ack_timeout
        self.publish_async_max_pending = publish_async_max_pending
        self.publish_async_max_pending_bytes = publish_async_max_pending_bytes
        self.on_publish_error = on_publish_error
        self.metadata_leader_timeout = metadata_leader_timeout
        self.metadata_leader_dev = metadata_leader_dev
        self.ack_timeout = ack_timeout
        self.max_publish_size = max_publish_size
        self.partitioner = partitioner
        self._connections = ConnectionRegistry(
            ChannelConfig(
                connect_timeout=connect_timeout,
                max_receive_message_length=max(max_message_size, 4 * 1024 * 1024),
                max_send_message_length=max(max_message_size, max_publish_size),
                ssl_context=ssl_context,
                server_hostname=tls_server_hostname,
                keepalive_time=keepalive_time,
                proxy=http_proxy,
            ),
            max_per_broker=max_conns_per_broker,
            idle_timeout=idle_timeout,
        )
        self._router = Router(
            seeds,
            self._connections,
            policy=retry_policy or RetryPolicy(),
            rpc_timeout=rpc_timeout,
        )
        self._cursors = CursorStore(
            self._cursor_leader_call, CursorConvention(cursor_convention), self._router.policy
        )
        self._publisher = Publisher(self._router, self._connections, self)
        self._subscriptions = Subscriptions(
            self._router,
            self._connections,
            self._cursors,
            encoding_header=encoding_header,
            resubscribe_wait_time=resubscribe_wait_time,
            policy=self._router.policy,
        )
        self._task_group: Optional[TaskGroup] = None
        self._closed = False

    # ------------------------------------------------------------------ options

    @property
    def rpc_timeout(self) -> float:
        """Deadline (s) sent with every unary call but publishes."""
        return self._router.rpc_timeout

    @property
    def retry_policy(self) -> RetryPolicy:
        """Bounds of the retries of failed calls."""
        return self._router.policy

    @property
    def resubscribe_wait_time(self) -> float:
        """How long (s) a subscription tries to resume before it raises."""
        return self._subscriptions.resubscribe_wait_time

    @property
    def cursor_convention(self) -> CursorConvention:
        """What stored cursors hold."""
        return self._cursors.convention

    @property
    def max_conns_per_broker(self) -> int:
        """Most pooled Subscribe connections to one broker."""
        return self._connections.max_per_broker

    @property
    def idle_timeout(self) -> Optional[float]:
        """Seconds after which an unused connection is closed (None: never)."""
        return self._connections.idle_timeout

    @property
    def observer(self) -> Optional[ClientObserver]:
        """What the client tells of its retries, reconnects, resubscribes and acks.

        None (the default) tells no one; `lbwire.otel.instrument` sets one.
        See `lbwire.observer.ClientObserver`.
        """
        return self._connections.observers.current

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
        self, request: SubscribeRequest, setup_timeout: Optional[float]
    ) -> AsyncIterator[Message]:
        messages = super()._subscribe_once(request, setup_timeout)
        if self._connections.open:
            return messages
        return self._subscribe_outside(messages)

    async def _subscribe_outside(self, messages: AsyncIterator[Message]) -> AsyncIterator[Message]:
        # A subscription made outside the client's block (as gufo allows)
        # owns its connections and their tasks until it is closed.
        async with self._connections.outside_scope():
            try:
                async for message in messages:
                    yield message
            finally:
                await messages.aclose()  # type: ignore[attr-defined]

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
    ) -> Consumer:
        """A member of consumer group `group_id` reading `streams` (see `lbwire.consumer`).

        Use the result as an async context manager, then iterate it.
        `auto_offset` None means `AutoOffset.NEW_ONLY`.

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
        )
