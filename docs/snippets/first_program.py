"""Create a stream, publish two messages and read them back."""

import asyncio
import contextlib
import os

from lbwire.client import LiftbridgeClient, StartPosition, StopPosition
from lbwire.error import ErrorAlreadyExists

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "greetings")


async def main() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        with contextlib.suppress(ErrorAlreadyExists):  # from an earlier run
            await client.create_stream(STREAM, wait_for_stream=True)
        for word in (b"hello", b"liftbridge"):
            ack = await client.publish(word, stream=STREAM)  # waits for the leader's ack
            print(f"{word!r} stored at offset {ack.offset}")
        # From the oldest message to the newest one stored now, then the loop ends.
        async for msg in client.subscribe(
            STREAM,
            start_position=StartPosition.EARLIEST,
            stop_position=StopPosition.STOP_LATEST,
        ):
            print(f"{msg.offset}: {msg.value!r}")


if __name__ == "__main__":
    asyncio.run(main())
