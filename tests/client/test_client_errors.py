"""Errors: the exception each refusal maps to, and bad input that never harms."""

from __future__ import annotations

import pytest
from client_support import collect, publish_values, read_all

from lbwire import error as lbwire_error
from lbwire.client import LiftbridgeClient
from lbwire.error import (
    ErrorInternal,
    ErrorInvalidArgument,
    ErrorMessageSizeExceeded,
    ErrorNotFound,
    LiftbridgeError,
)
from lbwire.grpc import Status
from lbwire.types import StartPosition

pytestmark = pytest.mark.anyio


async def test_gufo_liftbridge_error_classes_are_in_lbwire_error() -> None:
    for name in (
        "LiftbridgeError",
        "ErrorNotFound",
        "ErrorAlreadyExists",
        "ErrorChannelClosed",
        "ErrorUnavailable",
        "ErrorMessageSizeExceeded",
        "ErrorNoMetadataLeader",
    ):
        assert issubclass(getattr(lbwire_error, name), Exception)


async def test_server_errors_carry_status_and_message(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(LiftbridgeError) as caught:
        await client.delete_stream(stream_name)
    assert isinstance(caught.value, ErrorNotFound)
    assert caught.value.status == Status.NOT_FOUND
    assert caught.value.message == str(caught.value) != ""


async def test_server_invalid_argument_is_also_a_value_error(
    client: LiftbridgeClient,
) -> None:
    with pytest.raises(ValueError, match="Subject is invalid") as caught:
        await client.create_stream("no spaces allowed")
    assert isinstance(caught.value, ErrorInvalidArgument)
    assert caught.value.status == Status.INVALID_ARGUMENT


async def test_stop_timestamp_before_the_first_message_raises_internal(
    client: LiftbridgeClient, stream: str
) -> None:
    # Server behaviour (v1.9.0): the timestamp lookup fails instead of
    # reporting "nothing to read".
    await publish_values(client, stream, [b"a"])
    (message,) = await read_all(client, stream)
    with pytest.raises(ErrorInternal, match="before the beginning of the log"):
        await collect(
            client.subscribe(
                stream,
                start_position=StartPosition.EARLIEST,
                stop_timestamp=message.timestamp / 1e9 - 10,
            )
        )


# -- bad input --------------------------------------------------------------


async def test_negative_partition_in_publish_raises_value_error(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="Partition must not be negative"):
        await client.publish(b"x", stream=stream, partition=-1)


async def test_negative_partition_in_publish_async_raises_value_error(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="Partition must not be negative"):
        await client.publish_async(b"x", stream=stream, partition=-1)


async def test_negative_partition_in_cursor_calls_raises_value_error_and_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    # ErrorNotFound as gufo-liftbridge raises (the server's answer there).
    for call in (
        lambda: client.set_cursor(stream, -1, "reader", 0),
        lambda: client.get_cursor(stream, -1, "reader"),
    ):
        with pytest.raises(ValueError, match="Partition must not be negative") as caught:
            await call()
        assert isinstance(caught.value, ErrorNotFound)


async def test_negative_partition_in_partition_metadata_raises_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ErrorNotFound, match="-1"):
        await client.get_partition_metadata(stream, -1)


@pytest.mark.parametrize(
    "headers",
    [{"name": "not bytes"}, {b"bytes-name": b"v"}, {"name": None}],
    ids=["str-value", "bytes-name", "none-value"],
)
async def test_malformed_headers_raise_value_error(
    client: LiftbridgeClient, stream: str, headers: dict
) -> None:
    with pytest.raises(ValueError, match="Header"):
        await client.publish(b"x", stream=stream, headers=headers)


async def test_huge_header_set_raises_message_size_exceeded_before_sending(
    client: LiftbridgeClient, stream: str
) -> None:
    headers = {f"header-{i}": b"v" * 16 for i in range(50_000)}
    with pytest.raises(ErrorMessageSizeExceeded, match="max_publish_size"):
        await client.publish(b"x", stream=stream, headers=headers)


async def test_thousands_of_headers_within_the_limit_round_trip(
    client: LiftbridgeClient, stream: str
) -> None:
    headers = {f"h{i}": b"%d" % i for i in range(5000)}
    await client.publish(b"x", stream=stream, headers=headers)
    (message,) = await read_all(client, stream)
    assert {k: v for k, v in message.headers.items() if k.startswith("h")} == headers


async def test_bad_input_leaves_the_connection_and_stored_messages_intact(
    client: LiftbridgeClient, stream: str
) -> None:
    await publish_values(client, stream, [b"good-0"])
    bad_calls = [
        (lambda: client.publish(b"x", stream=stream, partition=-1), "Partition"),
        (lambda: client.publish(b"x" * (2 << 20), stream=stream), "max_publish_size"),
        (lambda: client.publish(b"x", stream=stream, headers={"h": "str"}), "Header"),  # type: ignore[dict-item]
        (lambda: client.publish(b"x", stream=stream, expected_offset=-5), "expected_offset"),
        (lambda: client.publish(b"x", stream=stream, ack_policy=5), "ack policy"),  # type: ignore[arg-type]
        (lambda: client.set_cursor(stream, 0, "", 0), "cursor_id"),
        (lambda: client.set_cursor(stream, 0, "reader", -1), "offset"),
    ]
    for call, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            await call()
    with pytest.raises(ErrorNotFound):
        await client.publish(b"x", stream=stream, partition=9)
    assert await publish_values(client, stream, [b"good-1"]) == [1]
    assert [m.value for m in await read_all(client, stream)] == [b"good-0", b"good-1"]
    assert await client.get_cursor(stream, 0, "reader") == -1
