"""Public value types, compatible with `gufo.liftbridge.types` (0.2.0).

The gufo-liftbridge classes keep their names, fields and field order; lbwire's
additions (stop positions, partitioners, more partition metadata) come after
them as optional fields or new names, so code written for gufo-liftbridge
keeps working unchanged.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, List, Optional

from .wire import Ack, AckPolicy, StopPosition

# `Message[V, K]` defaults both to bytes (PEP 696), so a plain `Message`, as
# gufo-liftbridge code writes it, still means bytes and `Message[str]` gives
# str values with bytes keys. typing has defaults from 3.13; before, type
# checkers read typing_extensions' stubs and at run time anyio brings it.
if TYPE_CHECKING:
    from typing_extensions import TypeVar
elif sys.version_info >= (3, 13):
    from typing import TypeVar
else:
    try:
        from typing_extensions import TypeVar
    except ImportError:  # pragma: no cover - anyio's dependency missing
        from typing import TypeVar as _TypeVar

        def TypeVar(name: str, *, default: Any = None) -> Any:
            return _TypeVar(name)


__all__ = [
    "Ack",
    "AckPolicy",
    "Broker",
    "ConsumerGroupAssignment",
    "ConsumerGroupMetadata",
    "CursorConvention",
    "HealthStatus",
    "Message",
    "Metadata",
    "PartitionEventTimestamps",
    "PartitionMetadata",
    "Partitioner",
    "RetentionPolicy",
    "StartPosition",
    "StopPosition",
    "StreamMetadata",
]


class StartPosition(IntEnum):
    """Where a subscription starts.

    Attributes:
        NEW_ONLY: After the newest message: only messages published from now on.
        OFFSET: At `start_offset`.
        EARLIEST: At the oldest message the partition still retains.
        LATEST: At the newest message.
        TIMESTAMP: At the first message received at or after `start_timestamp`.
        RESUME: lbwire/gufo-liftbridge extension: at the position stored in
            the cursor `cursor_id` (the first message not yet processed).
    """

    NEW_ONLY = 0
    OFFSET = 1
    EARLIEST = 2
    LATEST = 3
    TIMESTAMP = 4
    RESUME = 9999


class CursorConvention(IntEnum):
    """What number a stored cursor holds.

    Attributes:
        NEXT: gufo-liftbridge's convention (lbwire's default): the cursor holds
            the offset of the next message to process; `set_cursor(offset=i)`
            stores i+1 and RESUME starts at the stored value.
        LAST_PROCESSED: go-liftbridge's convention: the cursor holds the offset
            of the last processed message; `set_cursor(offset=i)` stores i and
            RESUME starts at the stored value + 1.
    """

    NEXT = 0
    LAST_PROCESSED = 1


@dataclass(frozen=True)
class RetentionPolicy:
    """A partition's retention policy (kept from gufo-liftbridge's API).

    Attributes:
        retention_bytes: Keep up to this many bytes in a partition.
        segment_bytes: Roll a new segment after this many bytes.
        retention_ages: Keep messages for this many seconds.
        segment_ages: Roll a new segment after this many seconds.
    """

    retention_bytes: int = 0
    segment_bytes: int = 0
    retention_ages: int = 86400
    segment_ages: int = 3600


@dataclass
class Broker:
    """A broker of the cluster.

    Attributes:
        id: Broker id.
        host: Host the broker's API listens on.
        port: Port the broker's API listens on.
        partition_count: Partitions stored on the broker.
        leader_count: Partitions the broker leads.
    """

    id: str
    host: str
    port: int
    partition_count: int = 0
    leader_count: int = 0

    @property
    def address(self) -> str:
        """`host:port`, with IPv6 hosts in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class PartitionEventTimestamps:
    """When an event first and last happened to a partition, as its broker saw it.

    Times are in nanoseconds since the epoch, 0 when the event has not
    happened since the broker started (the server keeps them in memory only).

    Attributes:
        first_timestamp: The first time.
        latest_timestamp: The latest time.
    """

    first_timestamp: int = 0
    latest_timestamp: int = 0


_NEVER = PartitionEventTimestamps()


@dataclass
class PartitionMetadata:
    """A stream partition as the cluster sees it.

    The event timestamps are lbwire's additions (Liftbridge's
    `PartitionEventTimestamps`, as go-liftbridge exposes them). Each broker
    keeps its own, in memory, for the partitions it holds: they start at 0
    when the broker starts, and only the leader records received messages.
    `get_partition_metadata` asks the leader; `get_metadata` reports what
    the broker that answered knows.

    Attributes:
        id: Partition number.
        leader: Broker id of the leader ("" while there is none).
        replicas: Broker ids of the replicas.
        isr: Broker ids of the in-sync replicas.
        high_watermark: Offset of the newest committed message (-1 if none).
        newest_offset: Offset of the newest message (-1 if none).
        paused: Whether the partition is paused.
        readonly: Whether the partition is read-only.
        messages_received_timestamps: When the leader received a message for
            the partition, first and latest.
        pause_timestamps: When the partition was paused or resumed, first and latest.
        readonly_timestamps: When the partition's read-only flag was set or
            cleared, first and latest.
    """

    id: int
    leader: str
    replicas: List[str]
    isr: List[str]
    high_watermark: int
    newest_offset: int
    paused: bool
    readonly: bool = False
    messages_received_timestamps: PartitionEventTimestamps = _NEVER
    pause_timestamps: PartitionEventTimestamps = _NEVER
    readonly_timestamps: PartitionEventTimestamps = _NEVER


@dataclass
class StreamMetadata:
    """A stream and its partitions.

    Attributes:
        name: Stream name.
        subject: NATS subject the stream is attached to.
        partitions: Partition number to its metadata.
        creation_timestamp: When the stream was created (ns since the epoch).
    """

    name: str
    subject: str
    partitions: Dict[int, PartitionMetadata]
    creation_timestamp: int = 0


@dataclass
class ConsumerGroupMetadata:
    """A consumer group as the cluster's metadata records it.

    The server keeps no member list in its API: a group's members are known
    only to its coordinator, and only through their polls.

    Attributes:
        group_id: The group's id.
        coordinator: Broker id of the group's coordinator, the broker its
            members poll for their assignments.
        epoch: The group's epoch: it changes when a member joins or leaves,
            when the coordinator changes and when one of its streams is deleted.
    """

    group_id: str
    coordinator: str
    epoch: int


@dataclass
class Metadata:
    """Cluster metadata.

    Attributes:
        brokers: The cluster's brokers.
        metadata: The streams asked for that exist (all when none was named).
        groups: lbwire addition: the consumer groups asked for that exist.
    """

    brokers: List[Broker]
    metadata: List[StreamMetadata]
    groups: List[ConsumerGroupMetadata] = field(default_factory=list)


class HealthStatus(IntEnum):
    """A broker's answer to a gRPC health check (`grpc.health.v1`).

    Attributes:
        UNKNOWN: The server has not set a status.
        SERVING: The service accepts calls.
        NOT_SERVING: The service is stopping (Liftbridge sets it when it
            stops on SIGINT, just before it closes every connection).
        SERVICE_UNKNOWN: Only in a watch: the server knows no such service
            (a check raises `ErrorNotFound` instead).
    """

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


V = TypeVar("V", default=bytes)
K = TypeVar("K", default=bytes)


@dataclass
class Message(Generic[V, K]):
    """A message read from a stream partition.

    `Message` (gufo-liftbridge's type) holds bytes; a subscription with a
    value deserializer giving `T` yields `Message[T]`, and one with a key
    deserializer giving `KT` too `Message[T, KT]` (see `lbwire.serde`).

    Attributes:
        value: The payload (decompressed when it was published compressed),
            as the value deserializer made it, if there is one.
        subject: NATS subject the message was received on.
        offset: Offset of the message in its partition.
        timestamp: When the broker received it (ns since the epoch).
        key: Message key, as the key deserializer made it, if there is one.
        partition: Partition number.
        headers: Message headers (without the compression header).
        stream: Stream name.
        reply_subject: NATS reply subject, if any.
        correlation_id: The publisher's correlation id, if any.
        decode_error: lbwire addition: why the value could not be decoded,
            for a message delivered raw by a subscription with
            `on_undecodable="raw"` (value as received, encoding header
            kept, no deserializer applied); None for every message decoded
            (or never encoded).
    """

    value: V
    subject: str
    offset: int
    timestamp: int
    key: K
    partition: int
    headers: Dict[str, bytes]
    stream: str = ""
    reply_subject: str = ""
    correlation_id: str = ""
    decode_error: Optional[str] = None

    @property
    def undecoded(self) -> bool:
        """Whether the message was delivered raw because it could not be decoded."""
        return self.decode_error is not None


@dataclass
class ConsumerGroupAssignment:
    """Partitions a consumer group's coordinator assigned to one member.

    Attributes:
        epoch: Group epoch the assignment belongs to.
        partitions: Stream name to the partition numbers assigned.
    """

    epoch: int
    partitions: Dict[str, List[int]] = field(default_factory=dict)


#: A partitioner picks the partition for a message: it is called with the
#: stream name, the key, the value and the stream's partition count.
Partitioner = Callable[[str, Optional[bytes], bytes, int], int]
