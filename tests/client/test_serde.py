"""Serializers and deserializers (`lbwire.serde`) against a real server.

Values and keys go through the client's serializers or a call's own on
every publishing method, and through deserializers on every reading one
(subscribe, the whole-stream reader, the consumer). A value a deserializer
refuses follows the poison-message policy: `ErrorUndecodableMessage`
carrying the raw message, or with `on_undecodable="raw"` delivered flagged.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from client_support import HANG_GUARD, collect, publish_values, read_all
from helpers.typecheck import expected_errors, mypy_strict

from lbwire import serde
from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset
from lbwire.error import ErrorInvalidArgument, ErrorUndecodableMessage, LiftbridgeError
from lbwire.options import ClientOptions
from lbwire.reader import batched
from lbwire.types import StartPosition, StopPosition

pytestmark = pytest.mark.anyio

ORDERS = [{"id": 1, "item": "tea"}, {"id": 2, "item": "café"}, {"id": 3, "item": None}]


@pytest.fixture
async def json_client(broker: str) -> Any:
    """A client that sends and reads JSON values and str keys."""
    async with LiftbridgeClient(
        [broker],
        value_serializer=serde.serialize_json,
        value_deserializer=serde.deserialize_json,
        key_serializer=serde.serialize_str,
        key_deserializer=serde.deserialize_str,
    ) as client:
        yield client


async def test_client_serializers_round_trip_values_and_keys(
    json_client: LiftbridgeClient, stream: str
) -> None:
    for order in ORDERS:
        await json_client.publish(order, stream=stream, key=f"order-{order['id']}")
    messages = await read_all(json_client, stream)
    assert [m.value for m in messages] == ORDERS
    assert [m.key for m in messages] == ["order-1", "order-2", "order-3"]
    # On the wire: compact UTF-8 JSON and the key's UTF-8, which serde.BYTES
    # (per call) reads as they are.
    raw = await read_all(
        json_client, stream, value_deserializer=serde.BYTES, key_deserializer=serde.BYTES
    )
    assert raw[1].value == '{"id":2,"item":"café"}'.encode()
    assert raw[1].key == b"order-2"


async def test_every_publishing_method_takes_per_call_serializers(
    client: LiftbridgeClient, stream: str
) -> None:
    to_json = serde.serialize_json
    await client.publish({"n": 0}, stream=stream, value_serializer=to_json)
    pending = await client.publish_async({"n": 1}, stream=stream, value_serializer=to_json)
    assert (await pending).offset == 1  # type: ignore[union-attr]
    batch = await client.publish_batch(
        [{"n": 2}, {"n": 3}],
        stream=stream,
        key="k",
        value_serializer=to_json,
        key_serializer=serde.serialize_str,
    )
    for ack in batch:
        await ack
    request = client.get_publish_request(
        {"n": 4},
        stream=stream,
        key=7,
        value_serializer=to_json,
        key_serializer=lambda k: bytes([k]),
    )
    responses = [r async for r in client.publish_bulk([request])]
    assert responses[0].ack.offset == 4
    await client.publish_to_subject({"n": 5}, stream, value_serializer=to_json)
    # The client has no deserializer: bytes, unless the call asks.
    plain = await read_all(client, stream)
    assert plain[0].value == b'{"n":0}'
    messages = await read_all(client, stream, value_deserializer=serde.deserialize_json)
    assert [m.value for m in messages] == [{"n": n} for n in range(6)]
    assert [m.key for m in messages] == [b"", b"", b"k", b"k", b"\x07", b""]


async def test_deserializers_run_after_decompression(broker: str, stream_name: str) -> None:
    async with LiftbridgeClient(
        [broker],
        compression_method="zlib",
        value_serializer=serde.serialize_str,
        value_deserializer=serde.deserialize_str,
    ) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        text = "compressed " * 200
        await client.publish(text, stream=stream_name, auto_compress=True)
        (message,) = await read_all(client, stream_name)
        assert message.value == text
        assert "X-Msg-Encoding" not in message.headers


async def poisoned(client: LiftbridgeClient, stream: str) -> None:
    """JSON at offsets 0 and 2, and at offset 1 a value that is not JSON."""
    await publish_values(client, stream, [b'{"a":0}', b"not json {", b'{"a":2}'])


async def test_a_value_the_deserializer_refuses_raises_with_the_raw_message(
    client: LiftbridgeClient, stream: str
) -> None:
    await poisoned(client, stream)
    received: list[Any] = []

    async def read() -> None:
        async for message in client.subscribe(
            stream,
            start_position=StartPosition.EARLIEST,
            value_deserializer=serde.deserialize_json,
        ):
            received.append(message.value)

    with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUndecodableMessage) as caught:
        await read()
    assert received == [{"a": 0}]
    error = caught.value
    assert isinstance(error, LiftbridgeError)
    assert (error.stream, error.partition, error.offset) == (stream, 0, 1)
    assert error.raw.value == b"not json {"
    assert "JSONDecodeError" in str(error)
    assert isinstance(error.__cause__, json.JSONDecodeError)
    # The documented way on: subscribe again after it, nothing else lost.
    rest = await read_all(
        client, stream, start_offset=error.offset + 1, value_deserializer=serde.deserialize_json
    )
    assert [(m.offset, m.value) for m in rest] == [(2, {"a": 2})]


async def test_raw_policy_delivers_the_refused_value_flagged_and_goes_on(
    client: LiftbridgeClient, stream: str
) -> None:
    await poisoned(client, stream)
    messages = await read_all(
        client, stream, value_deserializer=serde.deserialize_json, on_undecodable="raw"
    )
    assert [m.value for m in messages] == [{"a": 0}, b"not json {", {"a": 2}]
    assert [m.undecoded for m in messages] == [False, True, False]
    assert "its value raised JSONDecodeError" in (messages[1].decode_error or "")


@pytest.mark.parametrize("policy", ["raise", "raw"])
async def test_batched_subscription_deserializes_up_to_a_refused_value(
    client: LiftbridgeClient, stream: str, policy: str
) -> None:
    # After its first message a batched subscription hands out whole lists
    # (lbwire._subscribe.IN_LISTS): the refused value is in the middle of one.
    await publish_values(client, stream, [b'{"a":0}', b'{"a":1}', b"not json {", b'{"a":3}'])
    subscription = client.subscribe(
        stream,
        start_position=StartPosition.EARLIEST,
        stop_position=StopPosition.STOP_LATEST,
        value_deserializer=serde.deserialize_json,
        on_undecodable=policy,
    )
    got: list[Any] = []

    async def read() -> None:
        async with batched(subscription, 100, 0.05) as batches:
            async for batch in batches:
                got.extend(batch)

    with anyio.fail_after(HANG_GUARD):
        if policy == "raw":
            await read()
        else:
            with pytest.raises(ErrorUndecodableMessage) as caught:
                await read()
            assert caught.value.offset == 2
    values = [{"a": 0}, {"a": 1}] + ([b"not json {", {"a": 3}] if policy == "raw" else [])
    assert [m.value for m in got] == values
    assert [m.offset for m in got] == list(range(len(values)))


async def test_a_key_the_deserializer_refuses_is_undecodable_too(
    client: LiftbridgeClient, stream: str
) -> None:
    await client.publish(b"v", stream=stream, key=b"\xff")
    with pytest.raises(
        ErrorUndecodableMessage, match="its key raised UnicodeDecodeError"
    ) as caught:
        await read_all(client, stream, key_deserializer=serde.deserialize_str)
    assert caught.value.raw.key == b"\xff"


async def test_serializer_failures_are_refused_before_anything_is_sent(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="value serializer refused set: TypeError"):
        await client.publish({1, 2}, stream=stream, value_serializer=serde.serialize_json)
    with pytest.raises(ErrorInvalidArgument, match="key serializer must return bytes, not str"):
        await client.publish(b"v", stream=stream, key="k", key_serializer=str)
    with pytest.raises(ErrorInvalidArgument, match="value serializer refused"):
        await client.publish_batch([b"ok", 1], stream=stream, value_serializer=serde.serialize_str)
    assert await read_all(client, stream) == []


def test_serde_options_must_be_callable() -> None:
    with pytest.raises(ErrorInvalidArgument, match="value_deserializer must be callable, not str"):
        ClientOptions(value_deserializer="json")  # type: ignore[arg-type]
    with pytest.raises(ErrorInvalidArgument, match="key_serializer must be callable"):
        LiftbridgeClient(["127.0.0.1:9292"], key_serializer=b"")  # type: ignore[arg-type]


async def test_per_call_serde_arguments_must_be_callable(
    client: LiftbridgeClient, stream: str
) -> None:
    # Refused as bad arguments, never mistaken for undecodable messages.
    await publish_values(client, stream, [b"x"])
    with pytest.raises(ErrorInvalidArgument, match="value_serializer must be callable, not str"):
        await client.publish({}, stream=stream, value_serializer="json")  # type: ignore[arg-type]
    with pytest.raises(ErrorInvalidArgument, match="key_deserializer must be callable, not int"):
        await read_all(client, stream, key_deserializer=1)
    with pytest.raises(ErrorInvalidArgument, match="value_deserializer must be callable"):
        client.reader(stream, value_deserializer="json")  # type: ignore[arg-type]
    with pytest.raises(ErrorInvalidArgument, match="key_deserializer must be callable"):
        client.consumer("g", [stream], key_deserializer=b"")  # type: ignore[arg-type]


async def test_reader_deserializes_every_partition(
    json_client: LiftbridgeClient, stream_name: str
) -> None:
    await json_client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    for partition in (0, 1):
        await json_client.publish({"p": partition}, stream=stream_name, partition=partition)
    async with json_client.reader(
        stream_name, stop_position=StopPosition.STOP_LATEST, key_deserializer=serde.BYTES
    ) as reader:
        with anyio.fail_after(HANG_GUARD):
            got = sorted([(m.partition, m.value["p"], m.key) async for m in reader])
    assert got == [(0, 0, b""), (1, 1, b"")]


async def test_reader_raises_for_a_refused_value(client: LiftbridgeClient, stream: str) -> None:
    await poisoned(client, stream)
    async with client.reader(
        stream, stop_position=StopPosition.STOP_LATEST, value_deserializer=serde.deserialize_json
    ) as reader:
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUndecodableMessage) as caught:
            async for _ in reader:
                pass
    assert caught.value.offset == 1


async def test_consumer_deserializes(client: LiftbridgeClient, stream: str) -> None:
    await publish_values(client, stream, [b"one", b"two"])
    async with client.consumer(
        "g-" + stream,
        [stream],
        auto_offset=AutoOffset.EARLIEST,
        value_deserializer=serde.deserialize_str,
    ) as member:
        values = []
        with anyio.fail_after(HANG_GUARD):
            async for message in member:
                values.append(message.value)
                if len(values) == 2:
                    break
    assert values == ["one", "two"]


async def test_msgpack_plugs_in(client: LiftbridgeClient, stream: str) -> None:
    import msgpack

    record = {"id": 7, "tags": ["a", "b"], "blob": b"\x00\x01"}
    await client.publish(record, stream=stream, value_serializer=msgpack.packb)
    (message,) = await read_all(client, stream, value_deserializer=msgpack.unpackb)
    assert message.value == record


async def test_protobuf_plugs_in(client: LiftbridgeClient, stream: str) -> None:
    from google.protobuf.struct_pb2 import Struct

    record = Struct()
    record.update({"id": 7.0, "name": "x"})
    await client.publish(record, stream=stream, value_serializer=Struct.SerializeToString)
    subscription = client.subscribe(
        stream,
        start_position=StartPosition.EARLIEST,
        stop_position=StopPosition.STOP_LATEST,
        value_deserializer=Struct.FromString,
    )
    (message,) = await collect(subscription)
    assert message.value == record


# mypy --strict on a user's program, as tests/sync/test_sync_generated.py does
# for the blocking client: a per-call deserializer types the messages, and a
# plain subscription's stay bytes (gufo-liftbridge's `Message`).
TYPED_PROGRAM = textwrap.dedent(
    """
    from lbwire import serde
    from lbwire.client import LiftbridgeClient
    from lbwire.types import Message


    async def good(client: LiftbridgeClient) -> None:
        async for text in client.subscribe("s", value_deserializer=serde.deserialize_str):
            value: str = text.value
            key: bytes = text.key
        async for doc in client.subscribe(
            "s", value_deserializer=serde.deserialize_json, key_deserializer=serde.deserialize_str
        ):
            reveal_type(doc)
        async for raw in client.subscribe("s"):
            plain: Message = raw
            data: bytes = raw.value
        async with client.reader("s", value_deserializer=serde.deserialize_str) as reader:
            async for message in reader:
                read: str = message.value
        async with client.consumer("g", ["s"], key_deserializer=serde.deserialize_str) as member:
            async for consumed in member:
                consumed_key: str = consumed.key
                consumed_value: bytes = consumed.value


    async def bad(client: LiftbridgeClient) -> None:
        async for raw in client.subscribe("s"):
            text: str = raw.value  # E: assignment
        async for message in client.subscribe("s", value_deserializer=serde.deserialize_str):
            data: bytes = message.value  # E: assignment
        async with client.reader("s", value_deserializer=serde.deserialize_str) as reader:
            async for read in reader:
                number: int = read.value  # E: assignment
        async with client.consumer("g", ["s"], value_deserializer=serde.deserialize_str) as member:
            async for consumed in member:
                wrong: bytes = consumed.value  # E: assignment
        client.subscribe("s", value_deserializer=b"json")  # E: arg-type
    """
)


def test_mypy_strict_infers_the_value_type_from_the_deserializer(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is in the CPython environment's dev extra")
    program = tmp_path / "program.py"
    program.write_text(TYPED_PROGRAM)
    errors, revealed = mypy_strict(program)
    assert errors == expected_errors(TYPED_PROGRAM)
    # (Older mypy versions write builtins.str.)
    pattern = r'Revealed type is "lbwire.types.Message\[Any, (builtins\.)?str\]"'
    assert len(revealed) == 1, revealed
    assert re.fullmatch(pattern, revealed[0]), revealed


async def test_otel_instrumentation_takes_values_that_are_not_bytes(
    json_client: LiftbridgeClient, stream: str
) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="lbwire[otel]'s tests need the SDK")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from lbwire.otel import instrument

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(json_client, tracer_provider=provider, receive_spans=True)
    await json_client.publish(7, stream=stream)
    await (await json_client.publish_async([7], stream=stream))
    assert [m.value for m in await read_all(json_client, stream)] == [7, [7]]
    spans = exporter.get_finished_spans()
    assert spans
    assert all("messaging.message.body.size" not in span.attributes for span in spans)
