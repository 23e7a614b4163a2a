"""The blocking client takes the same serializers and deserializers as the async one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lbwire import serde
from lbwire.error import ErrorUndecodableMessage
from lbwire.sync import LiftbridgeClient
from lbwire.testing import LiftbridgeServer
from lbwire.types import StartPosition, StopPosition


@pytest.fixture(params=["asyncio", "trio"])
def client(request, liftbridge_server: LiftbridgeServer) -> Iterator[LiftbridgeClient]:
    with LiftbridgeClient(
        [liftbridge_server.broker],
        backend=request.param,
        value_serializer=serde.serialize_json,
        value_deserializer=serde.deserialize_json,
    ) as client:
        yield client


def test_blocking_client_serializes_and_deserializes(client, stream_name):
    client.create_stream(stream_name, wait_for_stream=True)
    client.publish({"n": 1}, stream=stream_name, key="k", key_serializer=serde.serialize_str)
    client.publish_async({"n": 2}, stream=stream_name).result(timeout=30)
    client.publish(b"\xff", stream=stream_name, value_serializer=serde.BYTES)
    messages = client.subscribe(
        stream_name,
        start_position=StartPosition.EARLIEST,
        key_deserializer=serde.deserialize_str,
    )
    first, second = next(messages), next(messages)
    assert (first.value, first.key, second.value, second.key) == ({"n": 1}, "k", {"n": 2}, "")
    with pytest.raises(ErrorUndecodableMessage) as caught:
        next(messages)
    assert (caught.value.offset, caught.value.raw.value) == (2, b"\xff")
    messages.close()
    with client.reader(
        stream_name,
        stop_position=StopPosition.STOP_LATEST,
        value_deserializer=serde.BYTES,
    ) as reader:
        assert [m.value for m in reader] == [b'{"n":1}', b'{"n":2}', b"\xff"]
