"""Create a stream with one partition and wait until it can be used.

Written against the gufo-liftbridge API; lbwire runs it with only the import
lines changed (see README.md).

    LIFTBRIDGE_BROKERS=127.0.0.1:9292 LIFTBRIDGE_STREAM=test python create.py
"""

import asyncio
import os

from gufo.liftbridge.client import LiftbridgeClient

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "test")


async def create_stream() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        await client.create_stream(STREAM, partitions=1, wait_for_stream=True)
    print(f"stream {STREAM} is ready")


if __name__ == "__main__":
    asyncio.run(create_stream())
