"""Typed values: JSON values and str keys."""

import os
from typing import Any, AsyncIterator

import anyio

from lbwire import serde
from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorUndecodableMessage
from lbwire.types import Message, StartPosition, StopPosition

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
STREAM = os.environ.get("LIFTBRIDGE_STREAM", "orders")


async def main() -> None:
    # Set on the client, serializers and deserializers apply to every call.
    async with LiftbridgeClient(
        BROKERS,
        value_serializer=serde.serialize_json,
        value_deserializer=serde.deserialize_json,
        key_serializer=serde.serialize_str,
        key_deserializer=serde.deserialize_str,
    ) as client:
        await client.create_stream(STREAM, wait_for_stream=True)
        await client.publish({"id": 1, "item": "tea"}, stream=STREAM, key="order-1")
        # serde.BYTES turns the client's serializer off for one call: a value
        # that is not JSON, as another program might publish.
        await client.publish(b"not json", stream=STREAM, value_serializer=serde.BYTES)
        await client.publish({"id": 2, "item": "coffee"}, stream=STREAM, key="order-2")

        start = 0
        while True:
            try:
                async for msg in client.subscribe(
                    STREAM, start_offset=start, stop_position=StopPosition.STOP_LATEST
                ):
                    # Type checkers do not see the client's deserializers:
                    # msg is a Message (bytes) to them, a dict and a str here.
                    order: Any = msg.value
                    print(f"{msg.offset}: {msg.key!s} -> {order['item']}")
                break
            except ErrorUndecodableMessage as poison:
                # The message as received is in the error; go on after it.
                print(f"{poison.offset}: skipped {poison.raw.value!r}")
                start = poison.offset + 1

        # Per call, a deserializer replaces the client's, and type checkers
        # see what it gives: an AsyncIterator[Message[str]] here.
        texts: AsyncIterator[Message[str]] = client.subscribe(
            STREAM,
            start_position=StartPosition.EARLIEST,
            stop_position=StopPosition.STOP_LATEST,
            value_deserializer=serde.deserialize_str,
            key_deserializer=serde.BYTES,
        )
        async for text in texts:
            print(f"{text.offset} as text: {text.value}")


if __name__ == "__main__":
    anyio.run(main)  # or anyio.run(main, backend="trio")
