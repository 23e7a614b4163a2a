"""The client's cached view of the cluster: brokers, streams, partition leaders.

Filled from FetchMetadata responses and refreshed on demand, after routing
errors, as Liftbridge's client-implementation guide prescribes.
"""

from __future__ import annotations

import random
from typing import Dict, Iterable, List, Optional

from . import wire
from ._address import Address
from .types import (
    Broker,
    ConsumerGroupMetadata,
    Metadata,
    PartitionEventTimestamps,
    PartitionMetadata,
    StreamMetadata,
)

__all__ = ["MetadataCache", "to_public_group", "to_public_partition"]


def _timestamps(t: Optional[wire.PartitionEventTimestamps]) -> PartitionEventTimestamps:
    if t is None:
        return PartitionEventTimestamps()
    return PartitionEventTimestamps(t.firstTimestamp, t.latestTimestamp)


def to_public_partition(p: wire.PartitionMetadata) -> PartitionMetadata:
    """Convert a wire PartitionMetadata to the public (gufo-compatible) type."""
    return PartitionMetadata(
        id=p.id,
        leader=p.leader,
        replicas=list(p.replicas),
        isr=list(p.isr),
        high_watermark=p.highWatermark,
        newest_offset=p.newestOffset,
        paused=p.paused,
        readonly=p.readonly,
        messages_received_timestamps=_timestamps(p.messagesReceivedTimestamps),
        pause_timestamps=_timestamps(p.pauseTimestamps),
        readonly_timestamps=_timestamps(p.readonlyTimestamps),
    )


def to_public_group(g: wire.ConsumerGroupMetadata) -> ConsumerGroupMetadata:
    """Convert a wire ConsumerGroupMetadata (of a group that exists) to the public type."""
    return ConsumerGroupMetadata(group_id=g.groupId, coordinator=g.coordinator, epoch=g.epoch)


class MetadataCache:
    """Brokers by id, and each known stream's partitions with leader and ISR."""

    def __init__(self) -> None:
        self.brokers: Dict[str, Address] = {}
        self.streams: Dict[str, wire.StreamMetadata] = {}

    def update(self, response: wire.FetchMetadataResponse, requested: Iterable[str] = ()) -> None:
        """Take in a FetchMetadata response.

        Args:
            response: The server's answer.
            requested: The streams that were asked for; empty means all, in
                which case streams missing from the answer are forgotten.
        """
        requested = list(requested)
        if not requested:
            self.streams = {}
        for name in requested:
            self.streams.pop(name, None)
        for stream in response.streamMetadata:
            if stream.error == wire.StreamMetadataError.OK:
                self.streams[stream.name] = stream
        self.update_brokers(response.brokers)

    def update_brokers(self, listed: Iterable[wire.Broker]) -> None:
        """Take in the brokers a FetchMetadata response lists.

        An answer can leave out brokers that partitions still name: v1.9.0
        lists only the members that answered its survey, and keeps that list
        for metadata.cache.max.age (2 min), so a broker that was down stays
        missing after its restart. The addresses known from before are kept.
        """
        brokers = {b.id: (b.host, b.port) for b in listed}
        for stream in self.streams.values():
            for p in stream.partitions.values():
                for broker_id in (p.leader, *p.isr):
                    if broker_id not in brokers and broker_id in self.brokers:
                        brokers[broker_id] = self.brokers[broker_id]
        self.brokers = brokers

    def forget(self, stream: str) -> None:
        """Drop what is known of `stream` (after it was deleted or moved)."""
        self.streams.pop(stream, None)

    def partition(self, stream: str, partition: int) -> Optional[wire.PartitionMetadata]:
        """The cached metadata of one partition, if known."""
        meta = self.streams.get(stream)
        if meta is None:
            return None
        return meta.partitions.get(partition)

    def partition_count(self, stream: str) -> Optional[int]:
        """Number of partitions of `stream`, if known."""
        meta = self.streams.get(stream)
        return None if meta is None else len(meta.partitions)

    def leader(self, stream: str, partition: int) -> Optional[Address]:
        """Address of the partition's leader, if the partition and leader are known."""
        p = self.partition(stream, partition)
        if p is None or not p.leader:
            return None
        return self.brokers.get(p.leader)

    def random_isr(self, stream: str, partition: int) -> Optional[Address]:
        """Address of a random in-sync replica of the partition, if known."""
        p = self.partition(stream, partition)
        if p is None:
            return None
        choices = [self.brokers[b] for b in p.isr if b in self.brokers]
        return random.choice(choices) if choices else None

    def addresses(self) -> List[Address]:
        """Addresses of all known brokers."""
        return list(self.brokers.values())

    def to_public(self, response: wire.FetchMetadataResponse) -> Metadata:
        """Render a FetchMetadata response in the public (gufo-compatible) types."""
        return Metadata(
            brokers=[
                Broker(
                    id=b.id,
                    host=b.host,
                    port=b.port,
                    partition_count=b.partitionCount,
                    leader_count=b.leaderCount,
                )
                for b in response.brokers
            ],
            metadata=[
                StreamMetadata(
                    name=s.name,
                    subject=s.subject,
                    partitions={
                        pid: to_public_partition(p) for pid, p in sorted(s.partitions.items())
                    },
                    creation_timestamp=s.creationTimestamp,
                )
                for s in response.streamMetadata
                if s.error == wire.StreamMetadataError.OK
            ],
            groups=[
                to_public_group(g)
                for g in response.groupMetadata
                if g.error == wire.ConsumerGroupMetadataError.OK
            ],
        )
