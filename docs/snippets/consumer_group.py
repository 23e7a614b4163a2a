"""Two members of one consumer group share a stream's partitions."""

import os

import anyio
from anyio.abc import ObjectSendStream, TaskStatus

from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset, Consumer

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "orders")
COUNT = 20


async def member(
    client: LiftbridgeClient,
    name: str,
    report: ObjectSendStream[str],
    *,
    task_status: TaskStatus[Consumer] = anyio.TASK_STATUS_IGNORED,
) -> None:
    async with client.consumer("billing", [STREAM], auto_offset=AutoOffset.EARLIEST) as consumer:
        await consumer.wait_assigned()  # the coordinator has answered this member
        task_status.started(consumer)
        async for msg in consumer:
            # A message counts as processed when the loop asks for the next one;
            # positions are committed every 5 s, on checkpoint(), when a
            # partition moves to another member, and when the block exits.
            await report.send(f"member {name}: partition {msg.partition}, offset {msg.offset}")


async def main() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        await client.create_stream(STREAM, partitions=2, wait_for_stream=True)
        send, receive = anyio.create_memory_object_stream[str]()
        async with anyio.create_task_group() as members:
            a = await members.start(member, client, "a", send)
            b = await members.start(member, client, "b", send)
            # The second join moves a partition to b (the members learn it
            # when they next poll their coordinator): wait until each has one.
            while not (a.assignments.get(STREAM) and b.assignments.get(STREAM)):  # noqa: ASYNC110
                await anyio.sleep(0.1)
            for i in range(COUNT):
                await client.publish(b"order %d" % i, stream=STREAM, partition=i % 2)
            for _ in range(COUNT):
                print(await receive.receive())
            members.cancel_scope.cancel()  # each member commits and leaves the group


if __name__ == "__main__":
    anyio.run(main)  # or anyio.run(main, backend="trio")
