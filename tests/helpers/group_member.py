"""A consumer-group member in a process of its own, for tests that SIGKILL it.

Run as ``python group_member.py BROKER STREAM GROUP CONSUMER_ID BACKEND LOG
COMMIT_EVERY``. It reads the group's partitions of STREAM from the earliest
offset, commits explicitly with ``commit(offsets)`` after every COMMIT_EVERY
messages of a partition (no automatic checkpoints), and appends one JSON line
to LOG per event, written before it goes on (so a SIGKILL loses none that
happened): ``{"assigned": [[stream, partition], ...]}``, ``{"revoked": ...}``,
``{"processed": [partition, offset]}`` once a message is processed, and
``{"committed": [partition, next_offset]}`` once a commit returned.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any, List

import anyio

from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset, GroupPartition


def _write(log: IO[str], event: Any) -> None:
    log.write(json.dumps(event) + "\n")
    log.flush()


async def member(
    broker: str, stream: str, group: str, consumer_id: str, log: IO[str], commit_every: int
) -> None:
    async def on_assigned(partitions: List[GroupPartition]) -> None:
        _write(log, {"assigned": [list(p) for p in partitions]})

    async def on_revoked(partitions: List[GroupPartition]) -> None:
        _write(log, {"revoked": [list(p) for p in partitions]})

    counts: dict[int, int] = {}
    async with (
        LiftbridgeClient([broker]) as client,
        client.consumer(
            group,
            [stream],
            consumer_id=consumer_id,
            auto_offset=AutoOffset.EARLIEST,
            auto_checkpoint_interval=None,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
        ) as consumer,
    ):
        async for msg in consumer:
            _write(log, {"processed": [msg.partition, msg.offset]})
            counts[msg.partition] = counts.get(msg.partition, 0) + 1
            if counts[msg.partition] % commit_every == 0:
                await consumer.commit({msg.partition: msg.offset + 1})
                _write(log, {"committed": [msg.partition, msg.offset + 1]})


def main() -> None:
    broker, stream, group, consumer_id, backend, path, commit_every = sys.argv[1:8]
    with open(path, "a", encoding="utf-8") as log:
        anyio.run(
            member, broker, stream, group, consumer_id, log, int(commit_every), backend=backend
        )


if __name__ == "__main__":
    main()
