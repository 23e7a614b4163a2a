"""Publishing at volume: batches, backpressure, flush, and fire and forget."""

import asyncio
import os

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorDeadlineExceeded, PublishAsyncError
from lbwire.types import AckPolicy

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "events")


def refused(error: PublishAsyncError) -> None:
    # Refusals of fire-and-forget messages: nobody awaits them, so they come here.
    print(f"refused, nobody waiting: {error}")


async def main() -> None:
    async with LiftbridgeClient(
        BROKERS,
        # The bound on publishes in flight (these are the defaults): beyond it,
        # publish_async and publish_batch wait for acks to make room.
        publish_async_max_pending=4096,
        publish_async_max_pending_bytes=32 * 1024 * 1024,
        on_publish_error=refused,
    ) as client:
        await client.create_stream(STREAM, wait_for_stream=True)

        # One call encodes, frames and writes many messages; one PendingAck each.
        pending = await client.publish_batch(
            [b"event %d" % i for i in range(10_000)], stream=STREAM
        )
        # flush() waits until every publish in flight is acked or has failed...
        await client.flush(timeout=30)
        # ...after which the outcomes are in: awaiting them does not wait.
        print(f"batch: last offset {(await pending[-1]).offset}")

        # Fire and forget: returns once the message is queued, awaits nothing.
        for i in range(1000):
            await client.publish_async(b"metric %d" % i, stream=STREAM, ack_policy=AckPolicy.NONE)
        # A refusal (no such stream) goes to `refused` and is counted.
        await client.publish_async(b"lost", stream=f"{STREAM}-missing", ack_policy=AckPolicy.NONE)

        try:
            await client.flush(timeout=30)
        except ErrorDeadlineExceeded:
            print(f"still in flight: {client.publish_in_flight}")
        # On one stream the server answers in order: once this ack is in, so is
        # the refusal before it.
        ack = await client.publish(b"last", stream=STREAM)
        print(f"fire and forget done, last offset {ack.offset}")
        print(f"refusals nobody awaited: {client.publish_errors}")


if __name__ == "__main__":
    asyncio.run(main())
