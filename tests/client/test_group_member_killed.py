"""A killed group member: one of three member processes is SIGKILLed mid-way.

The issue's criterion "A killed group member", on a real server with short
group timeouts (a member that stops polling is removed after 6 s): members
A and B run in the test, member C in a process of its own
(`helpers/group_member.py`), which commits every 7 messages and logs what it
processed and committed. C is killed after it processed every message of its
partition but the last two (uncommitted). Then:

- the survivors get `on_assigned` for C's partition, after the server's
  consumer timeout;
- every message is delivered (none lost);
- C's partition is delivered again from C's last commit: exactly C's
  uncommitted window is repeated;
- the survivors' own partitions had every message of the first batch
  committed before the kill, so a partition moved between them (the server
  rebalances every partition when a member goes) repeats only messages
  published after the kill, and only across members.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from helpers import HANG_GUARD, wait_until

from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset, GroupPartition
from lbwire.testing import LiftbridgeServer

# Short, so that the test is quick; not shorter, so that the survivors are
# never timed out themselves: with 2 s, a PyPy run at a load average of 13
# saw A and B removed right after C, and C's partition went to each in turn.
CONSUMER_TIMEOUT = 6.0
PARTITIONS = 3
FIRST, SECOND = 30, 30  # messages per partition before and after the kill
COMMIT_EVERY = 7  # C commits after offsets 6, 13, 20, 27: 28 and 29 stay uncommitted
MEMBER_SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "group_member.py"


@pytest.fixture(scope="module")
def group_server() -> Iterator[LiftbridgeServer]:
    timeout = f"{CONSUMER_TIMEOUT:g}s"
    with LiftbridgeServer(
        config_overrides={"groups.consumer.timeout": timeout, "groups.coordinator.timeout": timeout}
    ) as server:
        yield server


class _Member:
    """An in-process member's deliveries and rebalance callbacks, with their times."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.owned: set[GroupPartition] = set()
        self.assigned_at: dict[GroupPartition, float] = {}
        self.delivered: list[tuple[int, int]] = []
        self.reading = anyio.CancelScope()

    async def on_assigned(self, partitions: list[GroupPartition]) -> None:
        now = time.monotonic()
        for p in partitions:
            self.assigned_at[p] = now
        self.owned.update(partitions)

    async def on_revoked(self, partitions: list[GroupPartition]) -> None:
        self.owned.difference_update(partitions)


def _read_log(path: Path) -> list[dict[str, list]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    # A line cut by the kill is not an event.
    return [json.loads(line) for line in lines if line.endswith("}")]


def _owned_by_c(events: list[dict[str, list]]) -> set[tuple[str, int]]:
    owned: set[tuple[str, int]] = set()
    for event in events:
        if "assigned" in event:
            owned.update((s, p) for s, p in event["assigned"])
        if "revoked" in event:
            owned.difference_update((s, p) for s, p in event["revoked"])
    return owned


@pytest.mark.anyio
async def test_survivors_take_over_a_killed_members_partition_losing_nothing(
    group_server: LiftbridgeServer, stream_name: str, anyio_backend: str, tmp_path: Path
) -> None:
    group = "g-" + stream_name
    log = tmp_path / "c.jsonl"
    a, b = _Member("a"), _Member("b")
    async with LiftbridgeClient([group_server.broker]) as client:
        await client.create_stream(stream_name, partitions=PARTITIONS, wait_for_stream=True)
        await client.wait_for_cursors()

        published = [0] * PARTITIONS

        async def publish(count: int) -> None:
            for p in range(PARTITIONS):
                for _ in range(count):
                    value = f"{p}-{published[p]}".encode()
                    await client.publish(value, stream=stream_name, partition=p)
                    published[p] += 1

        async def run(member: _Member, started: anyio.Event) -> None:
            async with (
                LiftbridgeClient([group_server.broker]) as own,
                own.consumer(
                    group,
                    [stream_name],
                    consumer_id=member.name,
                    auto_offset=AutoOffset.EARLIEST,
                    auto_checkpoint_interval=0.2,
                    on_assigned=member.on_assigned,
                    on_revoked=member.on_revoked,
                ) as consumer,
            ):
                await consumer.wait_assigned()
                started.set()
                # Only the loop is cancelled at the end: the member then
                # leaves the group with its client still running.
                with member.reading:
                    async for msg in consumer:
                        member.delivered.append((msg.partition, msg.offset))

        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        c_process: Process | None = None
        try:
            async with anyio.create_task_group() as tg:
                for member in (a, b):
                    started = anyio.Event()
                    tg.start_soon(run, member, started)
                    with anyio.fail_after(HANG_GUARD):
                        await started.wait()
                c_process = await anyio.open_process(
                    [
                        sys.executable,
                        str(MEMBER_SCRIPT),
                        group_server.broker,
                        stream_name,
                        group,
                        "c",
                        anyio_backend,
                        str(log),
                        str(COMMIT_EVERY),
                    ],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=None,
                    stderr=None,
                )

                def one_each() -> bool:
                    c_owned = _owned_by_c(_read_log(log))
                    return (
                        len(a.owned) == len(b.owned) == len(c_owned) == 1
                        and len(a.owned | b.owned | c_owned) == PARTITIONS
                    )

                await wait_until(one_each, "one partition per member")
                ((_, c_partition),) = _owned_by_c(_read_log(log))
                c_key = GroupPartition(stream_name, c_partition)
                # Published once each member has its partition, so that C's
                # partition is C's from its first message.
                await publish(FIRST)

                def c_processed() -> list[int]:
                    return [
                        e["processed"][1]
                        for e in _read_log(log)
                        if "processed" in e and e["processed"][0] == c_partition
                    ]

                await wait_until(lambda: FIRST - 1 in c_processed(), "C processed its batch")
                # The survivors committed their whole first batch (their
                # automatic checkpoints), so only C has an uncommitted window.
                cursor_id = f"__group:{group}"
                for p in range(PARTITIONS):
                    if p != c_partition:
                        await wait_until(
                            lambda p=p: _async_eq(
                                client.cursor_store.load(stream_name, p, cursor_id), FIRST - 1
                            ),
                            f"partition {p} committed",
                        )
                c_process.send_signal(signal.SIGKILL)
                await c_process.wait()
                killed_at = time.monotonic()
                await publish(SECOND)

                def all_delivered() -> bool:
                    seen = set(a.delivered) | set(b.delivered)
                    seen.update((c_partition, o) for o in c_processed())
                    return seen >= {
                        (p, o) for p in range(PARTITIONS) for o in range(FIRST + SECOND)
                    }

                await wait_until(all_delivered, "every message delivered")
                for member in (a, b):
                    member.reading.cancel()
        finally:
            if c_process is not None and c_process.returncode is None:
                c_process.kill()
                with anyio.CancelScope(shield=True):
                    await c_process.wait()

    # The survivors were given C's partition, once the server timed C out.
    taken_over = [m.assigned_at[c_key] for m in (a, b) if c_key in m.assigned_at]
    assert len(taken_over) == 1
    assert taken_over[0] - killed_at >= CONSUMER_TIMEOUT / 2
    assert c_key in a.owned | b.owned

    # C's uncommitted window (after its last commit) and nothing else is repeated.
    events = _read_log(log)
    c_commits = [e["committed"][1] for e in events if "committed" in e]
    window = set(range(c_commits[-1], max(c_processed()) + 1))
    assert window == {FIRST - 2, FIRST - 1}
    survivors_on_c = [o for p, o in a.delivered + b.delivered if p == c_partition]
    assert sorted(survivors_on_c) == sorted(set(survivors_on_c)), "delivered twice after C"
    assert set(survivors_on_c) & set(c_processed()) == window
    # Between the survivors, a moved partition repeats messages of the
    # second batch only (the first was committed), and one member never
    # receives a message twice.
    for member in (a, b):
        assert len(member.delivered) == len(set(member.delivered)), member.name
    for p, o in set(a.delivered) & set(b.delivered):
        assert o >= FIRST, (p, o)


async def _async_eq(result: Awaitable[object], expected: object) -> bool:
    return await result == expected
