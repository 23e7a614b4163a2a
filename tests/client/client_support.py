"""Helpers shared by the client tests (imported as ``client_support``)."""

from __future__ import annotations

from typing import Any

import anyio
from helpers import HANG_GUARD, aclosing

from lbwire.client import LiftbridgeClient
from lbwire.types import Message, StartPosition, StopPosition

__all__ = ["HANG_GUARD", "collect", "partition_of", "publish_values", "read_all"]


async def read_all(
    client: LiftbridgeClient, stream: str, partition: int = 0, **kwargs: Any
) -> list[Message]:
    """Every message of a partition, oldest first (EARLIEST to STOP_LATEST).

    An empty partition gives an empty list.
    """
    kwargs.setdefault("start_position", StartPosition.EARLIEST)
    kwargs.setdefault("stop_position", StopPosition.STOP_LATEST)
    return await collect(client.subscribe(stream, partition=partition, **kwargs))


async def collect(subscription: Any, limit: int | None = None) -> list[Message]:
    """Messages of a subscription until it ends (or `limit` were read)."""
    out: list[Message] = []
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(subscription) as messages:
            async for message in messages:
                out.append(message)
                if limit is not None and len(out) >= limit:
                    break
    return out


async def publish_values(
    client: LiftbridgeClient, stream: str, values: list[bytes], partition: int = 0
) -> list[int]:
    """Publish with an ack each; return the offsets the acks name."""
    offsets = []
    for value in values:
        ack = await client.publish(value, stream=stream, partition=partition)
        assert ack is not None
        offsets.append(ack.offset)
    return offsets


def partition_of(ack: Any, subject: str) -> int:
    """The partition a publish went to, from its ack.

    The server publishes to partition N > 0 on the NATS subject `subject.N`
    and names that subject in the ack's `msgSubject` (`partitionSubject` is
    the stream's subject, the same for every partition).
    """
    assert ack is not None
    if ack.msgSubject == subject:
        return 0
    base, _, number = ack.msgSubject.rpartition(".")
    assert base == subject, ack.msgSubject
    return int(number)
