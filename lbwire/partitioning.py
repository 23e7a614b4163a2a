"""Choosing partitions: for published messages and for cursors.

Both hash with CRC-32 (IEEE), exactly as go-liftbridge does, so that the same
key lands on the same partition whether it is published from Go or Python,
and cursors are found where Go clients stored them.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Dict, Iterator, Optional

__all__ = ["KeyPartitioner", "RoundRobinPartitioner", "cursor_key", "cursor_partition"]


class KeyPartitioner:
    """Maps a message to `crc32(key) % partitions`; messages without a key go to 0."""

    def __call__(self, stream: str, key: Optional[bytes], value: bytes, partitions: int) -> int:
        """Return the partition for a message with `key`."""
        if not key or partitions <= 1:
            return 0
        return zlib.crc32(key) % partitions


class RoundRobinPartitioner:
    """Spreads messages over the partitions in turn, one counter per stream."""

    def __init__(self) -> None:
        self._counters: Dict[str, Iterator[int]] = {}

    def __call__(self, stream: str, key: Optional[bytes], value: bytes, partitions: int) -> int:
        """Return the next partition of `stream` in turn."""
        if partitions <= 1:
            return 0
        counter = self._counters.get(stream)
        if counter is None:
            counter = self._counters[stream] = itertools.count()
        return next(counter) % partitions


def cursor_key(cursor_id: str, stream: str, partition: int) -> bytes:
    """The key a cursor is stored under in the `__cursors` stream."""
    return f"{cursor_id},{stream},{partition}".encode()


def cursor_partition(cursor_id: str, stream: str, partition: int, partitions: int) -> int:
    """The `__cursors` partition that stores a cursor (server's own rule)."""
    if partitions <= 1:
        return 0
    return zlib.crc32(cursor_key(cursor_id, stream, partition)) % partitions
