"""A member the coordinator lists but does not count as active leaves and joins again.

Liftbridge's coordinator (server/groups.go `GetAssignments`, v1.9.0 and the
newest) answers a member's assignment poll with Unknown "consumer not active
for server (no timer)" when it lists the member without a liveness timer.
The chaos soak (scripts/chaos_soak.py) meets it after node kills and
restarts. Members get no timer while their group is "recovered" on the
coordinator (`addMember`): during a restarted node's Raft log replay, and on
the newest server for good after a restart from a Raft snapshot (`Restore`
marks groups and partitions recovered, and `StartRecovered` runs only when a
replay finishes; v1.9.0 restores them as not recovered).

A lone newest server gets there for real once it took a Raft snapshot (2 to
4 minutes after its start at the earliest) and restarted, but its streams
are then never started either, so no member can read on there. So the
coordinator's answer is a fake one here: the member's client refuses its
polls as that coordinator does, mapped as the real refusal is, while
everything else (the joins, the leave, the subscriptions, the commits) goes
to a real server.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from helpers import HANG_GUARD, wait_until

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset, Consumer
from lbwire.error import ErrorMemberInactive, ErrorNotMember, from_grpc_error
from lbwire.grpc import GRPCError, Status
from lbwire.testing import LiftbridgeServer

pytestmark = pytest.mark.anyio

NO_TIMER = "consumer not active for server (no timer)"
REFUSALS = 2  # polls answered with the refusal in a row


def test_the_no_timer_refusal_is_an_inactive_member() -> None:
    error = from_grpc_error(GRPCError(Status.UNKNOWN, NO_TIMER))
    assert isinstance(error, ErrorMemberInactive)
    assert isinstance(error, ErrorNotMember)
    assert not error.transient


class _InactiveOnce:
    """The real client, whose member polls are refused as "no timer" once armed.

    Records the group calls the member makes, in order.
    """

    def __init__(self, client: LiftbridgeClient) -> None:
        self._client = client
        self.calls: list[tuple[str, str]] = []
        self.refusals_left = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def join_consumer_group(
        self, group_id: str, consumer_id: str, streams: list[str]
    ) -> wire.JoinConsumerGroupResponse:
        self.calls.append(("join", consumer_id))
        return await self._client.join_consumer_group(group_id, consumer_id, streams)

    async def leave_consumer_group(self, group_id: str, consumer_id: str) -> None:
        self.calls.append(("leave", consumer_id))
        await self._client.leave_consumer_group(group_id, consumer_id)

    async def fetch_consumer_group_assignments(
        self, group_id: str, consumer_id: str, epoch: int, *, coordinator: str
    ) -> wire.FetchConsumerGroupAssignmentsResponse:
        if self.refusals_left:
            self.refusals_left -= 1
            self.calls.append(("refused", consumer_id))
            raise from_grpc_error(GRPCError(Status.UNKNOWN, NO_TIMER))
        self.calls.append(("fetch", consumer_id))
        return await self._client.fetch_consumer_group_assignments(
            group_id, consumer_id, epoch, coordinator=coordinator
        )


async def test_an_inactive_member_leaves_rejoins_with_its_id_and_reads_on(
    group_server: LiftbridgeServer, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lbwire.consumer")
    group = f"{stream_name}-g"
    async with LiftbridgeClient([group_server.broker]) as client:
        await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
        await client.wait_for_cursors()
        member = _InactiveOnce(client)
        consumer = Consumer(
            member,  # type: ignore[arg-type]
            group,
            [stream_name],
            auto_offset=AutoOffset.EARLIEST,
            auto_checkpoint_interval=None,
        )
        seen: list[tuple[int, int]] = []
        with anyio.fail_after(HANG_GUARD):
            async with consumer:
                await consumer.wait_assigned()
                for p in (0, 1):
                    await client.publish(b"before", stream=stream_name, partition=p)
                async for msg in consumer:
                    seen.append((msg.partition, msg.offset))
                    if len(seen) == 2:
                        break
                await consumer.commit()
                rejoined_at = len(member.calls)
                member.refusals_left = REFUSALS
                await wait_until(
                    lambda: (
                        ("join", consumer.consumer_id) in member.calls[rejoined_at:]
                        and member.calls[-1][0] == "fetch"
                    ),
                    "the member rejoined and polled again",
                )
                for p in (0, 1):
                    await client.publish(b"after", stream=stream_name, partition=p)
                async for msg in consumer:
                    seen.append((msg.partition, msg.offset))
                    if {(0, 1), (1, 1)} <= set(seen):
                        break
                assert consumer.assignments == {stream_name: [0, 1]}
    after = [name for name, _ in member.calls[rejoined_at:]]
    # Each refused poll: leave, then join again with the same id.
    assert after[: 3 * REFUSALS] == ["refused", "leave", "join"] * REFUSALS
    assert {cid for _, cid in member.calls} == {consumer.consumer_id}
    # What was committed before the rejoin is not delivered again.
    assert sorted(seen) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    rejoins = [r for r in caplog.records if "rejoins group" in r.getMessage()]
    assert len(rejoins) == REFUSALS
