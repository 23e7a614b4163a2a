"""LiftbridgeClient: the public client, drop-in for `gufo.liftbridge.client`.

The client checks its options and arguments and delegates: routing and the
metadata cache to `lbwire._routing`, connections to `lbwire._pool`,
publishing to `lbwire._publish`, subscriptions to `lbwire._subscribe`,
cursors to `lbwire._cursors`. The wire format is in `lbwire.wire`, the
transport in `lbwire.grpc`.
"""

from __future__ import annotations

from random import random
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Type,
    TypeVar,
)

import anyio

from . import wire
from ._address import parse_broker
from ._cursors import CursorStore
from ._lifecycle import close_task_group, open_task_group
from ._log import LazyLogger
from ._pool import ConnectionInfo, ConnectionRegistry
from ._publish import Publisher
from ._routing import CURSOR_STREAM, Router
from ._subscribe import Subscriptions
from .compression import compress
from .compression import decompress as decompress
from .error import ErrorChannelClosed as ErrorChannelClosed
from .error import (
    ErrorDeadlineExceeded,
    ErrorInvalidArgument,
    ErrorNoMetadataLeader,
    ErrorNotFound,
)
from .error import ErrorMessageSizeExceeded as ErrorMessageSizeExceeded
from .error import ErrorUnavailable as ErrorUnavailable
from .error import LiftbridgeError as LiftbridgeError
from .grpc.config import ChannelConfig
from .grpc.keepalive import SAFE_KEEPALIVE_TIME
from .metadata import MetadataCache, to_public_partition
from .partitioning import KeyPartitioner, RoundRobinPartitioner
from .retry import RetryPolicy

# gufo.liftbridge.client exposes these names too (the errors and decompress
# above as well); programs import them from it.
from .types import (
    Ack,
    AckPolicy,
    Broker,
    CursorConvention,
    Message,
    Metadata,
    Partitioner,
    PartitionMetadata,
    StartPosition,
    StopPosition,
    StreamMetadata,
)
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

    from ._publish import PendingAck
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


class LiftbridgeClient:
    """Asynchronous Liftbridge client for asyncio and trio.

    Use it as an async context manager: the connections' background tasks
    live in a task group that the client owns, and leaving the block closes
    every connection and ends every task.

    Args:
        brokers: Seed brokers, each `host:port` (IPv6 as `[addr]:port`).
        max_message_size: Largest message received, in bytes (gRPC limit).
        enable_http_proxy: Accepted for gufo-liftbridge compatibility; lbwire
            always connects directly.
        compression_method: `zlib` or `lzma`: compress published values when
            `auto_compress=True` is passed to `publish`.
        compression_threshold: Compress only values at least this long.
        encoding_header: Header that names the compression method.
        publish_async_ack_timeout: Seconds to wait for the acks of
            `publish_bulk` and `publish_async`.
        metadata_leader_timeout: Mean pause (s) after "no metadata leader".
        metadata_leader_dev: Deviation of that pause (s).
        connect_timeout: Seconds a connection attempt may take.
        rpc_timeout: Deadline (s) sent with every unary call but publishes.
        ack_timeout: Default seconds a `publish` waits for its ack.
        max_publish_size: Largest publish request sent, in bytes; larger ones
            raise `ErrorMessageSizeExceeded` before anything is sent.
        ssl_context: TLS context (client certificate included for mTLS);
            None for plaintext.
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
    ) -> None:
        if isinstance(brokers, str):
            brokers = [brokers]
        self.broker_seeds = list(brokers)
        if not self.broker_seeds:
            raise ErrorInvalidArgument("Empty broker seeds: give at least one 'host:port'")
        seeds = [parse_broker(b) for b in self.broker_seeds]
        if compression_method is not None:
            compress(b"", compression_method)  # validates the method name
        for name, value in (
            ("max_message_size", max_message_size),
            ("max_publish_size", max_publish_size),
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
        self.max_message_size = max_message_size
        self.enable_http_proxy = enable_http_proxy
        self.compression_method = compression_method
        self.compression_threshold = compression_threshold
        self.encoding_header = encoding_header
        self.publish_async_ack_timeout = publish_async_ack_timeout
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
        self._cursors = CursorStore(self._cursor_leader_call, CursorConvention(cursor_convention))
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

    def add_connection_listener(self, callback: Any) -> None:
        """Test hook: call `callback("host:port")` each time a call takes a connection."""
        self._connections.add_listener(callback)

    @property
    def cached_metadata(self) -> MetadataCache:
        """The client's metadata cache (read it only: the client owns it)."""
        return self._router.metadata

    # ------------------------------------------------------------------ request seams

    # tests/compat/test_api_surface.py replaces these three on the class to
    # capture the requests lbwire sends, without a server, and compares them
    # with gufo-liftbridge's. Keep their names and signatures until it
    # captures at a public hook (ConnectionRegistry.channel_factory) instead.

    async def _call_any(
        self, method: str, request: Any, response_type: Type[_R], **kwargs: Any
    ) -> _R:
        return await self._router.call_any(method, request, response_type, **kwargs)

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
        self, request: wire.SubscribeRequest, setup_timeout: Optional[float]
    ) -> AsyncIterator[Message]:
        # The whole (resuming) subscription, despite the name kept for the seam.
        return self._subscriptions.messages(request, setup_timeout)

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

    # ------------------------------------------------------------------ metadata

    async def get_metadata(
        self, stream: Optional[str] = None, *, wait_for_stream: bool = False
    ) -> Metadata:
        """Fetch cluster metadata, and refresh the client's cache with it.

        Args:
            stream: Only this stream's metadata, if set.
            wait_for_stream: Wait until `stream` exists and every partition
                has a leader.

        Raises:
            ErrorUnavailable: No broker could be reached within the retry policy.
        """
        router = self._router
        if wait_for_stream:
            response = await router.wait_for_stream(stream)
        else:
            response = await router.refresh(*([stream] if stream else []))
        return router.metadata.to_public(response)

    async def get_partition_metadata(
        self, stream: str, partition: int, wait_for_stream: bool = False
    ) -> PartitionMetadata:
        """Fetch one partition's metadata from its leader (high watermark, newest offset).

        Raises:
            ErrorNotFound: No such stream or partition.
            ErrorPartitionPaused: The partition is paused (its leader serves
                no partition metadata until it is resumed).
        """
        if wait_for_stream:
            await self.wait_for_stream(stream)
        response = await self._router.call_leader(
            stream,
            partition,
            "FetchPartitionMetadata",
            wire.FetchPartitionMetadataRequest(stream=stream, partition=partition),
            wire.FetchPartitionMetadataResponse,
        )
        if response.metadata is None:
            raise ErrorNotFound(f"No metadata for {stream!r} partition {partition}")
        return to_public_partition(response.metadata)

    async def wait_for_stream(self, stream: str, *, timeout: Optional[float] = None) -> None:
        """Wait until `stream` exists and each of its partitions has a leader.

        Args:
            stream: Stream name.
            timeout: Give up after this many seconds (None: wait on).

        Raises:
            ErrorDeadlineExceeded: `timeout` passed first.
        """
        try:
            with anyio.fail_after(timeout):
                await self.get_metadata(stream, wait_for_stream=True)
        except TimeoutError:
            raise ErrorDeadlineExceeded(
                f"Stream {stream!r} was not ready within {timeout} s"
            ) from None

    async def wait_for_cursors(self, *, timeout: Optional[float] = None) -> None:
        """Wait until the server's cursor stream is ready (see `wait_for_stream`)."""
        await self.wait_for_stream(CURSOR_STREAM, timeout=timeout)

    # ------------------------------------------------------------------ streams

    async def create_stream(
        self,
        name: str,
        *,
        subject: Optional[str] = None,
        group: Optional[str] = None,
        replication_factor: int = 1,
        minisr: int = 0,
        partitions: int = 1,
        enable_compact: Optional[bool] = False,
        retention_max_age: int = 0,
        retention_max_bytes: int = 0,
        segment_max_age: int = 0,
        segment_max_bytes: int = 0,
        auto_pause_time: int = 0,
        auto_pause_disable_if_subscribers: bool = False,
        wait_for_stream: bool = False,
        retention_max_messages: int = 0,
        cleaner_interval: int = 0,
        compact_max_goroutines: int = 0,
        optimistic_concurrency_control: Optional[bool] = None,
        encryption: Optional[bool] = None,
    ) -> None:
        """Create a stream.

        Durations are in seconds, as in gufo-liftbridge; 0 means the server's
        default. The arguments after `wait_for_stream` are lbwire's additions.

        Args:
            name: Stream name.
            subject: NATS subject (defaults to the name).
            group: NATS queue group the partitions' subscriptions join.
            replication_factor: Replicas per partition (-1: every broker).
            minisr: Minimum in-sync replicas for a write to be committed.
            partitions: Number of partitions.
            enable_compact: Compaction on/off (None: server default).
            retention_max_age: Delete messages older than this (s).
            retention_max_bytes: Keep at most this many bytes per partition.
            segment_max_age: Roll segments after this long (s).
            segment_max_bytes: Roll segments after this many bytes.
            auto_pause_time: Pause idle partitions after this long (s).
            auto_pause_disable_if_subscribers: Never auto-pause while subscribed.
            wait_for_stream: Return only once the stream is ready.
            retention_max_messages: Keep at most this many messages per partition.
            cleaner_interval: How often (s) the log cleaner runs.
            compact_max_goroutines: Concurrency of compaction.
            optimistic_concurrency_control: Enable `expected_offset` checks.
            encryption: Encrypt data at rest (needs the server's key).

        Raises:
            ValueError: Invalid arguments (before anything is sent).
            ErrorAlreadyExists: A stream with this name exists.
            ErrorInvalidArgument: The server refused the arguments.
        """
        if not name:
            raise ErrorInvalidArgument("Stream name must not be empty")
        if partitions < 1:
            raise ErrorInvalidArgument(f"partitions must be at least 1, not {partitions}")
        if replication_factor == 0 or replication_factor < -1:
            raise ErrorInvalidArgument(
                f"replication_factor must be -1 or at least 1, not {replication_factor}"
            )

        def ms(seconds: int) -> Optional[int]:
            return seconds * 1000 if seconds else None

        request = wire.CreateStreamRequest(
            subject=subject or name,
            name=name,
            group=group or "",
            replicationFactor=replication_factor,
            partitions=partitions,
            retentionMaxBytes=retention_max_bytes or None,
            retentionMaxMessages=retention_max_messages or None,
            retentionMaxAge=ms(retention_max_age),
            cleanerInterval=ms(cleaner_interval),
            segmentMaxBytes=segment_max_bytes or None,
            segmentMaxAge=ms(segment_max_age),
            compactMaxGoroutines=compact_max_goroutines or None,
            compactEnabled=enable_compact,
            autoPauseTime=ms(auto_pause_time),
            autoPauseDisableIfSubscribers=(
                True if auto_pause_time and auto_pause_disable_if_subscribers else None
            ),
            minIsr=minisr or None,
            optimisticConcurrencyControl=optimistic_concurrency_control,
            encryption=encryption,
        )
        while True:
            try:
                await self._call_any("CreateStream", request, wire.CreateStreamResponse)
                break
            except ErrorNoMetadataLeader:
                logger.info("No metadata leader while creating %r; retrying", name)
                dev = self.metadata_leader_dev
                await anyio.sleep(max(0.0, self.metadata_leader_timeout - dev + 2 * dev * random()))
        self._router.metadata.forget(name)
        if wait_for_stream:
            await self.wait_for_stream(name)

    async def delete_stream(self, name: str) -> None:
        """Delete a stream and all its data.

        Raises:
            ErrorNotFound: No such stream.
        """
        await self._call_any(
            "DeleteStream", wire.DeleteStreamRequest(name=name), wire.DeleteStreamResponse
        )
        self._router.metadata.forget(name)

    async def pause_stream(
        self, name: str, *, partitions: Optional[Sequence[int]] = None, resume_all: bool = False
    ) -> None:
        """Pause a stream's partitions (all when `partitions` is None).

        A paused partition resumes when it is published to; with `resume_all`
        every paused partition of the stream resumes then.

        Raises:
            ErrorNotFound: No such stream or partition.
        """
        await self._call_any(
            "PauseStream",
            wire.PauseStreamRequest(
                name=name, partitions=list(partitions or ()), resumeAll=resume_all
            ),
            wire.PauseStreamResponse,
        )
        self._router.metadata.forget(name)

    async def set_stream_readonly(
        self, name: str, *, partitions: Optional[Sequence[int]] = None, readonly: bool = True
    ) -> None:
        """Make a stream's partitions read-only, or writable again.

        Raises:
            ErrorNotFound: No such stream or partition.
        """
        await self._call_any(
            "SetStreamReadonly",
            wire.SetStreamReadonlyRequest(
                name=name, partitions=list(partitions or ()), readonly=readonly
            ),
            wire.SetStreamReadonlyResponse,
        )
        self._router.metadata.forget(name)

    # ------------------------------------------------------------------ publishing

    def get_publish_request(
        self,
        value: bytes,
        *,
        stream: Optional[str] = None,
        key: Optional[bytes] = None,
        partition: Optional[int] = None,
        headers: Optional[Dict[str, bytes]] = None,
        ack_inbox: Optional[str] = None,
        correlation_id: Optional[str] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        auto_compress: bool = False,
        expected_offset: Optional[int] = None,
    ) -> wire.PublishRequest:
        """Build a PublishRequest, as `publish` would send it (for `publish_bulk`).

        Raises:
            ValueError: A bad value, header or ack policy.
        """
        return self._publisher.request(
            value,
            stream=stream,
            key=key,
            partition=partition,
            headers=headers,
            ack_inbox=ack_inbox,
            correlation_id=correlation_id,
            ack_policy=ack_policy,
            auto_compress=auto_compress,
            expected_offset=expected_offset,
        )

    async def publish(
        self,
        value: bytes,
        *,
        stream: Optional[str] = None,
        key: Optional[bytes] = None,
        partition: Optional[int] = None,
        headers: Optional[Dict[str, bytes]] = None,
        ack_inbox: Optional[str] = None,
        correlation_id: Optional[str] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        wait_for_stream: bool = False,
        auto_compress: bool = False,
        partitioner: Optional[Partitioner] = None,
        expected_offset: Optional[int] = None,
        ack_timeout: Optional[float] = None,
    ) -> Optional[Ack]:
        """Publish one message and, unless the ack policy is NONE, wait for its ack.

        The server waits for the ack only when the call carries a deadline,
        so lbwire sends `ack_timeout` as the deadline for LEADER and ALL.

        Args:
            value: Payload.
            stream: Stream name.
            key: Message key (also what the key partitioner hashes).
            partition: Partition; when None, the partitioner (argument or
                client default) chooses, else partition 0.
            headers: Message headers.
            ack_inbox: NATS subject for the ack (server-chosen if None).
            correlation_id: Id to correlate the ack with the message.
            ack_policy: LEADER, ALL or NONE.
            wait_for_stream: Retry while the stream does not exist yet.
            auto_compress: Compress with the client's compression method.
            partitioner: Partitioner for this message.
            expected_offset: Optimistic concurrency: the offset the message
                must get (the stream must have it enabled).
            ack_timeout: Seconds to wait for the ack (client default if None).

        Returns:
            The Ack, or None for AckPolicy.NONE.

        Raises:
            ValueError: Bad arguments, before anything is sent.
            ErrorMessageSizeExceeded: The message is larger than allowed.
            ErrorNotFound: No such stream or partition.
            ErrorReadonly: The partition is read-only.
            ErrorIncorrectOffset: `expected_offset` did not match.
            ErrorAckTimeout: No ack within the ack timeout.
            ErrorUnavailable: No broker could be reached, or the connection
                broke after the message went out: it may or may not be
                stored, and is not sent again (that could store it twice).
        """
        if not stream:
            raise ErrorInvalidArgument("publish needs a stream name")
        publisher = self._publisher
        request = publisher.request(
            value,
            stream=stream,
            key=key,
            partition=await publisher.partition(stream, key, value, partition, partitioner),
            headers=headers,
            ack_inbox=ack_inbox,
            correlation_id=correlation_id,
            ack_policy=ack_policy,
            auto_compress=auto_compress,
            expected_offset=expected_offset,
        )
        return await publisher.publish(request, ack_timeout, wait_for_stream)

    async def publish_to_subject(
        self,
        value: bytes,
        subject: str,
        *,
        key: Optional[bytes] = None,
        headers: Optional[Dict[str, bytes]] = None,
        ack_inbox: Optional[str] = None,
        correlation_id: Optional[str] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        ack_timeout: Optional[float] = None,
    ) -> Optional[Ack]:
        """Publish a Liftbridge message to a NATS subject (and the streams on it).

        Returns:
            The first Ack, or None for AckPolicy.NONE.

        Raises:
            ValueError: Bad arguments.
            ErrorAckTimeout: No ack within the ack timeout.
        """
        if not subject:
            raise ErrorInvalidArgument("publish_to_subject needs a subject")
        template = self._publisher.request(
            value,
            stream=None,
            key=key,
            partition=None,
            headers=headers,
            ack_inbox=ack_inbox,
            correlation_id=correlation_id,
            ack_policy=ack_policy,
            auto_compress=False,
            expected_offset=None,
        )
        request = wire.PublishToSubjectRequest(
            key=template.key,
            value=template.value,
            subject=subject,
            headers=template.headers,
            ackInbox=template.ackInbox,
            correlationId=template.correlationId,
            ackPolicy=template.ackPolicy,
        )
        return await self._publisher.publish_to_subject(request, ack_timeout)

    async def publish_async(
        self,
        value: bytes,
        *,
        stream: str,
        key: Optional[bytes] = None,
        partition: Optional[int] = None,
        headers: Optional[Dict[str, bytes]] = None,
        correlation_id: Optional[str] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        auto_compress: bool = False,
        partitioner: Optional[Partitioner] = None,
        expected_offset: Optional[int] = None,
        ack_timeout: Optional[float] = None,
    ) -> PendingAck:
        """Send a message on the pipelined PublishAsync stream without waiting.

        Returns:
            An awaitable `PendingAck`: `await` it for the Ack (None for
            AckPolicy.NONE); it raises `PublishAsyncError` if the server
            refused the message and `ErrorAckTimeout` if no ack came in time.
        """
        publisher = self._publisher
        request = publisher.request(
            value,
            stream=stream,
            key=key,
            partition=await publisher.partition(stream, key, value, partition, partitioner),
            headers=headers,
            ack_inbox=None,
            correlation_id=correlation_id,
            ack_policy=ack_policy,
            auto_compress=auto_compress,
            expected_offset=expected_offset,
        )
        timeout = ack_timeout if ack_timeout is not None else self.publish_async_ack_timeout
        return await publisher.publish_async(request, timeout)

    async def publish_bulk(
        self, iter_req: Iterable[wire.PublishRequest], wait: bool = True
    ) -> AsyncIterator[wire.PublishResponse]:
        """Publish many requests pipelined on one PublishAsync stream.

        As in gufo-liftbridge, the items are PublishResponses: `item.ack`
        is the Ack. Requests with AckPolicy.NONE get no response.

        Args:
            iter_req: Requests, e.g. from `get_publish_request`.
            wait: Wait up to `publish_async_ack_timeout` for every ack and
                raise `ErrorAckTimeout` for a missing one; with False, a
                missing ack ends the iteration quietly instead.

        Yields:
            PublishResponses, in the order the requests were sent.

        Raises:
            PublishAsyncError: The server refused a message (gufo-liftbridge
                leaves these unreported).
            ErrorAckTimeout: With `wait`, an ack missing after
                `publish_async_ack_timeout`.
        """
        async for response in self._publisher.publish_bulk(iter_req, wait):
            yield response

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

    async def join_consumer_group(
        self, group_id: str, consumer_id: str, streams: Sequence[str]
    ) -> wire.JoinConsumerGroupResponse:
        """Add a member to a consumer group (created if needed).

        Returns:
            The coordinator's broker id, the group epoch and the timeouts (ns).
        """
        return await self._call_any(
            "JoinConsumerGroup",
            wire.JoinConsumerGroupRequest(
                groupId=group_id, consumerId=consumer_id, streams=list(streams)
            ),
            wire.JoinConsumerGroupResponse,
        )

    async def leave_consumer_group(self, group_id: str, consumer_id: str) -> None:
        """Remove a member from a consumer group.

        Raises:
            ErrorNotFound: No such group.
        """
        await self._call_any(
            "LeaveConsumerGroup",
            wire.LeaveConsumerGroupRequest(groupId=group_id, consumerId=consumer_id),
            wire.LeaveConsumerGroupResponse,
        )

    async def fetch_consumer_group_assignments(
        self, group_id: str, consumer_id: str, epoch: int, *, coordinator: str
    ) -> wire.FetchConsumerGroupAssignmentsResponse:
        """Ask the group's coordinator (a broker id) for a member's partitions.

        This is also the member's heartbeat.

        Raises:
            ErrorNotFound: No such group.
            LiftbridgeError: Not a member, stale epoch or not the coordinator
                (FailedPrecondition; the message says which).
        """
        address = await self._router.broker_address(coordinator)
        return await self._router.call(
            address,
            "FetchConsumerGroupAssignments",
            wire.FetchConsumerGroupAssignmentsRequest(
                groupId=group_id, consumerId=consumer_id, epoch=epoch
            ),
            wire.FetchConsumerGroupAssignmentsResponse,
            timeout=self.rpc_timeout,
        )

    async def report_consumer_group_coordinator(
        self, group_id: str, consumer_id: str, coordinator: str, epoch: int
    ) -> None:
        """Report a group's coordinator as failed (a majority of members moves it)."""
        await self._call_any(
            "ReportConsumerGroupCoordinator",
            wire.ReportConsumerGroupCoordinatorRequest(
                groupId=group_id, consumerId=consumer_id, coordinator=coordinator, epoch=epoch
            ),
            wire.ReportConsumerGroupCoordinatorResponse,
        )

    async def fetch_consumer_group_metadata(
        self, group_id: str
    ) -> Optional[wire.ConsumerGroupMetadata]:
        """The group's coordinator and epoch, or None if the group does not exist."""
        response = await self._call_any(
            "FetchMetadata",
            wire.FetchMetadataRequest(groups=[group_id]),
            wire.FetchMetadataResponse,
        )
        self._router.metadata.update_brokers(response.brokers)
        for group in response.groupMetadata:
            if group.groupId == group_id and group.error == wire.ConsumerGroupMetadataError.OK:
                return group
        return None

    # ------------------------------------------------------------------ subscribing

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
    ) -> AsyncIterator[Message]:
        """Read messages from a stream partition.

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
            reverse: Read from the newest message backwards. Liftbridge v1.9.0
                (the API lbwire speaks) has no reverse subscriptions, so this
                raises `ErrorInvalidArgument` rather than silently reading forwards.

        Yields:
            Messages, decompressed when they were published compressed.

        Raises:
            ValueError: RESUME without `cursor_id`, a negative partition or
                stop offset, or inconsistent positions.
            ErrorNotFound: No such stream or partition (or it was deleted).
            ErrorPartitionPaused: The partition is paused (and `resume` is
                false), or was paused while reading.
            ErrorUnavailable: The partition stayed unreachable for
                `resubscribe_wait_time`.
        """
        if reverse:
            raise ErrorInvalidArgument(
                "Reverse subscriptions need a server on liftbridge-api v2 (builds after "
                "v1.9.0); the v1 API lbwire speaks has no reverse field"
            )
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
        )
        messages = self._subscribe_once(request, float(timeout) if timeout else None)
        try:
            async for message in messages:
                yield message
        finally:
            # Closed here, not left to the garbage collector: without
            # reference counting (PyPy) a subscription closed at `yield`
            # would keep its call open until a collection, possibly after
            # the event loop ended.
            await messages.aclose()  # type: ignore[attr-defined]
