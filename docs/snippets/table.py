"""A key-value table: values, revisions, compare-and-set, and a watch."""

import os
from typing import Any

import anyio

from lbwire import serde
from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorRevisionMismatch
from lbwire.table import ABSENT, Table

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "config")


async def increment(table: Table[Any, Any], key: str) -> int:
    """Add 1 to a counter with compare-and-set, retrying on conflicts."""
    while True:
        entry = await table.get(key)
        value = 0 if entry is None else entry.value
        try:
            await table.put(key, value + 1, expected=ABSENT if entry is None else entry.revision)
            return value + 1
        except ErrorRevisionMismatch:
            continue  # another writer was first: read again


async def main() -> None:
    async with (
        LiftbridgeClient(BROKERS) as client,
        # Created on first use: compaction and concurrency control on.
        client.table(
            STREAM,
            key_serializer=serde.serialize_str,
            key_deserializer=serde.deserialize_str,
            value_serializer=serde.serialize_json,
            value_deserializer=serde.deserialize_json,
        ) as table,
    ):
        await table.put("mode", "fast")
        entry = await table.get("mode")  # reads this table's own writes
        print(f"mode = {entry.value} (revision {entry.revision})")

        async with table.watch(current=False) as changes:
            # Two writers at once: each increment counts exactly once.
            async def writer() -> None:
                for _ in range(10):
                    await increment(table, "hits")

            async with anyio.create_task_group() as tg:
                tg.start_soon(writer)
                tg.start_soon(writer)
            async for change in changes:
                if change.key == "hits" and change.value == 20:
                    break
        await table.delete("mode")
        print(f"counter: {(await table.get('hits')).value}, keys: {await table.keys()}")


if __name__ == "__main__":
    anyio.run(main)
