"""A killed reader: SIGKILLed mid-way through a 16-partition stream, then restarted.

Every message is processed at least once, none is skipped, none is repeated
beyond what was processed after the last commit, and the cursors end at the
high watermarks (lag 0).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from helpers import HANG_GUARD

from lbwire.client import LiftbridgeClient

pytestmark = pytest.mark.anyio

PARTITIONS = 16
PER_PARTITION = 60
COMMIT_EVERY = 50
STALL_AFTER = 425  # not a multiple of COMMIT_EVERY: some processed messages are uncommitted
PROGRAM = Path(__file__).with_name("reader_program.py")


async def run_program(
    broker: str, stream: str, backend: str, stall_after: int
) -> list[tuple[int, int]]:
    """Run the reader program; with `stall_after`, SIGKILL it once it stalls."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(PROGRAM), broker, stream, "killed", backend]
    args += [str(COMMIT_EVERY), str(stall_after)]
    seen: list[tuple[int, int]] = []
    async with await anyio.open_process(args, env=env) as process:
        assert process.stdout is not None
        buffered = ""
        with anyio.fail_after(HANG_GUARD * 2):
            async for chunk in TextReceiveStream(process.stdout):
                buffered += chunk
                *lines, buffered = buffered.split("\n")
                for line in lines:
                    if line in ("stalled", "done"):
                        if line == "stalled":
                            process.send_signal(signal.SIGKILL)
                        continue
                    partition, offset = line.split()
                    seen.append((int(partition), int(offset)))
            await process.wait()
    if stall_after:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 0
    return seen


async def test_a_killed_reader_resumes_without_skipping(
    client: LiftbridgeClient, stream_name: str, anyio_backend: str
) -> None:
    await client.create_stream(stream_name, partitions=PARTITIONS, wait_for_stream=True)
    async with anyio.create_task_group() as tg:
        for partition in range(PARTITIONS):

            async def publish(partition: int = partition) -> None:
                for i in range(PER_PARTITION):
                    await client.publish(
                        f"{partition}-{i}".encode(), stream=stream_name, partition=partition
                    )

            tg.start_soon(publish)
    broker = client.broker_seeds[0]

    first = await run_program(broker, stream_name, anyio_backend, STALL_AFTER)
    second = await run_program(broker, stream_name, anyio_backend, 0)

    assert len(first) == STALL_AFTER
    everything = {(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)}
    assert set(first) | set(second) == everything  # none skipped
    for run in (first, second):
        assert len(set(run)) == len(run)  # no repeat within a run
        for partition in range(PARTITIONS):
            offsets = [o for p, o in run if p == partition]
            assert offsets == sorted(offsets)  # order kept per partition
    # Read again: exactly what was handed out after the last commit (the
    # message in hand when killed included: it was not processed yet).
    committed_count = STALL_AFTER - STALL_AFTER % COMMIT_EVERY
    assert set(first) & set(second) == set(first[committed_count:])

    async with client.reader(stream_name, cursor_id="killed", auto_commit=False) as reader:
        high = await reader.highwater()
        assert high == {p: PER_PARTITION - 1 for p in range(PARTITIONS)}
        assert reader.committed() == {p: PER_PARTITION for p in range(PARTITIONS)}
        assert await reader.lag() == {p: 0 for p in range(PARTITIONS)}
