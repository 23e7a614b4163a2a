"""Delete a stream, with all the messages it holds.

Written against the gufo-liftbridge API; lbwire runs it with only the import
lines changed (see README.md).

    LIFTBRIDGE_BROKERS=127.0.0.1:9292 LIFTBRIDGE_STREAM=test python delete.py
"""

import asyncio
import os

from gufo.liftbridge.client import LiftbridgeClient

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "test")


async def delete_stream() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        await client.delete_stream(STREAM)
    print(f"stream {STREAM} is gone")


if __name__ == "__main__":
    asyncio.run(delete_stream())
