"""Poison messages: values a subscription cannot decode, and zip bombs.

A message's encoding header (`X-Msg-Encoding`) is set by whoever publishes
it, so it can lie, name an unknown method, or carry a small value that
expands enormously. Such a message must not end every subscription at its
offset for good: it raises `ErrorUndecodableMessage` (with its offset, so the
application subscribes again after it) or, with `on_undecodable="raw"`, is
delivered as received and flagged.
"""

from __future__ import annotations

import pickle
import zlib

import anyio
import pytest
from client_support import HANG_GUARD, collect, publish_values, read_all
from helpers import aclosing

from lbwire.client import LiftbridgeClient
from lbwire.compression import compress
from lbwire.error import ErrorInvalidArgument, ErrorUndecodableMessage, LiftbridgeError
from lbwire.reader import batched
from lbwire.types import Message, StartPosition, StopPosition

pytestmark = pytest.mark.anyio

HEADER = "X-Msg-Encoding"
MiB = 1024 * 1024


def zlib_bomb(expanded: int) -> bytes:
    """A zlib value of `expanded` zero bytes, built without holding them."""
    compressor = zlib.compressobj(9)
    chunk = bytes(MiB)
    parts = [compressor.compress(chunk) for _ in range(expanded // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


async def poisoned_stream(
    client: LiftbridgeClient, stream: str, poison: bytes, method: bytes
) -> None:
    """good0 (compressed), the poison at offset 1, good2 (plain) at offset 2."""
    await client.create_stream(stream, wait_for_stream=True)
    await client.publish(compress(b"good0", "zlib"), stream=stream, headers={HEADER: b"zlib"})
    await client.publish(poison, stream=stream, headers={HEADER: method, "other": b"kept"})
    await publish_values(client, stream, [b"good2"])


async def read_skipping_poison(
    client: LiftbridgeClient, stream: str
) -> tuple[list[Message], list[ErrorUndecodableMessage]]:
    """The application's loop with the default on_undecodable="raise".

    On ErrorUndecodableMessage it subscribes again after the poison.
    """
    messages: list[Message] = []
    poisons: list[ErrorUndecodableMessage] = []
    start = 0
    with anyio.fail_after(HANG_GUARD):
        while True:
            subscription = client.subscribe(
                stream, start_offset=start, stop_position=StopPosition.STOP_LATEST
            )
            try:
                async with aclosing(subscription) as received:
                    async for message in received:
                        messages.append(message)
            except ErrorUndecodableMessage as exc:
                poisons.append(exc)
                start = exc.offset + 1
                continue
            return messages, poisons


@pytest.mark.parametrize(
    ("poison", "method"),
    [
        pytest.param(b"not compressed at all", b"zlib", id="lying-zlib-header"),
        pytest.param(b"not compressed at all", b"lzma", id="lying-lzma-header"),
        pytest.param(compress(b"x", "zlib")[:-2], b"zlib", id="truncated-zlib"),
        pytest.param(b"anything", b"snappy", id="unknown-method"),
        pytest.param(b"anything", b"\xff\xfe", id="non-utf8-method"),
    ],
)
async def test_undecodable_message_raises_with_its_offset_and_the_next_subscription_goes_on(
    client: LiftbridgeClient, stream_name: str, poison: bytes, method: bytes
) -> None:
    await poisoned_stream(client, stream_name, poison, method)
    messages, poisons = await read_skipping_poison(client, stream_name)
    assert [(m.offset, m.value) for m in messages] == [(0, b"good0"), (2, b"good2")]
    assert not any(m.undecoded for m in messages)
    (error,) = poisons
    assert isinstance(error, LiftbridgeError)
    assert isinstance(error, ValueError)  # what lbwire 0.1 raised, still caught
    assert (error.stream, error.partition, error.offset) == (stream_name, 0, 1)
    assert error.raw.value == poison
    assert error.raw.headers[HEADER] == method


async def test_raw_mode_delivers_the_poison_flagged_and_goes_on(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await poisoned_stream(client, stream_name, b"not compressed", b"zlib")
    messages = await read_all(client, stream_name, on_undecodable="raw")
    assert [(m.offset, m.value) for m in messages] == [
        (0, b"good0"),
        (1, b"not compressed"),
        (2, b"good2"),
    ]
    good0, poison, good2 = messages
    assert poison.undecoded
    assert "zlib" in (poison.decode_error or "")
    assert poison.headers[HEADER] == b"zlib"
    assert poison.headers["other"] == b"kept"
    assert not good0.undecoded
    assert HEADER not in good0.headers
    assert not good2.undecoded
    assert good2.decode_error is None


async def test_batched_subscription_decompresses_up_to_a_poison(
    client: LiftbridgeClient, stream_name: str
) -> None:
    # A poison after the first message is inside one of the lists a batched
    # subscription hands out (lbwire._subscribe.IN_LISTS).
    await client.create_stream(stream_name, wait_for_stream=True)
    for value in (b"good0", b"good1"):
        await client.publish(compress(value, "zlib"), stream=stream_name, headers={HEADER: b"zlib"})
    await client.publish(b"not compressed", stream=stream_name, headers={HEADER: b"zlib"})
    await publish_values(client, stream_name, [b"good3"])
    got: list[Message] = []
    subscription = client.subscribe(
        stream_name, start_position=StartPosition.EARLIEST, stop_position=StopPosition.STOP_LATEST
    )

    async def read() -> None:
        async with batched(subscription, 100, 0.05) as batches:
            async for batch in batches:
                got.extend(batch)

    with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUndecodableMessage) as caught:
        await read()
    assert [(m.offset, m.value) for m in got] == [(0, b"good0"), (1, b"good1")]
    assert caught.value.offset == 2


# Memory is measured with tracemalloc, which PyPy lacks: `slow` keeps this
# test to the CPython run, like the suite's other memory tests.
@pytest.mark.slow
async def test_zip_bomb_is_refused_with_bounded_memory_and_the_next_message_arrives(
    client: LiftbridgeClient, stream_name: str
) -> None:
    import tracemalloc

    bomb = zlib_bomb(500 * MiB)
    assert len(bomb) < 1 * MiB  # small enough to publish
    await poisoned_stream(client, stream_name, bomb, b"zlib")
    tracemalloc.start()
    try:
        messages, poisons = await read_skipping_poison(client, stream_name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [m.offset for m in messages] == [0, 2]
    (error,) = poisons
    assert error.offset == 1
    assert "expands beyond" in str(error)
    # The client's max_message_size (16 MiB by default) bounds the output;
    # without a bound the 500 MiB would be allocated.
    assert peak < 64 * MiB, f"peak {peak / MiB:.1f} MiB"
    print(f"zip bomb: peak traced memory {peak / MiB:.1f} MiB while refusing 500 MiB")


async def test_a_value_up_to_max_message_size_decompresses(broker: str, stream_name: str) -> None:
    async with LiftbridgeClient([broker], max_message_size=4 * MiB) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        exact = zlib_bomb(4 * MiB)
        over = zlib_bomb(5 * MiB)
        await client.publish(exact, stream=stream_name, headers={HEADER: b"zlib"})
        await client.publish(over, stream=stream_name, headers={HEADER: b"zlib"})
        messages = await read_all(client, stream_name, on_undecodable="raw")
    assert [len(m.value) for m in messages] == [4 * MiB, len(over)]
    assert [m.undecoded for m in messages] == [False, True]


async def test_unknown_on_undecodable_choice_raises_invalid_argument(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="on_undecodable"):
        await collect(client.subscribe(stream, on_undecodable="skip"))


def test_undecodable_message_error_survives_pickling() -> None:
    raw = Message(b"v", "s", 7, 0, b"", 2, {HEADER: b"zlib"}, "st")
    error = ErrorUndecodableMessage("bad", stream="st", partition=2, offset=7, raw=raw)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.stream, copy.partition, copy.offset, copy.raw) == (
        "bad",
        "st",
        2,
        7,
        raw,
    )


async def test_subscription_ending_by_stop_position_is_unaffected(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await poisoned_stream(client, stream_name, b"junk", b"zlib")
    messages = await collect(
        client.subscribe(stream_name, start_position=StartPosition.EARLIEST, stop_offset=0)
    )
    assert [m.value for m in messages] == [b"good0"]
