"""Publishing one message at a time: acks, routing, options and refusals."""

from __future__ import annotations

import zlib

import anyio
import pytest
from client_support import HANG_GUARD, collect, partition_of, publish_values, read_all
from helpers import wait_until

from lbwire.client import KeyPartitioner, LiftbridgeClient, RoundRobinPartitioner
from lbwire.error import (
    ErrorAckTimeout,
    ErrorIncorrectOffset,
    ErrorInvalidArgument,
    ErrorMessageSizeExceeded,
    ErrorNotFound,
)
from lbwire.grpc import Status
from lbwire.testing import LiftbridgeServer
from lbwire.types import AckPolicy, StartPosition

pytestmark = pytest.mark.anyio


# -- acks -------------------------------------------------------------------


async def test_ack_policy_leader_returns_ack_with_the_message_offset(
    client: LiftbridgeClient, stream: str
) -> None:
    first = await client.publish(b"a", stream=stream, ack_policy=AckPolicy.LEADER)
    second = await client.publish(b"b", stream=stream, ack_policy=AckPolicy.LEADER)
    assert first is not None
    assert second is not None
    assert (first.offset, second.offset) == (0, 1)
    assert (second.stream, second.partitionSubject, second.ackPolicy) == (
        stream,
        stream,
        AckPolicy.LEADER,
    )


async def test_ack_policy_all_returns_ack_with_the_message_offset(
    client: LiftbridgeClient, stream: str
) -> None:
    await publish_values(client, stream, [b"a"])
    ack = await client.publish(b"b", stream=stream, ack_policy=AckPolicy.ALL)
    assert ack is not None
    assert (ack.offset, ack.ackPolicy) == (1, AckPolicy.ALL)
    assert ack.commitTimestamp >= ack.receptionTimestamp > 0


async def test_ack_policy_none_returns_none_and_stores_the_message(
    client: LiftbridgeClient, stream: str
) -> None:
    assert await client.publish(b"unacked", stream=stream, ack_policy=AckPolicy.NONE) is None
    subscription = client.subscribe(stream, start_position=StartPosition.EARLIEST)
    (message,) = await collect(subscription, limit=1)
    assert (message.offset, message.value) == (0, b"unacked")


async def test_unknown_ack_policy_raises_value_error(client: LiftbridgeClient, stream: str) -> None:
    with pytest.raises(ValueError, match="ack policy"):
        await client.publish(b"x", stream=stream, ack_policy=7)  # type: ignore[arg-type]


async def test_ack_timeout_raises_error_ack_timeout(
    client: LiftbridgeClient, stream_name: str
) -> None:
    # minisr=2 on a one-node cluster: AckPolicy.ALL acks never come.
    await client.create_stream(stream_name, minisr=2, wait_for_stream=True)
    with pytest.raises(ErrorAckTimeout, match=r"0\.3 s") as caught:
        await client.publish(b"x", stream=stream_name, ack_policy=AckPolicy.ALL, ack_timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert await publish_values(client, stream_name, [b"leader-acked"]) == [1]


# -- message content --------------------------------------------------------


async def test_key_and_headers_reach_the_subscriber(client: LiftbridgeClient, stream: str) -> None:
    headers = {"trace": b"abc", "empty": b"", "binary": bytes(range(256))}
    await client.publish(b"v", stream=stream, key=b"the-key", headers=headers)
    (message,) = await read_all(client, stream)
    assert (message.key, message.value, message.stream) == (b"the-key", b"v", stream)
    assert {k: message.headers[k] for k in headers} == headers
    # The server adds the NATS subject and reply subject as headers.
    assert message.headers["subject"] == stream.encode()
    assert message.subject == stream


async def test_correlation_id_comes_back_in_the_ack_but_not_to_subscribers(
    client: LiftbridgeClient, stream: str
) -> None:
    ack = await client.publish(b"v", stream=stream, correlation_id="corr-1")
    assert ack is not None
    assert ack.correlationId == "corr-1"
    # Server behaviour (v1.9.0): stored messages do not keep the correlation id.
    (message,) = await read_all(client, stream)
    assert message.correlation_id == ""


async def test_ack_inbox_names_the_subject_the_ack_was_sent_to(
    client: LiftbridgeClient, stream: str
) -> None:
    ack = await client.publish(b"v", stream=stream, ack_inbox="my.inbox")
    assert ack is not None
    assert ack.ackInbox == "my.inbox"


async def test_empty_value_is_stored_as_empty(client: LiftbridgeClient, stream: str) -> None:
    await publish_values(client, stream, [b""])
    assert [m.value for m in await read_all(client, stream)] == [b""]


async def test_value_that_is_not_bytes_raises_value_error(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="bytes"):
        await client.publish("text", stream=stream)  # type: ignore[arg-type]


async def test_publish_without_stream_raises_value_error(client: LiftbridgeClient) -> None:
    with pytest.raises(ValueError, match="stream"):
        await client.publish(b"x")


# -- partitions -------------------------------------------------------------


@pytest.fixture
async def five_partitions(client: LiftbridgeClient, stream_name: str) -> str:
    await client.create_stream(stream_name, partitions=5, wait_for_stream=True)
    return stream_name


async def test_explicit_partition_receives_the_message(
    client: LiftbridgeClient, five_partitions: str
) -> None:
    ack = await client.publish(b"to-3", stream=five_partitions, partition=3)
    assert ack is not None
    assert (ack.partitionSubject, ack.msgSubject) == (five_partitions, f"{five_partitions}.3")
    assert [m.value for m in await read_all(client, five_partitions, 3)] == [b"to-3"]
    assert await read_all(client, five_partitions, 0) == []


async def test_publish_to_missing_partition_raises_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ErrorNotFound, match="partition"):
        await client.publish(b"x", stream=stream, partition=4)


async def test_key_partitioner_puts_a_key_on_crc32_modulo_partitions(
    client: LiftbridgeClient, five_partitions: str
) -> None:
    keys = [b"key-%d" % i for i in range(20)]
    expected = {key: zlib.crc32(key) % 5 for key in keys}
    assert len(set(expected.values())) > 1
    for key in keys:
        ack = await client.publish(
            key, stream=five_partitions, key=key, partitioner=KeyPartitioner()
        )
        assert partition_of(ack, five_partitions) == expected[key]
    for partition in range(5):
        stored = {m.key for m in await read_all(client, five_partitions, partition)}
        assert stored == {k for k, p in expected.items() if p == partition}


async def test_key_partitioner_sends_messages_without_key_to_partition_zero(
    client: LiftbridgeClient, five_partitions: str
) -> None:
    ack = await client.publish(b"x", stream=five_partitions, partitioner=KeyPartitioner())
    assert partition_of(ack, five_partitions) == 0


async def test_round_robin_partitioner_cycles_through_the_partitions(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=3, wait_for_stream=True)
    partitioner = RoundRobinPartitioner()
    chosen = []
    for i in range(6):
        ack = await client.publish(b"%d" % i, stream=stream_name, partitioner=partitioner)
        chosen.append(partition_of(ack, stream_name))
    assert chosen == [0, 1, 2, 0, 1, 2]
    for partition in range(3):
        assert (await client.get_partition_metadata(stream_name, partition)).newest_offset == 1


async def test_user_callable_partitioner_gets_stream_key_value_and_count(
    client: LiftbridgeClient, five_partitions: str
) -> None:
    calls = []

    def last_partition(stream: str, key: bytes | None, value: bytes, partitions: int) -> int:
        calls.append((stream, key, value, partitions))
        return partitions - 1

    ack = await client.publish(b"v", stream=five_partitions, key=b"k", partitioner=last_partition)
    assert partition_of(ack, five_partitions) == 4
    assert calls == [(five_partitions, b"k", b"v", 5)]


async def test_partitioner_choosing_a_missing_partition_raises_value_error(
    client: LiftbridgeClient, five_partitions: str
) -> None:
    with pytest.raises(ValueError, match="partition 5"):
        await client.publish(b"v", stream=five_partitions, partitioner=lambda s, k, v, n: n)


async def test_client_default_partitioner_applies_without_explicit_partition(
    broker: str, five_partitions: str
) -> None:
    async with LiftbridgeClient([broker], partitioner=KeyPartitioner()) as client:
        ack = await client.publish(b"v", stream=five_partitions, key=b"key-1")
        assert partition_of(ack, five_partitions) == zlib.crc32(b"key-1") % 5
        explicit = await client.publish(b"v", stream=five_partitions, key=b"key-1", partition=0)
        assert partition_of(explicit, five_partitions) == 0


# -- optimistic concurrency control -----------------------------------------


@pytest.fixture
async def occ_stream(client: LiftbridgeClient, stream_name: str) -> str:
    await client.create_stream(
        stream_name, optimistic_concurrency_control=True, wait_for_stream=True
    )
    return stream_name


async def test_expected_offset_matching_the_next_offset_is_accepted(
    client: LiftbridgeClient, occ_stream: str
) -> None:
    for offset in range(3):
        ack = await client.publish(b"%d" % offset, stream=occ_stream, expected_offset=offset)
        assert ack is not None
        assert ack.offset == offset


async def test_wrong_expected_offset_raises_incorrect_offset_and_stores_nothing(
    client: LiftbridgeClient, occ_stream: str
) -> None:
    await client.publish(b"0", stream=occ_stream, expected_offset=0)
    with pytest.raises(ErrorIncorrectOffset, match="incorrect expected offset"):
        await client.publish(b"stale", stream=occ_stream, expected_offset=0)
    with pytest.raises(ErrorIncorrectOffset):
        await client.publish(b"ahead", stream=occ_stream, expected_offset=5)
    assert [m.value for m in await read_all(client, occ_stream)] == [b"0"]


async def test_publish_without_expected_offset_skips_the_check(
    client: LiftbridgeClient, occ_stream: str
) -> None:
    assert await publish_values(client, occ_stream, [b"a", b"b", b"c"]) == [0, 1, 2]


async def test_negative_expected_offset_raises_value_error(
    client: LiftbridgeClient, occ_stream: str
) -> None:
    with pytest.raises(ValueError, match="expected_offset"):
        await client.publish(b"x", stream=occ_stream, expected_offset=-2)


async def test_occ_stream_refuses_ack_policy_none(
    client: LiftbridgeClient, occ_stream: str
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="AckPolicy"):
        await client.publish(b"x", stream=occ_stream, ack_policy=AckPolicy.NONE)


# -- sizes ------------------------------------------------------------------


async def test_message_over_max_publish_size_is_refused_before_sending(
    broker: str, stream: str
) -> None:
    async with LiftbridgeClient([broker], max_publish_size=1000) as client:
        with pytest.raises(ErrorMessageSizeExceeded, match="max_publish_size") as caught:
            await client.publish(b"x" * 1000, stream=stream)
        assert isinstance(caught.value, ValueError)
        # Nothing reached the server, and the connection still works.
        assert await publish_values(client, stream, [b"small"]) == [0]


async def test_message_over_server_limit_is_refused_with_message_size_exceeded(
    broker: str, stream: str
) -> None:
    async with LiftbridgeClient([broker], max_publish_size=4 << 20) as client:
        with pytest.raises(ErrorMessageSizeExceeded) as caught:
            await client.publish(b"x" * (1 << 20), stream=stream)
        assert caught.value.status is not None
        assert await publish_values(client, stream, [b"small"]) == [0]


async def test_message_just_under_server_limit_is_stored(
    client: LiftbridgeClient, stream: str
) -> None:
    value = bytes(range(256)) * (1000 * 1024 // 256)
    # Not a timing test: a megabyte through a loaded machine (PyPy, 15 busy
    # processes on 2 cores) outlasted the default ack timeout of 5 s.
    ack = await client.publish(value, stream=stream, ack_timeout=HANG_GUARD)
    assert ack is not None
    assert ack.offset == 0
    assert [m.value for m in await read_all(client, stream)] == [value]


# -- missing streams --------------------------------------------------------


async def test_publish_to_missing_stream_raises_not_found(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorNotFound, match=stream_name) as caught:
        await client.publish(b"x", stream=stream_name)
    assert caught.value.status == Status.NOT_FOUND


async def test_publish_with_wait_for_stream_succeeds_once_the_stream_exists(
    client: LiftbridgeClient, stream_name: str, liftbridge_server: LiftbridgeServer
) -> None:
    refused = f"no such stream: {stream_name}"
    ack = None

    async def publish() -> None:
        nonlocal ack
        ack = await client.publish(b"early", stream=stream_name, wait_for_stream=True)

    async def publish_refused() -> bool:
        return refused in liftbridge_server.log_text()

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)
            # Create the stream only after the server refused the publish once.
            await wait_until(publish_refused, "the server refused the publish")
            await client.create_stream(stream_name)
    assert ack is not None
    assert ack.offset == 0
    assert [m.value for m in await read_all(client, stream_name)] == [b"early"]


# -- compression ------------------------------------------------------------


@pytest.mark.parametrize("method", ["zlib", "lzma"])
async def test_auto_compress_round_trips_and_stores_compressed(
    broker: str, stream: str, method: str
) -> None:
    value = b"compressible " * 100
    async with LiftbridgeClient([broker], compression_method=method) as client:
        await client.publish(value, stream=stream, auto_compress=True, headers={"h": b"1"})
        (message,) = await read_all(client, stream)
    assert message.value == value
    assert message.headers["h"] == b"1"
    assert "X-Msg-Encoding" not in message.headers
    # A reader that does not know the header sees what was stored.
    async with LiftbridgeClient([broker], encoding_header="X-Other") as raw_reader:
        (raw,) = await read_all(raw_reader, stream)
    assert raw.headers["X-Msg-Encoding"] == method.encode()
    assert len(raw.value) < len(value)


async def test_values_below_compression_threshold_are_sent_uncompressed(
    broker: str, stream: str
) -> None:
    async with LiftbridgeClient(
        [broker], compression_method="zlib", compression_threshold=100
    ) as client:
        await client.publish(b"short", stream=stream, auto_compress=True)
        await client.publish(b"long" * 25, stream=stream, auto_compress=True)
        short, long = await read_all(client, stream)
    assert (short.value, long.value) == (b"short", b"long" * 25)
    async with LiftbridgeClient([broker], encoding_header="X-Other") as raw_reader:
        raw_short, raw_long = await read_all(raw_reader, stream)
    assert "X-Msg-Encoding" not in raw_short.headers
    assert raw_long.headers["X-Msg-Encoding"] == b"zlib"


async def test_without_auto_compress_values_are_sent_as_is(broker: str, stream: str) -> None:
    async with LiftbridgeClient([broker], compression_method="zlib") as client:
        await client.publish(b"plain" * 50, stream=stream)
    async with LiftbridgeClient([broker], encoding_header="X-Other") as raw_reader:
        (raw,) = await read_all(raw_reader, stream)
    assert raw.value == b"plain" * 50
    assert "X-Msg-Encoding" not in raw.headers


# -- publish_to_subject -----------------------------------------------------


async def test_publish_to_subject_reaches_the_stream_on_that_subject(
    client: LiftbridgeClient, stream_name: str
) -> None:
    subject = f"{stream_name}.subject"
    await client.create_stream(stream_name, subject=subject, wait_for_stream=True)
    ack = await client.publish_to_subject(b"via-subject", subject, key=b"k", headers={"h": b"v"})
    assert ack is not None
    assert (ack.stream, ack.offset) == (stream_name, 0)
    (message,) = await read_all(client, stream_name)
    assert (message.value, message.key, message.headers["h"]) == (b"via-subject", b"k", b"v")
    assert message.subject == subject


async def test_publish_to_subject_with_ack_policy_none_returns_none(
    client: LiftbridgeClient, stream: str
) -> None:
    assert await client.publish_to_subject(b"x", stream, ack_policy=AckPolicy.NONE) is None
    (message,) = await collect(
        client.subscribe(stream, start_position=StartPosition.EARLIEST), limit=1
    )
    assert message.value == b"x"


async def test_publish_to_subject_without_stream_raises_ack_timeout(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorAckTimeout, match=stream_name):
        await client.publish_to_subject(b"x", f"{stream_name}.nobody", ack_timeout=0.3)


async def test_publish_to_empty_subject_raises_value_error(client: LiftbridgeClient) -> None:
    with pytest.raises(ValueError, match="subject"):
        await client.publish_to_subject(b"x", "")
