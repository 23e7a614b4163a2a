"""Publishing through a partition leader's failure: acked means stored, else a clear error."""

from __future__ import annotations

import anyio
import pytest
from cluster_support import (
    HANG_GUARD,
    Publisher,
    Subscriber,
    partition_leader,
)

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorAckTimeout, ErrorUnavailable
from lbwire.testing import LiftbridgeCluster
from lbwire.types import StartPosition, StopPosition

pytestmark = [pytest.mark.anyio, pytest.mark.server]

PUBLISHERS = 3
ACK_TIMEOUT = 3.0
#: A publish may first find its broker dead and refresh the metadata, which a
#: broker answers only after asking every member (3 s with one down), before
#: it waits for its ack.
PUBLISH_BOUND = ACK_TIMEOUT + 3.0 + 1.5


async def test_publishes_across_a_leader_failover_are_acked_and_stored_or_fail_clearly(
    fresh_cluster: LiftbridgeCluster, stream_name: str
) -> None:
    async with LiftbridgeClient(fresh_cluster.brokers) as admin:
        await admin.create_stream(stream_name, replication_factor=3, wait_for_stream=True)
        leader = await partition_leader(admin, fresh_cluster, stream_name)
        # The publishing client's only connection is to the leader, so the
        # kill breaks publishes in flight.
        async with LiftbridgeClient([leader.broker]) as client:
            await client.get_metadata()
            publishers = [
                Publisher(client, stream_name, ack_timeout=ACK_TIMEOUT, label=f"publisher{i}")
                for i in range(PUBLISHERS)
            ]
            with anyio.fail_after(HANG_GUARD):
                async with anyio.create_task_group() as tg:
                    for publisher in publishers:
                        tg.start_soon(publisher.publish_forever)
                    for publisher in publishers:
                        await publisher.wait_for_acks_started_after(0.0, 5)
                    await leader.akill()
                    killed = anyio.current_time()
                    for publisher in publishers:
                        await publisher.wait_for_acks_started_after(killed, 5)
                    tg.cancel_scope.cancel()

        with anyio.fail_after(HANG_GUARD):
            log = Subscriber()
            await log.consume(
                admin.subscribe(
                    stream_name,
                    start_position=StartPosition.EARLIEST,
                    stop_position=StopPosition.STOP_LATEST,
                )
            )

    publications = [p for publisher in publishers for p in publisher.publications]
    for publication in publications:
        assert publication.latency < PUBLISH_BOUND, publication
        if publication.error is not None:
            assert isinstance(publication.error, (ErrorAckTimeout, ErrorUnavailable))
    stored = {m.offset: m.value for m in log.messages}
    for publisher in publishers:
        for offset, value in publisher.acked.items():
            assert stored[offset] == value
    twice = {v for v in stored.values() if list(stored.values()).count(v) > 1}
    assert not twice, [p for p in publications if p.value in twice]

    during = [p for p in publications if p.started + p.latency > killed]
    failed = [p for p in during if p.error is not None]
    acked = [p for p in during if p.error is None]
    print(
        f"leader {leader.server_id} killed: {len(failed)} of {len(during)} publishes failed "
        f"({', '.join(sorted({type(p.error).__name__ for p in failed}))}) after "
        f"{', '.join(f'{p.latency:.2f}' for p in failed)} s; slowest acked "
        f"{max(p.latency for p in acked):.2f} s; first ack of a publish started after "
        f"the kill {min(p.started + p.latency for p in acked if p.started > killed) - killed:.2f} s"
    )
