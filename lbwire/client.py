"""LiftbridgeClient: the public client, drop-in for `gufo.liftbridge.client`.

Routing (which broker a call goes to), the metadata cache, retries and the
translation between public types and wire messages live here; the wire format
is in `lbwire.wire` and the transport in `lbwire.grpc`.
"""

from __future__ import annotations

import os
import random
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    AsyncIterator,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Type,
    TypeVar,
)

import anyio

from . import wire
from ._address import Address, format_address, parse_broker
from ._log import LazyLogger
from .compression import compress, decompress
from .error import (
    ErrorAckTimeout,
    ErrorChannelClosed,
    ErrorDeadlineExceeded,
    ErrorInternal,
    ErrorInvalidArgument,
    ErrorMessageSizeExceeded,
    ErrorNoMetadataLeader,
    ErrorNotFound,
    ErrorNotLeader,
    ErrorPartitionPaused,
    ErrorUnavailable,
    LiftbridgeError,
    from_grpc_error,
)
from .grpc.config import ChannelConfig
from .grpc.keepalive import SAFE_KEEPALIVE_TIME
from .grpc.status import GRPCError, Status
from .metadata import MetadataCache, to_public_partition
from .partitioning import KeyPartitioner, RoundRobinPartitioner, cursor_partition
from .retry import RetryPolicy, retrying

# gufo.liftbridge.client exposes these names too; programs import them from it.
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
    # Annotations only. anyio.abc pulls in typing_extensions and socket (7 ms,
    # -X importtime on the 2-core dev VM, once nothing else imports them).
    import ssl

    from anyio.abc import TaskGroup

    from .consumer import AutoOffset, Consumer
    from .grpc.channel import Channel
    from .publish import PublishSession

__all__ = [
    "CURSOR_STREAM",
    "AckPolicy",
    "AutoOffset",
    "Broker",
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

CURSOR_STREAM = "__cursors"
#: gufo-liftbridge's default for `max_message_size` (the gRPC receive limit).
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: The server's default `clustering.replication.max.bytes`: larger messages are
#: refused by the server, and silently lost when published without an ack.
DEFAULT_MAX_PUBLISH_SIZE = 1024 * 1024

_API = "/proto.API/"
_R = TypeVar("_R")


def _new_correlation_id() -> str:
    # 32 random hex digits, like uuid.uuid4().hex, in 0.65 us instead of
    # 2.2 us (timeit, 2-core dev VM), and without importing uuid.
    return os.urandom(16).hex()


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


class _Pooled:
    """A pooled Subscribe connection and how many subscriptions use it."""

    # A plain class: `dataclasses` costs 10 ms of `import lbwire.client`.
    __slots__ = ("channel", "idle_since", "users")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.users = 0
        self.idle_since = 0.0


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
        self._seeds: List[Address] = [parse_broker(b) for b in self.broker_seeds]
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
        self.max_message_size = max_message_size
        self.enable_http_proxy = enable_http_proxy
        self.compression_method = compression_method
        self.compression_threshold = compression_threshold
        self.encoding_header = encoding_header
        self.publish_async_ack_timeout = publish_async_ack_timeout
        self.metadata_leader_timeout = metadata_leader_timeout
        self.metadata_leader_dev = metadata_leader_dev
        self.rpc_timeout = rpc_timeout
        self.ack_timeout = ack_timeout
        self.max_publish_size = max_publish_size
        self.resubscribe_wait_time = resubscribe_wait_time
        self.cursor_convention = CursorConvention(cursor_convention)
        self.partitioner = partitioner
        self.retry_policy = retry_policy or RetryPolicy()
        self._channel_config = ChannelConfig(
            connect_timeout=connect_timeout,
            max_receive_message_length=max(max_message_size, 4 * 1024 * 1024),
            max_send_message_length=max(max_message_size, max_publish_size),
            ssl_context=ssl_context,
            server_hostname=tls_server_hostname,
            keepalive_time=keepalive_time,
        )
        self._metadata = MetadataCache()
        self._channels: Dict[Address, Channel] = {}
        self._last_used: Dict[Address, float] = {}
        if max_conns_per_broker < 1:
            raise ErrorInvalidArgument(
                f"max_conns_per_broker must be at least 1, not {max_conns_per_broker}"
            )
        self.max_conns_per_broker = max_conns_per_broker
        self._pools: Dict[Address, List[_Pooled]] = {}
        if idle_timeout is not None and idle_timeout <= 0:
            raise ErrorInvalidArgument(f"idle_timeout must be positive, not {idle_timeout}")
        self.idle_timeout = idle_timeout
        # The broker that calls any broker can serve go to while its
        # connection is open (see _any_broker).
        self._any_address: Optional[Address] = None
        self._task_group: Optional[TaskGroup] = None
        self._publish_session: Optional[PublishSession] = None
        self._publish_session_lock: Optional[anyio.Lock] = None
        self._closed = False

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> LiftbridgeClient:
        """Open the client's task group; connections are made on first use."""
        if self._closed:
            raise RuntimeError("LiftbridgeClient cannot be reopened after close()")
        if self._task_group is not None:
            raise RuntimeError("LiftbridgeClient is already open")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._task_group = tg
        self._publish_session_lock = anyio.Lock()
        if self.idle_timeout is not None:
            tg.start_soon(self._close_idle_channels, self.idle_timeout)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> Optional[bool]:
        """Close every connection and end every background task."""
        # Calls after the block fail with "not open" instead of starting
        # tasks in the ended task group.
        tg, self._task_group = self._task_group, None
        try:
            await self.close()
        finally:
            if tg is not None:
                tg.cancel_scope.cancel()
                if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
                    await tg.__aexit__(exc_type, exc, traceback)
                else:
                    # The block's own error propagates as it is: handed to the
                    # task group it would come out wrapped in an ExceptionGroup,
                    # and `except ErrorNotFound:` around the block would miss it.
                    await tg.__aexit__(None, None, None)
        return None

    async def close(self) -> None:
        """Close every connection of the client; pending calls fail."""
        self._closed = True
        session, self._publish_session = self._publish_session, None
        channels, self._channels = list(self._channels.values()), {}
        pools, self._pools = list(self._pools.values()), {}
        channels += [pooled.channel for pool in pools for pooled in pool]
        with anyio.CancelScope(shield=True):
            if session is not None:
                await session.aclose()
            for channel in channels:
                await channel.aclose()

    # ------------------------------------------------------------------ plumbing

    async def _close_idle_channels(self, idle_timeout: float) -> None:
        """Close connections no call used for `idle_timeout` s (they reopen on use)."""
        while True:
            await anyio.sleep(idle_timeout / 4)
            now = anyio.current_time()
            for address, channel in list(self._channels.items()):
                idle_for = now - self._last_used.get(address, now)
                if channel.active_calls == 0 and idle_for >= idle_timeout:
                    logger.debug("Closing the idle connection to %s", format_address(address))
                    del self._channels[address]
                    self._last_used.pop(address, None)
                    await channel.aclose()
            for address, pool in list(self._pools.items()):
                for pooled in [p for p in pool if p.users == 0]:
                    if now - pooled.idle_since >= idle_timeout:
                        logger.debug("Closing an idle subscription connection to %s", address)
                        pool.remove(pooled)
                        await pooled.channel.aclose()
                if not pool:
                    del self._pools[address]

    def _channel(self, address: Address) -> Channel:
        """The broker's connection for every call but Subscribe."""
        self._last_used[address] = anyio.current_time()
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._new_channel(address)
        return channel

    def _new_channel(self, address: Address) -> Channel:
        if self._task_group is None:
            raise RuntimeError(
                "LiftbridgeClient is not open: use 'async with LiftbridgeClient(...) as client'"
            )
        # The transport (h2, ssl) is imported with the first channel, not
        # with this module: 20 ms of `import lbwire.client` once
        # lbwire.grpc and lbwire.error stop importing it eagerly.
        from .grpc.channel import Channel

        return Channel(
            address[0], address[1], task_group=self._task_group, config=self._channel_config
        )

    def _take_pooled(self, address: Address) -> _Pooled:
        """A pooled connection for one Subscribe call; give it back with `_give_back`."""
        pool = self._pools.setdefault(address, [])
        pooled = min(pool, key=lambda p: p.users, default=None)
        if pooled is None or (pooled.users and len(pool) < self.max_conns_per_broker):
            pooled = _Pooled(self._new_channel(address))
            pool.append(pooled)
        pooled.users += 1
        return pooled

    def _give_back(self, pooled: _Pooled) -> None:
        pooled.users -= 1
        if pooled.users == 0:
            pooled.idle_since = anyio.current_time()

    def _any_broker(self) -> Address:
        """The broker for a call any broker can serve (a publish, metadata...).

        The one chosen last, as long as its connection is open; else the first
        of `_candidates()`. Every publish asked `_candidates()`, which
        shuffles and sorts: 1.7 us, this 0.17 us (one broker, connected;
        timeit on the 2-core dev VM).
        """
        address = self._any_address
        if address is not None:
            channel = self._channels.get(address)
            if channel is not None and channel.connected:
                return address
        address = self._any_address = self._candidates()[0]
        return address

    def _any_brokers(self) -> Iterator[Address]:
        """`_any_broker()`, then the other candidates should it fail."""
        first = self._any_broker()
        yield first
        for address in self._candidates():
            if address != first:
                self._any_address = address
                yield address

    def _candidates(self) -> List[Address]:
        """Brokers to try for a call any broker can serve: known ones first."""
        known = self._metadata.addresses()
        random.shuffle(known)
        seeds = list(self._seeds)
        random.shuffle(seeds)
        # Brokers with an open connection first: they answer fastest. A
        # channel whose broker died stays in `_channels` but is not connected.
        channels = self._channels
        ordered = sorted(
            dict.fromkeys(known + seeds),
            key=lambda a: not (a in channels and channels[a].connected),
        )
        return ordered

    async def _call(
        self,
        address: Address,
        method: str,
        request: Any,
        response_type: Type[_R],
        *,
        timeout: Optional[float],
        send_deadline: bool = True,
    ) -> _R:
        """One unary call to one broker; gRPC errors become lbwire exceptions.

        `request` is a wire message or its encoding. With `send_deadline`
        false, `timeout` bounds the call on this side only and the server sees
        a call without deadline.
        """
        channel = self._channel(address)
        payload = request if type(request) is bytes else request.encode()
        try:
            if send_deadline:
                data = await channel.unary_unary(_API + method, payload, timeout=timeout)
            else:
                with anyio.fail_after(timeout):
                    data = await channel.unary_unary(_API + method, payload)
        except TimeoutError:
            raise ErrorDeadlineExceeded(
                f"{method} to {format_address(address)} got no answer within {timeout} s"
            ) from None
        except GRPCError as exc:
            if exc.status == Status.DEADLINE_EXCEEDED:
                # The transport's own text ("deadline exceeded") names neither
                # the call nor the broker.
                raise ErrorDeadlineExceeded(
                    f"{method} to {format_address(address)} got no answer within {timeout} s",
                    status=exc.status,
                ) from None
            raise from_grpc_error(exc) from None
        return response_type.decode(data)  # type: ignore[attr-defined, no-any-return]

    async def _call_any(
        self,
        method: str,
        request: Any,
        response_type: Type[_R],
        *,
        timeout: Optional[float] = None,
        send_deadline: bool = True,
    ) -> _R:
        """A call any broker can serve: brokers are cycled on Unavailable."""

        async def attempt(failures: int) -> _R:
            last: Optional[LiftbridgeError] = None
            for address in self._any_brokers():
                try:
                    return await self._call(
                        address,
                        method,
                        request,
                        response_type,
                        timeout=timeout or self.rpc_timeout,
                        send_deadline=send_deadline,
                    )
                except ErrorUnavailable as exc:
                    logger.debug("%s to %s failed: %s", method, format_address(address), exc)
                    last = exc
            assert last is not None
            raise last

        try:
            return await retrying(
                attempt, self.retry_policy, (ErrorUnavailable, ErrorNoMetadataLeader)
            )
        except ErrorUnavailable as exc:
            seeds = ", ".join(self.broker_seeds)
            raise ErrorUnavailable(f"No broker reachable (seeds: {seeds}): {exc}") from exc

    async def _call_leader(
        self,
        stream: str,
        partition: int,
        method: str,
        request: Any,
        response_type: Type[_R],
        *,
        timeout: Optional[float] = None,
    ) -> _R:
        """A call the partition leader must serve: metadata is refreshed on routing errors."""

        async def attempt(failures: int) -> _R:
            address = await self._leader(stream, partition, refresh=failures > 0)
            try:
                return await self._call(
                    address, method, request, response_type, timeout=timeout or self.rpc_timeout
                )
            except ErrorNotLeader as exc:
                meta = self._metadata.partition(stream, partition)
                if failures > 0 and meta is not None and meta.paused:
                    # The leader of a paused partition does not lead it until
                    # it is resumed: retrying cannot help.
                    raise ErrorPartitionPaused(
                        f"Partition {stream!r}/{partition} is paused; publishing to it "
                        f"or subscribing with resume=True resumes it (server: {exc})",
                        status=exc.status,
                    ) from None
                raise

        return await retrying(
            attempt, self.retry_policy, (ErrorUnavailable, ErrorNotLeader, ErrorNoMetadataLeader)
        )

    async def _refresh(self, *streams: str) -> wire.FetchMetadataResponse:
        # No deadline on the wire: a broker without a fresh broker list asks
        # every Raft member and, with a member down, waits for it until the
        # call's deadline (3 s when it has none), so a sent rpc_timeout would
        # make it answer just as the client gives up.
        response = await self._call_any(
            "FetchMetadata",
            wire.FetchMetadataRequest(streams=list(streams)),
            wire.FetchMetadataResponse,
            send_deadline=False,
        )
        self._metadata.update(response, streams)
        return response

    async def _leader(self, stream: str, partition: int, *, refresh: bool = False) -> Address:
        """Address of a partition's leader, from the cache or fresh metadata."""
        address = None if refresh else self._metadata.leader(stream, partition)
        if address is None:
            await self._refresh(stream)
            address = self._metadata.leader(stream, partition)
        if address is None:
            if self._metadata.partition_count(stream) is None:
                raise ErrorNotFound(f"No such stream: {stream!r}")
            if self._metadata.partition(stream, partition) is None:
                raise ErrorNotFound(f"No such partition: {stream!r} has no partition {partition}")
            raise ErrorUnavailable(f"Partition {stream!r}/{partition} has no leader yet")
        return address

    async def _partition_count(self, stream: str) -> int:
        count = self._metadata.partition_count(stream)
        if count is None:
            await self._refresh(stream)
            count = self._metadata.partition_count(stream)
        if count is None:
            raise ErrorNotFound(f"No such stream: {stream!r}")
        return count

    async def _pause_on_error(self, delay: float, deviation: float) -> None:
        await anyio.sleep(max(0.0, delay - deviation + 2 * deviation * random.random()))

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
        streams = [stream] if stream else []
        while True:
            response = await self._refresh(*streams)
            if not wait_for_stream or self._stream_ready(stream):
                return self._metadata.to_public(response)
            await anyio.sleep(0.05)

    def _stream_ready(self, stream: Optional[str]) -> bool:
        metas = (
            [self._metadata.streams.get(stream)]
            if stream
            else list(self._metadata.streams.values())
        )
        return bool(metas) and all(
            m is not None and m.partitions and all(p.leader for p in m.partitions.values())
            for m in metas
        )

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
        response = await self._call_leader(
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
                await self._pause_on_error(self.metadata_leader_timeout, self.metadata_leader_dev)
        self._metadata.forget(name)
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
        self._metadata.forget(name)

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
        self._metadata.forget(name)

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
        self._metadata.forget(name)

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
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ErrorInvalidArgument(f"Message value must be bytes, not {type(value).__name__}")
        try:
            ack_policy = AckPolicy(ack_policy)
        except ValueError:
            raise ErrorInvalidArgument(
                f"Unknown ack policy {ack_policy!r}: use AckPolicy.LEADER, ALL or NONE"
            ) from None
        value = bytes(value)
        out_headers: Dict[str, bytes] = {}
        if (
            auto_compress
            and self.compression_method is not None
            and len(value) >= self.compression_threshold
        ):
            value = compress(value, self.compression_method)
            out_headers[self.encoding_header] = self.compression_method.encode()
        if headers:
            for name, hvalue in headers.items():
                if not isinstance(name, str) or not isinstance(hvalue, (bytes, bytearray)):
                    raise ErrorInvalidArgument(
                        f"Header {name!r}: names must be str and values bytes"
                    )
                out_headers[name] = bytes(hvalue)
        if partition is not None and partition < 0:
            raise ErrorInvalidArgument(f"Partition must not be negative, not {partition}")
        if expected_offset is not None and expected_offset < 0:
            raise ErrorInvalidArgument(
                f"expected_offset must not be negative, not {expected_offset} "
                "(None skips the check)"
            )
        return wire.PublishRequest(
            key=key or b"",
            value=value,
            stream=stream or "",
            partition=partition or 0,
            headers=out_headers,
            ackInbox=ack_inbox or "",
            correlationId=correlation_id or "",
            ackPolicy=ack_policy,
            # -1 tells a stream with optimistic concurrency control not to
            # check; 0 would demand offset 0 (go-liftbridge sends -1 too).
            expectedOffset=-1 if expected_offset is None else expected_offset,
        )

    def _check_size(self, encoded: bytes) -> None:
        if len(encoded) > self.max_publish_size:
            raise ErrorMessageSizeExceeded(
                f"Message of {len(encoded)} bytes exceeds max_publish_size "
                f"({self.max_publish_size} bytes); the server would refuse it"
            )

    async def _choose_partition(
        self, stream: str, key: Optional[bytes], value: bytes, partitioner: Optional[Partitioner]
    ) -> int:
        partitioner = partitioner or self.partitioner
        if partitioner is None:
            return 0
        count = await self._partition_count(stream)
        chosen = partitioner(stream, key, value, count)
        if not 0 <= chosen < count:
            raise ErrorInvalidArgument(
                f"Partitioner chose partition {chosen} of {stream!r}, which has {count}"
            )
        return chosen

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
        if partition is None and (partitioner or self.partitioner):
            partition = await self._choose_partition(stream, key, bytes(value), partitioner)
        request = self.get_publish_request(
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
        encoded = request.encode()
        self._check_size(encoded)
        wait = ack_timeout if ack_timeout is not None else self.ack_timeout
        timeout = None if request.ackPolicy == AckPolicy.NONE else wait

        async def once() -> Optional[Ack]:
            try:
                response = await self._call_publish(request, encoded, timeout)
            except ErrorDeadlineExceeded as exc:
                raise ErrorAckTimeout(
                    f"No ack for the message to {stream!r} within {wait} s"
                ) from exc
            return response.ack

        while True:
            try:
                return await once()
            except ErrorNotFound:
                if not wait_for_stream:
                    raise
                await self.wait_for_stream(stream)

    async def _call_publish(
        self, request: wire.PublishRequest, encoded: bytes, timeout: Optional[float]
    ) -> wire.PublishResponse:
        # Any broker can take a publish (it goes to NATS); unacked publishes
        # carry no deadline so the server takes its fire-and-forget path.
        async def attempt(failures: int) -> wire.PublishResponse:
            address = self._any_broker()
            # A publish that went out may be stored although its connection
            # then broke (the broker died after forwarding it): sending it
            # again could store it twice. Only publishes that had no open
            # connection to go out on, or that the server said it did not
            # process (GOAWAY, REFUSED_STREAM), are sent again.
            went_out = self._channel(address).connected
            try:
                return await self._call(
                    address, "Publish", encoded, wire.PublishResponse, timeout=timeout
                )
            except ErrorUnavailable as exc:
                if went_out and "not processed" not in exc.message:
                    raise _MaybePublished(exc) from None
                await self._refresh_quietly()
                raise

        try:
            return await retrying(attempt, self.retry_policy, (ErrorUnavailable,))
        except _MaybePublished as exc:
            raise ErrorUnavailable(
                f"Connection lost while publishing to {request.stream!r}: the message may "
                f"or may not be stored, and was not sent again ({exc.error})",
                status=exc.error.status,
            ) from None

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh()
        except LiftbridgeError as exc:
            logger.debug("Metadata refresh failed: %s", exc)

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
        template = self.get_publish_request(
            value,
            key=key,
            headers=headers,
            ack_inbox=ack_inbox,
            correlation_id=correlation_id,
            ack_policy=ack_policy,
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
        encoded = request.encode()
        self._check_size(encoded)
        wait = ack_timeout if ack_timeout is not None else self.ack_timeout
        timeout = None if request.ackPolicy == AckPolicy.NONE else wait
        try:
            response = await self._call(
                self._any_broker(),
                "PublishToSubject",
                encoded,
                wire.PublishToSubjectResponse,
                timeout=timeout,
            )
        except ErrorDeadlineExceeded as exc:
            raise ErrorAckTimeout(f"No ack from subject {subject!r} within {wait} s") from exc
        return response.ack

    async def _session(self) -> PublishSession:
        """The client's long-lived PublishAsync stream, opened on first use."""
        session = self._publish_session
        if session is not None and not session.closed:
            # Open: no lock, whose checkpoint cost 9 us per publish_async
            # (see PublishSession.send).
            return session
        assert self._publish_session_lock is not None
        async with self._publish_session_lock:
            session = self._publish_session
            if session is None or session.closed:
                if self._task_group is None:
                    raise RuntimeError("LiftbridgeClient is not open")
                from .publish import PublishSession

                address = self._any_broker()
                session = PublishSession(self._channel(address), self._task_group)
                await session.start()
                self._publish_session = session
            return session

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
    ) -> Any:
        """Send a message on the pipelined PublishAsync stream without waiting.

        Returns:
            An awaitable `PendingAck`: `await` it for the Ack (None for
            AckPolicy.NONE); it raises `PublishAsyncError` if the server
            refused the message and `ErrorAckTimeout` if no ack came in time.
        """
        if partition is None and (partitioner or self.partitioner):
            partition = await self._choose_partition(stream, key, bytes(value), partitioner)
        request = self.get_publish_request(
            value,
            stream=stream,
            key=key,
            partition=partition,
            headers=headers,
            correlation_id=correlation_id or _new_correlation_id(),
            ack_policy=ack_policy,
            auto_compress=auto_compress,
            expected_offset=expected_offset,
        )
        encoded = request.encode()
        self._check_size(encoded)
        session = await self._session()
        timeout = ack_timeout if ack_timeout is not None else self.publish_async_ack_timeout
        return await session.send(request, encoded, timeout)

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
        session = await self._session()
        pending = []
        for request in iter_req:
            if not request.correlationId:
                request.correlationId = _new_correlation_id()
            encoded = request.encode()
            self._check_size(encoded)
            pending.append(await session.send(request, encoded, self.publish_async_ack_timeout))
        for item in pending:
            try:
                ack = await item
            except ErrorAckTimeout:
                if wait:
                    raise
                return
            if ack is not None:
                yield wire.PublishResponse(ack=ack, correlationId=item.correlation_id)

    # ------------------------------------------------------------------ cursors

    async def _cursor_leader_call(
        self,
        stream: str,
        partition: int,
        cursor_id: str,
        method: str,
        request: Any,
        response_type: Type[_R],
    ) -> _R:
        count = await self._partition_count(CURSOR_STREAM)
        target = cursor_partition(cursor_id, stream, partition, count)
        return await self._call_leader(CURSOR_STREAM, target, method, request, response_type)

    async def _store_cursor(self, stream: str, partition: int, cursor_id: str, value: int) -> None:
        """Store `value` as the cursor, with no convention applied."""
        await self._cursor_leader_call(
            stream,
            partition,
            cursor_id,
            "SetCursor",
            wire.SetCursorRequest(
                stream=stream, partition=partition, cursorId=cursor_id, offset=value
            ),
            wire.SetCursorResponse,
        )

    async def _load_cursor(self, stream: str, partition: int, cursor_id: str) -> int:
        """The stored cursor value (-1 when there is none), with no convention applied."""
        response = await self._cursor_leader_call(
            stream,
            partition,
            cursor_id,
            "FetchCursor",
            wire.FetchCursorRequest(stream=stream, partition=partition, cursorId=cursor_id),
            wire.FetchCursorResponse,
        )
        return response.offset

    async def set_cursor(self, stream: str, partition: int, cursor_id: str, offset: int) -> None:
        """Store a cursor after processing the message at `offset`.

        With the default (gufo-liftbridge) convention the cursor then holds
        `offset + 1`, the next message to process; with
        `CursorConvention.LAST_PROCESSED` (go-liftbridge's) it holds `offset`.

        Raises:
            ValueError: Empty cursor id, or negative partition or offset.
            ErrorNotFound: The cursors stream does not exist (cursors disabled).
        """
        if not cursor_id:
            raise ErrorInvalidArgument("cursor_id must not be empty")
        if partition < 0:
            raise ErrorInvalidArgument(f"Partition must not be negative, not {partition}")
        if offset < 0:
            raise ErrorInvalidArgument(f"Cursor offset must not be negative, not {offset}")
        stored = offset + 1 if self.cursor_convention == CursorConvention.NEXT else offset
        await self._store_cursor(stream, partition, cursor_id, stored)

    async def get_cursor(self, stream: str, partition: int, cursor_id: str) -> int:
        """Read a stored cursor: the stored value, or -1 when there is none.

        Raises:
            ValueError: Empty cursor id or negative partition.
            ErrorNotFound: The cursors stream does not exist (cursors disabled).
        """
        if not cursor_id:
            raise ErrorInvalidArgument("cursor_id must not be empty")
        if partition < 0:
            raise ErrorInvalidArgument(f"Partition must not be negative, not {partition}")
        return await self._load_cursor(stream, partition, cursor_id)

    async def _resume_offset(self, stream: str, partition: int, cursor_id: str) -> int:
        stored = await self.get_cursor(stream, partition, cursor_id)
        if stored < 0:
            return 0
        return stored if self.cursor_convention == CursorConvention.NEXT else stored + 1

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

    async def _broker_address(self, broker_id: str) -> Address:
        address = self._metadata.brokers.get(broker_id)
        if address is None:
            await self._refresh()
            address = self._metadata.brokers.get(broker_id)
        if address is None:
            raise ErrorUnavailable(f"Broker {broker_id!r} is not in the cluster metadata")
        return address

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
        address = await self._broker_address(coordinator)
        return await self._call(
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
        self._metadata.update_brokers(response.brokers)
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
        partition = partition or 0
        if partition < 0:
            raise ErrorInvalidArgument(f"Partition must not be negative, not {partition}")
        request = wire.SubscribeRequest(
            stream=stream,
            partition=partition,
            resume=resume,
            readISRReplica=allow_isr,
            consumer=consumer,
        )
        if start_offset is not None:
            request.startPosition = wire.StartPosition.OFFSET
            request.startOffset = start_offset
        elif start_timestamp is not None:
            request.startPosition = wire.StartPosition.TIMESTAMP
            request.startTimestamp = int(start_timestamp * 1_000_000_000)
        elif start_position == StartPosition.RESUME:
            if not cursor_id:
                raise ErrorInvalidArgument("cursor_id must be set for StartPosition.RESUME")
            request.startPosition = wire.StartPosition.OFFSET
            request.startOffset = await self._resume_offset(stream, partition, cursor_id)
        else:
            try:
                request.startPosition = wire.StartPosition(StartPosition(start_position))
            except ValueError:
                raise ErrorInvalidArgument(f"Unknown start position {start_position!r}") from None
        if stop_offset is not None:
            if stop_offset < 0:
                # The server reads -1 as "never stop".
                raise ErrorInvalidArgument(f"stop_offset must not be negative, not {stop_offset}")
            request.stopPosition = wire.StopPosition.STOP_OFFSET
            request.stopOffset = stop_offset
        elif stop_timestamp is not None:
            request.stopPosition = wire.StopPosition.STOP_TIMESTAMP
            request.stopTimestamp = int(stop_timestamp * 1_000_000_000)
        else:
            try:
                request.stopPosition = StopPosition(stop_position)
            except ValueError:
                raise ErrorInvalidArgument(f"Unknown stop position {stop_position!r}") from None
            if request.stopPosition in (StopPosition.STOP_OFFSET, StopPosition.STOP_TIMESTAMP):
                raise ErrorInvalidArgument(
                    f"{StopPosition(stop_position).name} needs stop_offset or stop_timestamp"
                )

        encoding_header = self.encoding_header
        deadline_for_resume: Optional[float] = None
        setup_timeout = float(timeout) if timeout else None
        # Offset after the last delivered message. A resumed subscription can
        # repeat messages: a new leader whose high watermark still lags the old
        # leader's serves from its high watermark + 1, below the offset asked
        # for (v1.9.0 commitlog newReaderCommitted), so those are skipped.
        next_offset = -1
        while True:
            if next_offset >= 0:
                # Resume after the last delivered message, never before it.
                # Set here rather than per message: 0.19 us a message
                # (timeit, 2-core dev VM).
                request.startPosition = wire.StartPosition.OFFSET
                request.startOffset = next_offset
            messages = self._subscribe_once(request, setup_timeout)
            try:
                async for msg in messages:
                    if msg.offset < next_offset:
                        continue
                    deadline_for_resume = None
                    headers = msg.headers
                    value = msg.value
                    if headers and encoding_header in headers:
                        value = decompress(value, headers.pop(encoding_header).decode())
                    yield Message(
                        value,
                        msg.subject,
                        msg.offset,
                        msg.timestamp,
                        msg.key,
                        msg.partition,
                        headers,
                        msg.stream,
                        msg.replySubject,
                        msg.correlationId,
                    )
                    next_offset = msg.offset + 1
                return
            except (ErrorUnavailable, _LeaderMoved, _SegmentReplaced) as exc:
                now = anyio.current_time()
                if deadline_for_resume is None:
                    deadline_for_resume = now + self.resubscribe_wait_time
                if now >= deadline_for_resume:
                    raise ErrorUnavailable(
                        f"Subscription to {stream!r}/{partition} could not be resumed "
                        f"within {self.resubscribe_wait_time} s: {exc}"
                    ) from exc
                logger.info(
                    "Subscription to %s/%s interrupted (%s); resuming", stream, partition, exc
                )
                await anyio.sleep(self.retry_policy.backoff(1))
                await self._refresh_quietly()
            finally:
                # Closed here, not left to the garbage collector: without
                # reference counting (PyPy) a subscription closed at `yield`
                # would keep its call open until a collection, possibly after
                # the event loop ended.
                await messages.aclose()

    async def _partition_paused(self, stream: str, partition: int) -> bool:
        """Whether fresh metadata says the partition is paused.

        v1.9.0 keeps reporting a partition paused after it was resumed, so
        only a "no" is certain; callers use this to explain an error.
        """
        try:
            await self._refresh(stream)
        except LiftbridgeError:
            return False
        meta = self._metadata.partition(stream, partition)
        return meta is not None and meta.paused

    async def _subscribe_once(
        self, request: wire.SubscribeRequest, setup_timeout: Optional[float]
    ) -> AsyncGenerator[wire.Message, None]:
        """One Subscribe call; errors say whether resuming elsewhere can help."""
        stream, partition = request.stream, request.partition
        address: Optional[Address] = None
        if request.readISRReplica:
            if self._metadata.partition(stream, partition) is None:
                await self._refresh(stream)
            address = self._metadata.random_isr(stream, partition)
        if address is None:
            address = await self._leader(stream, partition)
        pooled = self._take_pooled(address)
        handshake_done = False
        try:
            async with pooled.channel.unary_stream(_API + "Subscribe", request.encode()) as call:
                # The server's first message is an empty handshake: it says
                # the subscription exists. Setup errors come instead of it.
                with anyio.fail_after(setup_timeout):
                    await call.receive()
                handshake_done = True
                decode = wire.Message.decode
                async for data in call:
                    yield decode(data)
        except TimeoutError:
            raise ErrorDeadlineExceeded(
                f"Subscription to {stream!r}/{partition} not set up within {setup_timeout} s"
            ) from None
        except GRPCError as exc:
            status = exc.status
            if status == Status.RESOURCE_EXHAUSTED:
                if "larger than max" in exc.message:
                    # Our own receive limit, not the server's end of stream.
                    raise ErrorMessageSizeExceeded(
                        f"A message of {stream!r}/{partition} exceeds max_message_size: "
                        f"{exc.message}"
                    ) from None
                return  # stop position reached, end of read-only partition, or empty
            if status == Status.UNAVAILABLE:
                raise ErrorUnavailable(exc.message) from None
            if "segment has been closed" in exc.message:
                # The log closed a segment under the reader (v1.9.0: Internal
                # before the handshake, Unknown after it): the partition is
                # paused, or the cleaner (retention, compaction) replaced the
                # segment, which a new subscription gets past.
                if not request.resume and await self._partition_paused(stream, partition):
                    raise ErrorPartitionPaused(
                        f"Partition {stream!r}/{partition} is paused; subscribe with "
                        f"resume=True to resume it (server: {exc.message})",
                        status=status,
                    ) from None
                raise _SegmentReplaced(exc.message) from None
            if not handshake_done:
                if status == Status.FAILED_PRECONDITION and "leader" in exc.message.lower():
                    raise _LeaderMoved(exc.message) from None
                if status == Status.NOT_FOUND:
                    self._metadata.forget(stream)
                if (
                    status == Status.INVALID_ARGUMENT
                    and request.stopPosition != wire.StopPosition.STOP_OFFSET
                    and "stop offset is before start offset" in exc.message.lower()
                ):
                    # The implied stop (newest message, end of a read-only
                    # partition, stop time) lies before the start, e.g. NEW_ONLY
                    # on a read-only partition: nothing to read.
                    return
                raise from_grpc_error(exc) from None
            if status == Status.INTERNAL:
                raise _LeaderMoved(exc.message) from None  # log closed: leadership moved
            if status == Status.FAILED_PRECONDITION:
                raise ErrorPartitionPaused(
                    f"Partition {stream!r}/{partition} was paused: {exc.message}"
                ) from None
            if status == Status.NOT_FOUND:
                self._metadata.forget(stream)
            raise from_grpc_error(exc, default=ErrorChannelClosed) from None
        finally:
            self._give_back(pooled)
        if not handshake_done:
            return
        raise ErrorChannelClosed(f"Server ended the subscription to {stream!r}/{partition}")

    def activity(
        self,
        *,
        start_position: StartPosition = StartPosition.NEW_ONLY,
        start_offset: Optional[int] = None,
        start_timestamp: Optional[float] = None,
        cursor_id: Optional[str] = None,
        after_id: Optional[int] = None,
    ) -> AsyncGenerator[Any, None]:
        """Read the server's activity stream as typed events, each once.

        Yields `lbwire.activity.ActivityEvent` subclasses (`StreamCreated`,
        `ConsumerJoined`, ..., `UnknownActivity`); see
        `lbwire.activity.activity_events` for the arguments and errors.
        """
        from .activity import activity_events

        return activity_events(
            self,
            start_position=start_position,
            start_offset=start_offset,
            start_timestamp=start_timestamp,
            cursor_id=cursor_id,
            after_id=after_id,
        )


class _MaybePublished(Exception):
    """A publish failed after it went out: not to be retried (internal signal)."""

    def __init__(self, error: ErrorUnavailable) -> None:
        super().__init__(error)
        self.error = error


class _LeaderMoved(ErrorInternal):
    """The partition's leadership moved while subscribing (internal signal)."""


class _SegmentReplaced(ErrorInternal):
    """The log cleaner replaced the segment being read (internal signal)."""
