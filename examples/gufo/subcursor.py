"""A subscriber that remembers how far it got, in a server-side cursor.

It starts at the position stored in the cursor (StartPosition.RESUME) and,
after handling each message, records it as processed with `set_cursor`. Stop
it at any moment (even with SIGKILL) and start it again: it carries on with
the first message it had not recorded. Runs until interrupted.

Written against the gufo-liftbridge API; lbwire runs it with only the import
lines changed (see README.md).

    LIFTBRIDGE_BROKERS=127.0.0.1:9292 LIFTBRIDGE_STREAM=test python subcursor.py
"""

import asyncio
import os

from gufo.liftbridge.client import LiftbridgeClient, StartPosition

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "test")
CURSOR_ID = os.environ.get("LIFTBRIDGE_CURSOR", "test_cursor")


async def consume() -> None:
    async with LiftbridgeClient(BROKERS) as client:
        messages = client.subscribe(
            STREAM,
            partition=0,
            start_position=StartPosition.RESUME,
            cursor_id=CURSOR_ID,
        )
        async for message in messages:
            print(f"{message.offset}: {message.value}", flush=True)
            # Only now is the message handled: move the cursor past it.
            await client.set_cursor(STREAM, partition=0, cursor_id=CURSOR_ID, offset=message.offset)


if __name__ == "__main__":
    asyncio.run(consume())
