"""Read every partition of a stream, each from its own cursor, in batches."""

import os

import anyio

from lbwire.client import LiftbridgeClient

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "orders")
PARTITIONS = 4


async def main() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        await client.create_stream(STREAM, partitions=PARTITIONS, wait_for_stream=True)
        for i in range(100):
            await client.publish(b"order %d" % i, stream=STREAM, partition=i % PARTITIONS)

        # One task per partition; each resumes from its cursor "billing" (or
        # starts at the oldest message when it has none).
        async with client.reader(STREAM, cursor_id="billing", commit_every=50) as reader:
            seen = 0
            async for batch in reader.batches(max_count=20, max_wait=0.05):
                # A batch merges partitions, in order within each. Its messages
                # count as processed when the loop asks for the next batch;
                # they are committed every 50 messages, every 5 s and on exit.
                seen += len(batch)
                if seen >= 100:
                    break
            print(f"read {seen} messages from partitions {reader.partitions}")
        async with client.reader(STREAM, cursor_id="billing") as reader:
            print(f"committed: {reader.committed()}, lag: {await reader.lag()}")


if __name__ == "__main__":
    anyio.run(main)  # or anyio.run(main, backend="trio")
