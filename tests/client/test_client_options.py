"""The client's options: one frozen `ClientOptions`, read by every part of the client."""

from __future__ import annotations

import dataclasses
import zlib

import pytest
from client_support import read_all

from lbwire import serde
from lbwire.client import ClientOptions, LiftbridgeClient, RetryPolicy
from lbwire.error import (
    ErrorInvalidType,
    ErrorMessageSizeExceeded,
    ErrorReadOnlyOption,
    LiftbridgeError,
    PublishAsyncError,
)
from lbwire.options import OPTION_NAMES
from lbwire.sync import LiftbridgeClient as SyncLiftbridgeClient
from lbwire.types import CursorConvention

pytestmark = pytest.mark.anyio

#: Never connected to: these tests make clients without calling them.
UNUSED_BROKER = "127.0.0.1:1"


def _ignore_refusal(error: PublishAsyncError) -> None:
    """An `on_publish_error` callback (these tests never call it)."""


#: A value for each option, other than its default.
CHANGED = {
    "max_message_size": 8 << 20,
    "enable_http_proxy": True,
    "compression_method": "lzma",
    "compression_threshold": 10,
    "encoding_header": "X-Changed",
    "publish_async_ack_timeout": 1.0,
    "publish_async_max_pending": 10,
    "publish_async_max_pending_bytes": 1 << 20,
    "on_publish_error": _ignore_refusal,
    "metadata_leader_timeout": 1.0,
    "metadata_leader_dev": 0.5,
    "connect_timeout": 1.0,
    "rpc_timeout": 1.0,
    "ack_timeout": 1.0,
    "max_publish_size": 2 << 20,
    "ssl_context": None,
    "tls_server_hostname": None,
    "retry_policy": RetryPolicy(attempts=2),
    "resubscribe_wait_time": 1.0,
    "cursor_convention": CursorConvention.LAST_PROCESSED,
    "partitioner": None,
    "keepalive_time": None,
    "idle_timeout": None,
    "max_conns_per_broker": 3,
    "proxy": "http://127.0.0.1:1",
    "key_serializer": serde.serialize_str,
    "value_serializer": serde.serialize_json,
    "key_deserializer": serde.deserialize_str,
    "value_deserializer": serde.deserialize_json,
}


def test_every_option_has_a_changed_value_here() -> None:
    assert set(CHANGED) == set(OPTION_NAMES)


def test_the_constructor_keywords_are_the_options_with_the_same_defaults() -> None:
    keywords = dict(LiftbridgeClient.__init__.__kwdefaults__ or {})
    assert keywords.pop("options") is None
    assert keywords.pop("retry_policy") is None  # RetryPolicy() in the options
    defaults = ClientOptions()
    assert keywords == {name: getattr(defaults, name) for name in keywords}
    assert {*keywords, "retry_policy"} == set(OPTION_NAMES)
    assert defaults.retry_policy == RetryPolicy()


@pytest.mark.parametrize("name", [*OPTION_NAMES, "options", "broker_seeds"])
async def test_assigning_an_option_raises_and_says_how_to_derive_options(name: str) -> None:
    client = LiftbridgeClient([UNUSED_BROKER])
    before = getattr(client, name)
    with pytest.raises(ErrorReadOnlyOption, match="read-only") as caught:
        setattr(client, name, CHANGED.get(name, before))
    assert isinstance(caught.value, AttributeError)
    assert isinstance(caught.value, LiftbridgeError)
    assert "LiftbridgeClient(" in str(caught.value)
    if name in OPTION_NAMES:
        assert f"dataclasses.replace(client.options, {name}=...)" in str(caught.value)
    assert getattr(client, name) == before


@pytest.mark.parametrize("name", ["max_publish_size", "encoding_header", "options"])
def test_assigning_an_option_of_the_blocking_client_raises(name: str) -> None:
    with SyncLiftbridgeClient([UNUSED_BROKER]) as client:
        before = getattr(client, name)
        with pytest.raises(ErrorReadOnlyOption, match="read-only"):
            setattr(client, name, before)
        assert getattr(client, name) == before


async def test_options_are_the_keywords_given() -> None:
    client = LiftbridgeClient([UNUSED_BROKER], **CHANGED)
    assert client.options == ClientOptions(**CHANGED)
    for name, value in CHANGED.items():
        assert getattr(client, name) == value


async def test_derived_options_make_a_client_with_them() -> None:
    client = LiftbridgeClient([UNUSED_BROKER], max_publish_size=1000)
    options = dataclasses.replace(client.options, max_publish_size=5 << 20, rpc_timeout=2.0)
    derived = LiftbridgeClient(client.broker_seeds, options=options)
    assert derived.options is options
    assert (derived.max_publish_size, derived.rpc_timeout) == (5 << 20, 2.0)
    # The connections' send limit follows the publish limit.
    assert derived.channel_config.max_send_message_length >= 5 << 20
    assert client.max_publish_size == 1000


async def test_derived_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_publish_size"):
        dataclasses.replace(ClientOptions(), max_publish_size=0)
    with pytest.raises(ValueError, match="compression method"):
        dataclasses.replace(ClientOptions(), compression_method="snappy")
    for name in ("publish_async_max_pending", "publish_async_max_pending_bytes"):
        with pytest.raises(ValueError, match=f"{name} must be positive"):
            dataclasses.replace(ClientOptions(), **{name: 0})
    with pytest.raises(ValueError, match="on_publish_error must be callable"):
        ClientOptions(on_publish_error="log")  # type: ignore[arg-type]


async def test_the_bound_on_publishes_in_flight_is_the_options() -> None:
    options = ClientOptions(publish_async_max_pending=3, publish_async_max_pending_bytes=1000)
    client = LiftbridgeClient([UNUSED_BROKER], options=options)
    room = client._publisher.room  # noqa: SLF001 (the bound the publisher was made with)
    assert (room.max_requests, room.max_bytes) == (3, 1000)
    assert tuple(client.publish_in_flight) == (0, 0)


async def test_options_with_option_keywords_raise() -> None:
    with pytest.raises(ValueError, match=r"not both.*max_publish_size"):
        LiftbridgeClient([UNUSED_BROKER], options=ClientOptions(), max_publish_size=2000)


async def test_options_of_another_type_raise() -> None:
    with pytest.raises(TypeError, match="ClientOptions"):
        LiftbridgeClient([UNUSED_BROKER], options={"ack_timeout": 1.0})  # type: ignore[arg-type]


WRONG_TYPES = {
    "max_message_size": ("x", "an int"),
    "max_publish_size": (1.5, "an int"),
    "max_conns_per_broker": (True, "an int"),
    "compression_threshold": ("10", "an int"),
    "rpc_timeout": ("1", "a number of seconds"),
    "ack_timeout": (None, "a number of seconds"),
    "resubscribe_wait_time": ([1], "a number of seconds"),
    "idle_timeout": ("300", "a number of seconds or None"),
    "encoding_header": (b"X-Enc", "a str"),
    "compression_method": (1, "a str or None"),
    "proxy": (b"http://user:secret@127.0.0.1:1", "a str or None"),
}


@pytest.mark.parametrize("name", sorted(WRONG_TYPES))
async def test_an_option_of_the_wrong_type_raises_invalid_type_naming_it(name: str) -> None:
    value, expected = WRONG_TYPES[name]
    with pytest.raises(ErrorInvalidType) as raised:
        LiftbridgeClient([UNUSED_BROKER], **{name: value})
    assert str(raised.value) == f"{name} must be {expected}, not {type(value).__name__}"
    # A LiftbridgeError, and the TypeError a comparison raised before.
    assert isinstance(raised.value, LiftbridgeError)
    assert isinstance(raised.value, TypeError)


async def test_options_with_keywords_at_their_defaults_are_accepted() -> None:
    options = ClientOptions(ack_timeout=1.0)
    assert LiftbridgeClient([UNUSED_BROKER], options=options, ack_timeout=5.0).options is options


async def test_cursor_convention_given_as_an_int_is_the_enum() -> None:
    client = LiftbridgeClient([UNUSED_BROKER], cursor_convention=1)  # type: ignore[arg-type]
    assert client.cursor_convention is CursorConvention.LAST_PROCESSED


# -- max_publish_size: the check and the transport have one limit ------------


async def test_publish_limit_raised_through_derived_options_publishes_end_to_end(
    broker: str, stream: str
) -> None:
    # A send limit of the transport as small as the publish limit: raising
    # the publish limit on the client used to pass lbwire's check and then
    # fail in the transport, which kept the limit it was made with.
    value = b"v" * 2000
    small = LiftbridgeClient([broker], max_message_size=1000, max_publish_size=1000)
    async with small:
        with pytest.raises(ErrorMessageSizeExceeded, match="max_publish_size"):
            await small.publish(value, stream=stream)
    with pytest.raises(ErrorReadOnlyOption):
        small.max_publish_size = 4000
    larger = LiftbridgeClient(
        small.broker_seeds, options=dataclasses.replace(small.options, max_publish_size=4000)
    )
    # Outside the block (the unary call), then inside it (the PublishAsync stream).
    assert (await larger.publish(value, stream=stream)).offset == 0
    async with larger:
        assert (await larger.publish(value, stream=stream)).offset == 1
        assert [m.value for m in await read_all(larger, stream)] == [value, value]


async def test_publish_over_the_derived_limit_is_refused_alike_on_both_paths(
    broker: str, stream: str
) -> None:
    options = ClientOptions(max_message_size=1000, max_publish_size=4000)
    client = LiftbridgeClient([broker], options=options)
    too_large = b"v" * 4000
    with pytest.raises(ErrorMessageSizeExceeded, match="max_publish_size"):
        await client.publish(too_large, stream=stream)
    async with client:
        with pytest.raises(ErrorMessageSizeExceeded, match="max_publish_size"):
            await client.publish(too_large, stream=stream)
        assert await read_all(client, stream) == []


# -- encoding_header: publish and subscribe read the same option --------------


async def test_publish_and_subscribe_use_the_one_encoding_header(broker: str, stream: str) -> None:
    value = b"compressible " * 100
    options = ClientOptions(compression_method="zlib", encoding_header="X-Mine")
    async with LiftbridgeClient([broker], options=options) as client:
        with pytest.raises(ErrorReadOnlyOption):
            client.encoding_header = "X-Other"
        await client.publish(value, stream=stream, auto_compress=True)
        (message,) = await read_all(client, stream)
    assert message.value == value
    assert "X-Mine" not in message.headers
    # A client derived with another header writes and reads that one, and
    # leaves the first message as stored.
    derived = dataclasses.replace(options, encoding_header="X-Theirs")
    async with LiftbridgeClient([broker], options=derived) as other:
        await other.publish(value, stream=stream, auto_compress=True)
        first, second = await read_all(other, stream)
    assert first.headers["X-Mine"] == b"zlib"
    assert zlib.decompress(first.value) == value
    assert second.value == value
    assert "X-Theirs" not in second.headers


async def test_the_options_repr_does_not_show_the_proxy_credentials() -> None:
    client = LiftbridgeClient([UNUSED_BROKER], proxy="http://user:s3cret@127.0.0.1:1")
    assert client.options.proxy == "http://user:s3cret@127.0.0.1:1"
    assert "s3cret" not in repr(client.options)


async def test_a_bad_proxy_url_in_derived_options_raises() -> None:
    with pytest.raises(ValueError, match="proxy"):
        dataclasses.replace(ClientOptions(), proxy="https://127.0.0.1:1")
