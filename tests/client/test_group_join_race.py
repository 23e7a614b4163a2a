"""Members joining a new consumer group at the same moment all get in.

Liftbridge v1.9.0 creates a group on the first join: two joins that both
find no group both propose its creation through Raft, and the later one is
refused with FailedPrecondition "consumer group already exists". The group
now exists, so joining again joins it: the client retries such a join.
Against the real server; each test repeats the race on fresh groups.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from helpers import HANG_GUARD

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.error import from_grpc_error
from lbwire.grpc import GRPCError, Status
from lbwire.testing import LiftbridgeServer

ROUNDS = 10
MEMBERS = 3


@pytest.fixture
async def clients(liftbridge_server: LiftbridgeServer) -> AsyncIterator[list[LiftbridgeClient]]:
    """One client per member, as separate processes would have."""
    opened = [LiftbridgeClient([liftbridge_server.broker]) for _ in range(MEMBERS)]
    async with opened[0], opened[1], opened[2]:
        await opened[0].wait_for_cursors(timeout=HANG_GUARD)
        yield opened


async def _stream(client: LiftbridgeClient, name: str) -> str:
    await client.create_stream(name, partitions=MEMBERS, wait_for_stream=True)
    return name


def test_already_exists_refusal_of_a_join_is_transient() -> None:
    from lbwire.error import ErrorGroupExists

    error = from_grpc_error(GRPCError(Status.FAILED_PRECONDITION, "consumer group already exists"))
    assert isinstance(error, ErrorGroupExists)
    assert error.transient


async def _join_together(
    clients: list[LiftbridgeClient], group: str, stream: str
) -> dict[str, wire.JoinConsumerGroupResponse]:
    """Every client joins `group` as its own member, all at once; their answers."""
    answers: dict[str, wire.JoinConsumerGroupResponse] = {}

    async def join(client: LiftbridgeClient, member: str) -> None:
        answers[member] = await client.join_consumer_group(group, member, [stream])

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            for i, client in enumerate(clients):
                tg.start_soon(join, client, f"m{i}")
    return answers


async def _consume_together(clients: list[LiftbridgeClient], group: str, stream: str) -> set[str]:
    """Every client enters a consumer of `group` at once; the ids of those assigned."""
    assigned: set[str] = set()
    all_in = anyio.Event()

    async def member(client: LiftbridgeClient) -> None:
        async with client.consumer(group, [stream]) as consumer:
            await consumer.wait_assigned()
            assigned.add(consumer.consumer_id)
            if len(assigned) == len(clients):
                all_in.set()
            await all_in.wait()

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(member, client)
    return assigned


@pytest.mark.anyio
async def test_concurrent_joins_of_a_new_group_all_succeed(
    clients: list[LiftbridgeClient], stream_name: str
) -> None:
    stream = await _stream(clients[0], stream_name)
    for round_ in range(ROUNDS):
        group = f"{stream_name}-join-{round_}"
        answers = await _join_together(clients, group, stream)
        assert len(answers) == MEMBERS
        assert len({a.coordinator for a in answers.values()}) == 1
        for member in answers:
            await clients[0].leave_consumer_group(group, member)


@pytest.mark.anyio
async def test_consumers_entering_a_new_group_together_all_get_assignments(
    clients: list[LiftbridgeClient], stream_name: str
) -> None:
    stream = await _stream(clients[0], stream_name)
    for round_ in range(ROUNDS):
        assigned = await _consume_together(clients, f"{stream_name}-consumers-{round_}", stream)
        assert len(assigned) == MEMBERS
