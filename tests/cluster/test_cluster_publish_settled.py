"""Settled publishing through a partition leader's death: each stored once, or a clear error.

A real three-node cluster, a stream with optimistic concurrency control and
three replicas. Settled publishes (AckPolicy.ALL) run while the partition
leader is SIGKILLed; the log, read from the earliest offset on the new
leader, must hold every acked message exactly once at its acked offset, no
message twice, and none that ended with `ErrorNotStored`.
"""

from __future__ import annotations

from typing import Dict, List

import anyio
import pytest
from cluster_support import HANG_GUARD, partition_leader
from helpers import wait_until
from helpers.settled import Resends

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorNotStored, ErrorUnsettled
from lbwire.retry import RetryPolicy
from lbwire.testing import LiftbridgeCluster
from lbwire.types import AckPolicy, StartPosition, StopPosition

pytestmark = [pytest.mark.anyio, pytest.mark.server]

#: Settling outlasts the failover.
PATIENT = RetryPolicy(attempts=200, initial_backoff=0.2, max_backoff=1.0, max_time=30.0)


async def test_settled_publishes_across_a_leader_failover_are_stored_exactly_once(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    acked: Dict[str, int] = {}
    not_stored: List[str] = []
    unsettled: List[ErrorUnsettled] = []
    async with LiftbridgeClient(fresh_cluster.brokers, retry_policy=PATIENT) as admin:
        await admin.create_stream(
            stream_name,
            replication_factor=3,
            optimistic_concurrency_control=True,
            wait_for_stream=True,
        )
        leader = await partition_leader(admin, fresh_cluster, stream_name)
        # Connected to the leader alone at first, so the kill breaks the publish in flight.
        async with LiftbridgeClient([leader.broker], retry_policy=PATIENT) as client:
            await client.get_metadata()
            resends = Resends()
            client.observer = resends
            acked_after_kill: List[str] = []
            killed: List[bool] = []

            async def publish_until_done() -> None:
                while len(acked_after_kill) < 5:
                    value = f"m{len(acked) + len(not_stored) + len(unsettled)}".encode()
                    try:
                        ack = await client.publish(
                            value,
                            stream=stream_name,
                            ack_policy=AckPolicy.ALL,
                            ack_timeout=2.0,
                            settle=True,
                        )
                    except ErrorNotStored as exc:
                        not_stored.append(exc.correlation_id)
                        continue
                    except ErrorUnsettled as exc:
                        unsettled.append(exc)
                        continue
                    assert ack is not None
                    acked[ack.correlationId] = ack.offset
                    if killed:
                        acked_after_kill.append(ack.correlationId)

            with anyio.fail_after(HANG_GUARD * 2):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(publish_until_done)
                    # Killed with a publish in flight: publishing never pauses.
                    await wait_until(lambda: len(acked) >= 5, "5 acks")
                    await leader.akill()
                    killed.append(True)

        with anyio.fail_after(HANG_GUARD):
            stored: Dict[int, str] = {}
            nudges = 0
            async for message in admin.subscribe(
                stream_name,
                start_position=StartPosition.EARLIEST,
                stop_position=StopPosition.STOP_LATEST,
            ):
                if "lbwire-nudge" in message.headers:
                    # A settler's nudge: a new leader held the fence past its
                    # high watermark (docs/cookbook/publishing.md).
                    assert message.headers["lbwire-nudge"] == b"nudge", message
                    nudges += 1
                    continue
                stored[message.offset] = message.headers.get("lbwire-settle-id", b"?").decode()

    ids = list(stored.values())
    assert "?" not in ids, "a message stored without its settle id"
    assert len(ids) == len(set(ids)), "a message stored twice"
    for correlation_id, offset in acked.items():
        assert stored[offset] == correlation_id
    assert not set(not_stored) & set(ids)
    for exc in unsettled:
        # At most once, and only where it was fenced.
        assert (
            exc.correlation_id not in ids
            or stored.get(-1 if exc.offset is None else exc.offset) == exc.correlation_id
        )
    late = sum(e.correlation_id in ids for e in unsettled)
    print(
        f"resends {len(resends.errors)}; acked {len(acked)}, not stored {len(not_stored)}, "
        f"unsettled {len(unsettled)} (stored after all: {late}); log {len(ids)}, "
        f"nudges {nudges}"
    )
