"""Publish ten messages in one pipelined batch and print what comes back.

`get_publish_request` prepares the requests, `publish_bulk` streams them over
one PublishAsync call and yields a response per acknowledged message (with
gufo-liftbridge 0.2.0 that is a PublishResponse whose `ack` field is the Ack).

Written against the gufo-liftbridge API; lbwire runs it with only the import
lines changed (see README.md).

    LIFTBRIDGE_BROKERS=127.0.0.1:9292 LIFTBRIDGE_STREAM=test python bulk.py
"""

import asyncio
import os

from gufo.liftbridge.client import LiftbridgeClient

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "test")
COUNT = 10


async def publish_batch() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        batch = [
            client.get_publish_request(f"msg{n}".encode(), stream=STREAM, partition=0)
            for n in range(COUNT)
        ]
        offsets = []
        async for response in client.publish_bulk(batch, wait=True):
            offsets.append(response.ack.offset)
            print(f"acked: stream {response.ack.stream}, offset {response.ack.offset}")
        print(f"{len(offsets)} acks, offsets {sorted(offsets)}")


if __name__ == "__main__":
    asyncio.run(publish_batch())
