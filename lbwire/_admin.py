"""The client's cluster-administration methods: metadata, streams, consumer groups.

`AdminMethods` is one facet of `LiftbridgeClient` (which inherits it): each
method checks its arguments, builds the request and delegates the call to
the client's `Router`. It holds no state of its own.
"""

from __future__ import annotations

from random import random
from typing import TYPE_CHECKING, Any, Optional, Sequence, Type, TypeVar, cast

import anyio

from . import wire
from ._log import LazyLogger
from ._routing import CURSOR_STREAM
from .error import ErrorDeadlineExceeded, ErrorInvalidArgument, ErrorNoMetadataLeader, ErrorNotFound
from .metadata import to_public_partition
from .retry import POLICY_BOUND, Backoff, wait_bound
from .types import Metadata, PartitionMetadata

if TYPE_CHECKING:
    from ._routing import Router

__all__ = ["SERVER_DEFAULT", "AdminMethods"]

logger = LazyLogger("lbwire")

_R = TypeVar("_R")


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
        timeout: Optional[float] = POLICY_BOUND,
    ) -> Metadata:
        """Fetch cluster metadata, and refresh the client's cache with it.

        Time budget: the retry policy's; with `wait_for_stream`, `timeout`.

        Args:
            stream: Only this stream's metadata, if set.
            wait_for_stream: Wait until `stream` exists and every partition
                has a leader.
            timeout: Bound (s) of that wait (lbwire addition): by default the
                retry policy's `max_time`; None waits on, as gufo-liftbridge.

        Raises:
            ErrorUnavailable: No broker could be reached within the retry policy.
            ErrorDeadlineExceeded: `wait_for_stream` and not ready within `timeout`.
        """
        router = self._router
        if wait_for_stream:
            response = await router.wait_for_stream(stream, wait_bound(timeout, router.policy))
        else:
            response = await router.refresh(*([stream] if stream else []))
        return router.metadata.to_public(response)

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
                `wait_for_stream`) within `timeout`.
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
        with anyio.move_on_after(bound) as scope:
            while True:
                try:
                    await self._call_any("CreateStream", request, wire.CreateStreamResponse)
                    break
                except ErrorNoMetadataLeader:
                    logger.info("No metadata leader while creating %r; retrying", name)
                    await backoff.wait()
            router.metadata.forget(name)
            if wait_for_stream:
                await router.wait_for_stream(name, None)
        if scope.cancelled_caught:
            raise ErrorDeadlineExceeded(
                f"Stream {name!r} was not created{' and ready' if wait_for_stream else ''} "
                f"within {bound} s"
            )

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
