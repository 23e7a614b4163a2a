"""Create a stream (and wait until it is ready).

LIFTBRIDGE_BROKERS=127.0.0.1:9292 python examples/create_stream.py test
"""

import asyncio
import os
import sys

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorAlreadyExists

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")


async def main(name: str, partitions: int) -> None:
    async with LiftbridgeClient(BROKERS) as client:
        try:
            await client.create_stream(name, partitions=partitions, wait_for_stream=True)
            print(f"created stream {name!r} with {partitions} partition(s)")
        except ErrorAlreadyExists:
            print(f"stream {name!r} already exists")


if __name__ == "__main__":
    stream = sys.argv[1] if len(sys.argv) > 1 else "test"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    asyncio.run(main(stream, count))
