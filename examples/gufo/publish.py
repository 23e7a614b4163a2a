"""Publish ten small messages, one call per message, to partition 0.

Written against the gufo-liftbridge API; lbwire runs it with only the import
lines changed (see README.md).

    LIFTBRIDGE_BROKERS=127.0.0.1:9292 LIFTBRIDGE_STREAM=test python publish.py
"""

import asyncio
import os

from gufo.liftbridge.client import LiftbridgeClient

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "test")
COUNT = 10


async def publish_messages() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        for n in range(COUNT):
            payload = f"msg{n}".encode()
            await client.publish(payload, stream=STREAM, partition=0)
            print(f"sent {payload!r}")


if __name__ == "__main__":
    asyncio.run(publish_messages())
