"""Print every message of partition 0, oldest first, then wait for more.

Runs until interrupted.

Written against the gufo-liftbridge API; lbwire runs it with only the import
lines changed (see README.md).

    LIFTBRIDGE_BROKERS=127.0.0.1:9292 LIFTBRIDGE_STREAM=test python subscribe.py
"""

import asyncio
import os

from gufo.liftbridge.client import LiftbridgeClient, StartPosition

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "test")


async def print_messages() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        messages = client.subscribe(STREAM, partition=0, start_position=StartPosition.EARLIEST)
        async for message in messages:
            print(f"{message.offset}: {message.value}", flush=True)


if __name__ == "__main__":
    asyncio.run(print_messages())
