"""A program reading a whole stream with the reader, for the killed-reader test.

    python reader_program.py BROKER STREAM CURSOR BACKEND COMMIT_EVERY STALL_AFTER

Prints "partition offset" for each message it processes (flushed at once).
With STALL_AFTER > 0 it prints "stalled" after that many messages and waits
to be killed; otherwise it leaves the reader (committing) once every
partition has been read up to the high watermark it found at the start.
"""

from __future__ import annotations

import sys

import anyio

from lbwire.client import LiftbridgeClient


async def main(broker: str, stream: str, cursor: str, commit_every: int, stall_after: int) -> None:
    async with (
        LiftbridgeClient([broker]) as client,
        client.reader(
            stream, cursor_id=cursor, commit_every=commit_every, commit_interval=None
        ) as reader,
    ):
        high = await reader.highwater()
        committed = reader.committed()
        remaining = {p for p, h in high.items() if h >= 0 and (committed[p] or 0) <= h}
        processed = 0
        if remaining:
            async for msg in reader:
                print(msg.partition, msg.offset, flush=True)
                processed += 1
                if processed == stall_after:
                    print("stalled", flush=True)
                    await anyio.sleep_forever()
                if msg.offset >= high[msg.partition]:
                    remaining.discard(msg.partition)
                    if not remaining:
                        break
    print("done", flush=True)


if __name__ == "__main__":
    broker, stream, cursor, backend, every, stall = sys.argv[1:]
    anyio.run(main, broker, stream, cursor, int(every), int(stall), backend=backend)
