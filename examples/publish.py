"""Publish messages: one at a time with acks, then pipelined.

LIFTBRIDGE_BROKERS=127.0.0.1:9292 python examples/publish.py test 10
"""

import asyncio
import os
import sys

from lbwire.client import AckPolicy, LiftbridgeClient

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")


async def main(stream: str, count: int) -> None:
    async with LiftbridgeClient(BROKERS) as client:
        # Sequential: each call waits for the leader's ack and returns it.
        ack = await client.publish(b"hello", stream=stream, ack_policy=AckPolicy.LEADER)
        assert ack is not None
        print(f"'hello' stored at offset {ack.offset}")
        # Pipelined: many messages in flight on one PublishAsync stream.
        requests = [
            client.get_publish_request(f"message {i}".encode(), stream=stream) for i in range(count)
        ]
        async for response in client.publish_bulk(requests):
            print(f"ack: offset {response.ack.offset}")


if __name__ == "__main__":
    stream = sys.argv[1] if len(sys.argv) > 1 else "test"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    asyncio.run(main(stream, count))
