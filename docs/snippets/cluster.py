"""A real three-node Liftbridge cluster on loopback, and a leader failover.

Needs the Liftbridge binary (built with Go on first use, then cached).
"""

import anyio

from lbwire.client import AckPolicy, LiftbridgeClient, StartPosition, StopPosition
from lbwire.testing import LiftbridgeCluster

# Server settings that notice a dead partition leader within seconds
# (Liftbridge v1.9.0's defaults take about 20 s).
FAST_FAILOVER = {
    "clustering.replica.max.idle.wait": "1500ms",
    "clustering.replica.fetch.timeout": "1s",
    "clustering.replica.max.leader.timeout": "4s",
    "clustering.replica.max.lag.time": "3s",
}


async def main() -> None:
    # A new replicated partition commits nothing for several seconds after its
    # creation: the client's ack_timeout gives the first acks that time.
    async with (
        LiftbridgeCluster(size=3, config_overrides=FAST_FAILOVER) as cluster,
        LiftbridgeClient(cluster.brokers, ack_timeout=30) as client,
    ):
        await client.create_stream("replicated", replication_factor=3, wait_for_stream=True)
        # AckPolicy.ALL: acked once every in-sync replica has the message.
        for i in range(3):
            await client.publish(b"kept %d" % i, stream="replicated", ack_policy=AckPolicy.ALL)

        metadata = await client.get_metadata("replicated")
        partition = metadata.metadata[0].partitions[0]
        print(f"leader {partition.leader}, in-sync replicas {sorted(partition.isr)}")

        # Kill the leader (SIGKILL); the client finds the new one by itself.
        leader = next(node for node in cluster.nodes if node.server_id == partition.leader)
        await leader.akill()
        with anyio.fail_after(120):
            async for msg in client.subscribe(
                "replicated",
                start_position=StartPosition.EARLIEST,
                stop_position=StopPosition.STOP_LATEST,
            ):
                print(f"after the failover: {msg.offset}: {msg.value!r}")


if __name__ == "__main__":
    anyio.run(main)
