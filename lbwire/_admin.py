"""The client's cluster-administration methods: metadata, streams, consumer groups.

`AdminMethods` is one facet of `LiftbridgeClient` (which inherits it): each
method checks its arguments, builds the request and delegates the call to
the client's `Router`. It holds no state of its own.
"""

from __future__ import annotations

from random import random
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    List,
    Optional,
    Sequence,
    Type,
    TypeVar,
    cast,
)

import anyio

from . import wire
from ._address import Address, parse_broker
from ._health import API_SERVICE, check_health, watch_health
from ._log import LazyLogger
from ._routing import CURSOR_STREAM
from .error import ErrorDeadlineExceeded, ErrorInvalidArgument, ErrorNoMetadataLeader, ErrorNotFound
from .metadata import to_public_group, to_public_partition
from .retry import POLICY_BOUND, Backoff, wait_bound
from .types import ConsumerGroupMetadata, HealthStatus, Metadata, PartitionMetadata

if TYPE_CHECKING:
    from ._routing import Router

__all__ = ["SERVER_DEFAULT", "AdminMethods"]

logger = LazyLogger("lbwire")

_R = TypeVar("_R")


def _names(what: str, names: Optional[Sequence[str]]) -> List[str]:
    """`names` as a list; a plain string (a likely slip for a list of one) is refused."""
    if names is None:
        return []
    if isinstance(names, (str, bytes)):
        raise ErrorInvalidArgument(f"{what} must be a list of names, not {names!r}")
    return list(names)


def _health_broker(router: Router, broker: Optional[str]) -> Address:
    if broker is None:
        return router.any_broker()
    try:
        return parse_broker(broker)
    except ValueError as exc:
        raise ErrorInvalidArgument(str(exc)) from None


class _ServerDefault(int):
    """`create_stream`'s default for `enable_compact`: "the server decides".

    It equals False (and is falsy), gufo-liftbridge's default, so signatures
    and truth tests read as before; yet it is not the `False` a caller passes,
    so an unset option sends nothing and the server's configured default
    (`streams.compact.enabled`) applies, as Liftbridge's client guide asks.
    """

    def __repr__(self) -> str:
        return "SERVER_DEFAULT"


#: Leave the option to the server's configuration (see `_ServerDefault`).
SERVER_DEFAULT: bool = cast(bool, _ServerDefault(0))


class AdminMethods:
    """Metadata, stream and consumer-group calls of `LiftbridgeClient`."""

    _router: Router
    metadata_leader_timeout: float
    metadata_leader_dev: float

    async def _call_any(
        self, method: str, request: Any, response_type: Type[_R], **kwargs: Any
    ) -> _R:
        # A seam: tests/compat/test_api_surface.py replaces it on
        # LiftbridgeClient to capture the requests sent, without a server, and
        # compares them with gufo-liftbridge's. Keep its name and signature
        # until it captures at a public hook (ConnectionRegistry.channel_factory).
        return await self._router.call_any(method, request, response_type, **kwargs)

    # ------------------------------------------------------------------ metadata

    async def get_metadata(
        self,
        stream: Optional[str] = None,
        *,
        wait_for_stream: bool = False,
        streams: Optional[Sequence[str]] = None,
        groups: Optional[Sequence[str]] = None,
        timeout: Optional[float] = POLICY_BOUND,
    ) -> Metadata:
        """Fetch cluster metadata, and refresh the client's cache with it.

        One FetchMetadata call answers for every stream and group named
        (`streams` and `groups` are lbwire's additions).

        Time budget: the retry policy's; with `wait_for_stream`, `timeout`.

        Args:
            stream: Only this stream's metadata, if set.
            wait_for_stream: Wait until `stream` (or each of `streams`; or,
                when none is named, every stream) exists and every partition
                has a leader.
            streams: Only these streams' metadata (instead of `stream`).
            groups: Also the metadata of these consumer groups (coordinator
                and epoch), in `Metadata.groups`.
            timeout: Bound (s) of the wait for streams (lbwire addition): by
                default the retry policy's `max_time`; None waits on, as
                gufo-liftbridge.

        Returns:
            The brokers, the streams asked for that exist (all streams when
            none is named) and the groups asked for that exist.

        Raises:
            ErrorInvalidArgument: Both `stream` and `streams`, or a plain
                string as `streams` or `groups`.
            ErrorUnavailable: No broker could be reached within the retry policy.
            ErrorDeadlineExceeded: `wait_for_stream` and not ready within `timeout`.
        """
        names = _names("streams", streams)
        if stream and names:
            raise ErrorInvalidArgument("Pass either stream or streams, not both")
        if stream:
            names = [stream]
        group_ids = _names("groups", groups)
        router = self._router
        response: Optional[wire.FetchMetadataResponse] = None
        if wait_for_stream:
            bound = wait_bound(timeout, router.policy)
            waited: List[Optional[str]] = [*names] or [None]  # None: every stream
            if len(waited) == 1:
                response = await router.wait_for_stream(waited[0], bound)
            else:
                # One bound for the whole wait, not one per stream.
                with anyio.move_on_after(bound) as scope:
                    for name in waited:
                        await router.wait_for_stream(name, None)
                if scope.cancelled_caught:
                    raise ErrorDeadlineExceeded(
                        f"Streams {names!r} were not ready within {bound} s"
                    )
            if len(names) > 1 or group_ids:
                response = None  # one answer for all of them, below
        if response is None:
            if group_ids:
                response = await self._fetch_metadata(names, group_ids)
            else:
                response = await router.refresh(*names)
        return router.metadata.to_public(response)

    async def get_consumer_group_metadata(self, group_id: str) -> ConsumerGroupMetadata:
        """The coordinator and epoch of a consumer group.

        Raises:
            ErrorInvalidArgument: Empty group id.
            ErrorNotFound: No such group (none ever joined it, or it was
                removed after its last member left).
        """
        if not group_id:
            raise ErrorInvalidArgument("Consumer group id must not be empty")
        group = await self.fetch_consumer_group_metadata(group_id)
        if group is None:
            raise ErrorNotFound(f"No such consumer group: {group_id!r}")
        return to_public_group(group)

    async def _fetch_metadata(
        self, streams: Sequence[str], groups: Sequence[str]
    ) -> wire.FetchMetadataResponse:
        # Without a deadline on the wire, as Router.refresh (see there).
        response = await self._call_any(
            "FetchMetadata",
            wire.FetchMetadataRequest(streams=streams, groups=groups),
            wire.FetchMetadataResponse,
            send_deadline=False,
        )
        self._router.metadata.update(response, streams)
        return response

    async def get_partition_metadata(
        self, stream: str, partition: int, wait_for_stream: bool = False
    ) -> PartitionMetadata:
        """Fetch one partition's metadata from its leader (high watermark, newest offset).

        Time budget: the retry policy's (`wait_for_stream` adds the bounded
        wait of `wait_for_stream()`).

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

    async def wait_for_stream(
        self, stream: str, *, timeout: Optional[float] = POLICY_BOUND
    ) -> None:
        """Wait until `stream` exists and each of its partitions has a leader.

        Metadata is fetched again with pauses growing as the retry policy's
        backoff.

        Args:
            stream: Stream name.
            timeout: Give up after this many seconds: by default the retry
                policy's `max_time`; None waits on.

        Raises:
            ErrorDeadlineExceeded: `timeout` passed first.
        """
        router = self._router
        await router.wait_for_stream(stream, wait_bound(timeout, router.policy))

    async def wait_for_cursors(self, *, timeout: Optional[float] = POLICY_BOUND) -> None:
        """Wait until the server's cursor stream is ready (see `wait_for_stream`)."""
        await self.wait_for_stream(CURSOR_STREAM, timeout=timeout)

    # ------------------------------------------------------------------ health

    async def health(
        self,
        service: str = API_SERVICE,
        *,
        broker: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> HealthStatus:
        """Ask one broker's gRPC health service (`grpc.health.v1.Health/Check`).

        Liftbridge reports the service `proto.API` SERVING from the moment
        its gRPC server starts, before it has loaded its streams (a stream
        may still be missing for a moment after a restart), and NOT_SERVING
        only when it stops on SIGINT, just before it closes every connection.
        SIGTERM and SIGKILL give no signal. The empty service name (the
        server as a whole) always stays SERVING. Take the answer as a hint,
        never as a guarantee: SERVING does not mean a partition can be read
        (a `get_partition_metadata` that answers does).

        The call is made once, without retries: it reports what it finds.

        Args:
            service: The service name to ask about.
            broker: `host:port` of the broker to ask; by default the broker
                the client sends calls any broker can serve to.
            timeout: Seconds to wait for the answer (default: `rpc_timeout`).

        Returns:
            The service's status.

        Raises:
            ErrorInvalidArgument: `broker` is not a `host:port` address.
            ErrorNotFound: The broker knows no such service.
            ErrorUnavailable: The broker could not be reached.
            ErrorDeadlineExceeded: No answer within `timeout`.
        """
        router = self._router
        return await check_health(
            router, _health_broker(router, broker), service, timeout or router.rpc_timeout
        )

    def watch_health(
        self, service: str = API_SERVICE, *, broker: Optional[str] = None
    ) -> AsyncGenerator[HealthStatus, None]:
        """Follow one broker's health status (`grpc.health.v1.Health/Watch`).

        Yields the current status at once, then each change. Liftbridge's
        statuses are those `health` describes: for `proto.API`, SERVING
        while the server runs, and NOT_SERVING only when it stops on
        SIGINT, just before it closes every connection. A server stopped by
        SIGTERM or SIGKILL, or one that cannot be reached any more, sends
        nothing: the watch then raises `ErrorUnavailable` (a frozen one is
        noticed only by the connection's keepalive, see `keepalive_time`).
        So NOT_SERVING and the end of a watch are hints that the broker is
        going away, never a guarantee that one that is going away says so.
        A service the broker does not know gives SERVICE_UNKNOWN (and the
        watch goes on: the status may be set later).

        Needs the client's `async with` block (the call uses the client's
        connection); nothing is held across a `yield` but the call itself.
        Close the iterator (`aclose()`, or leave an `async with
        contextlib.aclosing(...)` block) to end the call.

        Args:
            service: The service name to follow.
            broker: `host:port` of the broker to follow; by default the
                broker the client sends calls any broker can serve to.

        Raises:
            RuntimeError: The client's block is not open (at the call).
            ErrorInvalidArgument: `broker` is not a `host:port` address (at the call).
            ErrorUnavailable: The broker could not be reached, or the
                connection to it was lost (from the iteration).
        """
        router = self._router
        if not router.connections.open:
            raise RuntimeError(
                "watch_health needs an open client: "
                "use 'async with LiftbridgeClient(...) as client'"
            )
        return watch_health(router, _health_broker(router, broker), service)

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
        enable_compact: Optional[bool] = SERVER_DEFAULT,
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
        timeout: Optional[float] = POLICY_BOUND,
    ) -> None:
        """Create a stream.

        Time budget: `timeout`, for the whole call (the retries while the
        cluster elects a metadata leader, and `wait_for_stream`).

        Durations are in seconds, as in gufo-liftbridge; 0 means the server's
        default. An option not given is not sent, so the server's configured
        default applies (gufo-liftbridge sends compaction off unless asked).
        The arguments after `wait_for_stream` are lbwire's additions.

        Args:
            name: Stream name.
            subject: NATS subject (defaults to the name).
            group: NATS queue group the partitions' subscriptions join.
            replication_factor: Replicas per partition (-1: every broker).
            minisr: Minimum in-sync replicas for a write to be committed.
            partitions: Number of partitions.
            enable_compact: Compaction on/off (not given, or None: the
                server's default, `streams.compact.enabled`).
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
            timeout: Bound (s) of the call: by default the retry policy's
                `max_time`; None retries "no metadata leader" and waits for
                the stream without bound, as gufo-liftbridge.

        Raises:
            ValueError: Invalid arguments (before anything is sent).
            ErrorAlreadyExists: A stream with this name exists.
            ErrorInvalidArgument: The server refused the arguments.
            ErrorDeadlineExceeded: Not created (and ready, with
                `wait_for_stream`) within `timeout`. Its message says whether
                the stream may exist: a CreateStream that got no answer may
                have created it.
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
            compactEnabled=None if enable_compact is SERVER_DEFAULT else enable_compact,
            autoPauseTime=ms(auto_pause_time),
            autoPauseDisableIfSubscribers=(
                True if auto_pause_time and auto_pause_disable_if_subscribers else None
            ),
            minIsr=minisr or None,
            optimisticConcurrencyControl=optimistic_concurrency_control,
            encryption=encryption,
        )
        router = self._router
        bound = wait_bound(timeout, router.policy)
        dev = self.metadata_leader_dev
        # gufo-liftbridge's pause after "no metadata leader", which its
        # options set.
        backoff = Backoff(
            router.policy,
            pause=lambda _: max(0.0, self.metadata_leader_timeout - dev + 2 * dev * random()),
        )
        # Where the bound found the call: a CreateStream without answer may
        # have created the stream.
        state = "was not created"
        with anyio.move_on_after(bound) as scope:
            while True:
                try:
                    state = "may have been created, but no answer came"
                    await self._call_any("CreateStream", request, wire.CreateStreamResponse)
                    break
                except ErrorNoMetadataLeader:
                    state = "was not created (no metadata leader)"
                    logger.info("No metadata leader while creating %r; retrying", name)
                    await backoff.wait()
            state = "was created but not ready"
            router.metadata.forget(name)
            if wait_for_stream:
                await router.wait_for_stream(name, None)
        if scope.cancelled_caught:
            raise ErrorDeadlineExceeded(f"Stream {name!r} {state} within {bound} s")

    async def delete_stream(self, name: str) -> None:
        """Delete a stream and all its data.

        Time budget: the retry policy's (its `max_time` and attempts), each try
        bounded by `rpc_timeout`.

        Raises:
            ErrorNotFound: No such stream.
        """
        await self._call_any(
            "DeleteStream", wire.DeleteStreamRequest(name=name), wire.DeleteStreamResponse
        )
        self._router.metadata.forget(name)
        self._router.forget(name)

    async def pause_stream(
        self, name: str, *, partitions: Optional[Sequence[int]] = None, resume_all: bool = False
    ) -> None:
        """Pause a stream's partitions (all when `partitions` is None).

        Time budget: the retry policy's (its `max_time` and attempts), each try
        bounded by `rpc_timeout`.

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

        Time budget: the retry policy's (its `max_time` and attempts), each try
        bounded by `rpc_timeout`.

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

    async def join_consumer_group(
        self, group_id: str, consumer_id: str, streams: Sequence[str]
    ) -> wire.JoinConsumerGroupResponse:
        """Add a member to a consumer group (created if needed).

        Time budget: the retry policy's (its `max_time` and attempts), each try
        bounded by `rpc_timeout`.

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

        Time budget: the retry policy's (its `max_time` and attempts), each try
        bounded by `rpc_timeout`.

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

        Time budget: the retry policy's (its `max_time` and attempts), each try
        bounded by `rpc_timeout`.

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
            timeout=self._router.rpc_timeout,
        )

    async def report_consumer_group_coordinator(
        self, group_id: str, consumer_id: str, coordinator: str, epoch: int
    ) -> None:
        """Report a group's coordinator as failed (a majority of members moves it).

        Time budget: the retry policy's, each try bounded by `rpc_timeout`.
        """
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
        """The group's coordinator and epoch, or None if the group does not exist.

        The wire form, as consumer groups use it; `get_consumer_group_metadata`
        gives the public type.

        Time budget: the retry policy's, each try bounded by `rpc_timeout`.
        """
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
