"""A program incrementing one counter of a table with compare-and-set, for the table tests.

    python table_counter.py BROKER STREAM BACKEND COUNT

Adds 1 to the counter (key b"counter", a decimal value) COUNT times: it reads
the key, puts the next value with `expected=` its revision, and on a
conflict (`ErrorRevisionMismatch`) reads again. Prints "ready" once the
table is open, then "done <conflicts>" at the end.
"""

from __future__ import annotations

import sys

import anyio

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorRevisionMismatch
from lbwire.retry import RetryPolicy
from lbwire.table import ABSENT

#: Settling outlasts a server restart (the server reloads its streams), also
#: on a loaded machine (30 s ran out once at a load average of 13).
PATIENT = RetryPolicy(attempts=400, initial_backoff=0.2, max_backoff=1.0, max_time=60.0)


async def main(broker: str, stream: str, count: int) -> None:
    async with (
        LiftbridgeClient([broker], retry_policy=PATIENT) as client,
        client.table(stream) as table,
    ):
        print("ready", flush=True)
        conflicts = 0
        for _ in range(count):
            while True:
                entry = await table.get(b"counter")
                value = 0 if entry is None else int(entry.value or b"0")
                revision = ABSENT if entry is None else entry.revision
                try:
                    stored = await table.put(b"counter", b"%d" % (value + 1), expected=revision)
                except ErrorRevisionMismatch:
                    conflicts += 1
                    continue
                print("put", stored, value + 1, flush=True)
                break
    print("done", conflicts, flush=True)


if __name__ == "__main__":
    broker, stream, backend, count = sys.argv[1:]
    anyio.run(main, broker, stream, int(count), backend=backend)
