"""Pipelined publishing: many messages in flight, each ack or refusal awaited."""

import asyncio
import os
from typing import Iterator

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorAckTimeout, ErrorIncorrectOffset, PublishAsyncError
from lbwire.wire import PublishRequest

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "events")


async def main() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        # Optimistic concurrency lets a publisher say which offset a message must get.
        await client.create_stream(
            STREAM, optimistic_concurrency_control=True, wait_for_stream=True
        )

        # publish_async sends at once and returns a PendingAck to await later.
        pending = [await client.publish_async(b"event %d" % i, stream=STREAM) for i in range(1000)]
        # This one must land at offset 0, which is taken: the server refuses it.
        pending.append(await client.publish_async(b"late", stream=STREAM, expected_offset=0))

        stored = 0
        for ack in pending:
            try:
                await ack
                stored += 1
            except PublishAsyncError as exc:
                # The server refused this message only. The exception is also the
                # class naming the cause: ErrorIncorrectOffset here; ErrorReadonly,
                # ErrorPermissionDenied, ErrorNotFound... elsewhere.
                if isinstance(exc, ErrorIncorrectOffset):
                    print(f"refused, offset taken: {exc}")
                else:
                    raise
            except ErrorAckTimeout:
                # No ack in time: the message may or may not have been stored.
                print("no ack within publish_async_ack_timeout")
        print(f"{stored} stored")

        # publish_bulk takes an iterable of requests and yields the responses in order;
        # a refused request raises PublishAsyncError from the loop.
        def requests() -> Iterator[PublishRequest]:
            for i in range(100):
                yield client.get_publish_request(b"bulk %d" % i, stream=STREAM)

        last = -1
        async for response in client.publish_bulk(requests()):
            last = response.ack.offset
        print(f"bulk done, last offset {last}")


if __name__ == "__main__":
    asyncio.run(main())
