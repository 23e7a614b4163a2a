"""A restartable subscriber on asyncio: it resumes from its stored cursor.

Kill it at any moment and start it again: it continues at the first message
whose processing it had not yet recorded in the cursor.

    LIFTBRIDGE_BROKERS=127.0.0.1:9292 python examples/cursor_subscriber.py
"""

import asyncio
import os

from lbwire.client import LiftbridgeClient, StartPosition

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "test")
CURSOR_ID = os.environ.get("LIFTBRIDGE_CURSOR", "test_cursor")


async def main() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        async for msg in client.subscribe(
            STREAM,
            partition=0,
            start_position=StartPosition.RESUME,
            cursor_id=CURSOR_ID,
        ):
            print(f"{msg.offset}: {msg.value.decode()}", flush=True)
            # Record the message as processed only after processing it.
            await client.set_cursor(STREAM, partition=0, cursor_id=CURSOR_ID, offset=msg.offset)


if __name__ == "__main__":
    asyncio.run(main())
