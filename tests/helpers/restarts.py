"""Publishing to a server that was just restarted on its data.

Import as ``from helpers.restarts import publish_after_restart``.

A restarted Liftbridge first reports its streams missing, then, until its
Raft log replay has finished, knows a partition it has not started: it takes
a publish for it, hands it to NATS, where nothing subscribes yet, and the ack
never comes. That window is the server's (README, "Server behaviour"); tests
whose subject is something else wait until the partition is served, and
resend a publish only when the partition shows nothing was stored.
"""

from __future__ import annotations

from typing import Any

from helpers import wait_until
from lbwire.error import ErrorAckTimeout, ErrorNotFound, ErrorNotLeader, ErrorUnavailable


async def publish_after_restart(
    client: Any, stream: str, value: bytes, partition: int = 0, **options: Any
) -> int:
    """Publish `value` with an ack once the restarted server serves the partition; its offset."""
    offsets: list[int] = []

    async def published() -> bool:
        try:
            # Answered only by a leader that has started the partition.
            before = (await client.get_partition_metadata(stream, partition)).newest_offset
            ack = await client.publish(value, stream=stream, partition=partition, **options)
        except (ErrorNotFound, ErrorNotLeader, ErrorUnavailable):
            return False
        except ErrorAckTimeout:
            after = (await client.get_partition_metadata(stream, partition)).newest_offset
            assert after == before, f"{value!r} may be stored at offset {after}: not resent"
            return False
        assert ack is not None
        offsets.append(ack.offset)
        return True

    await wait_until(published, f"the restarted server takes a publish to {stream}")
    return offsets[0]
