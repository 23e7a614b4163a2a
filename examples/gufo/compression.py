"""Publish ten messages compressed with lzma.

The client compresses every value (threshold 0) because `auto_compress=True`
is passed, and names the method in the X-Msg-Encoding header so subscribers
can undo it.

Written against the gufo-liftbridge API; lbwire runs it with only the import
lines changed (see README.md).

    LIFTBRIDGE_BROKERS=127.0.0.1:9292 LIFTBRIDGE_STREAM=test python compression.py
"""

import asyncio
import os

from gufo.liftbridge.client import LiftbridgeClient

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "test")
COUNT = 10


async def publish_compressed() -> None:
    async with LiftbridgeClient(
        BROKERS, compression_method="lzma", compression_threshold=0
    ) as client:
        for n in range(COUNT):
            payload = f"msg{n}".encode()
            await client.publish(payload, stream=STREAM, partition=0, auto_compress=True)
            print(f"sent {payload!r} compressed")


if __name__ == "__main__":
    asyncio.run(publish_compressed())
