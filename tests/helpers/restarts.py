"""Publishing to a server that was just restarted on its data.

Import as ``from helpers.restarts import publish_after_restart, withheld_after_restart``.

A restarted Liftbridge first reports its streams missing, then, until its
Raft log replay has finished, knows a partition it has not started: it takes
a publish for it, hands it to NATS, where nothing subscribes yet, and the ack
never comes. That window is the server's (README, "Server behaviour"); tests
whose subject is something else wait until the partition is served, and
resend a publish only when the partition shows nothing was stored.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, List

import pytest

from helpers import wait_until
from lbwire.error import ErrorAckTimeout, ErrorNotFound, ErrorNotLeader, ErrorUnavailable
from lbwire.testing import LiftbridgeServer


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


async def withheld_after_restart(
    server: LiftbridgeServer, client: Any, stream: str, publish: Callable[[], Awaitable[int]]
) -> int:
    """SIGKILL and restart `server` until it withholds the record `publish` stored; its offset.

    SIGKILL leaves the high watermark the server checkpoints (every few
    seconds) behind the log, so the restarted server holds the newest
    record past it and delivers nothing past it until a message is
    appended. A checkpoint may fall between the publish and the kill: then
    `publish` (which returns the offset it stored at) runs again, up to
    three times. `client` reads partition 0's metadata.
    """
    infos: List[Any] = []

    async def served() -> bool:
        try:
            infos.append(await client.get_partition_metadata(stream, 0))
        except ErrorNotFound:
            return False
        return True

    for _ in range(3):
        offset = await publish()
        server.kill()
        await server.astart()
        await wait_until(served, "the restarted server serves the partition")
        if infos[-1].high_watermark < offset == infos[-1].newest_offset:
            return offset
    pytest.fail(f"the restarted server withheld nothing: {infos[-1]}")
